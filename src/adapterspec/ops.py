"""The shared math vocabulary.

Every reference module and every pseudocode snippet in the catalog speaks this small language. Pseudocode runs with
*only* these names in scope (plus arithmetic and iteration), so a snippet cannot quietly call something the reference
does not. Conventions: math shapes, ``W`` is ``(d_out, d_in)`` as in ``torch.nn.Linear.weight``, so ``y = W @ x``.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

__all__ = [
    "block_diag",
    "cat",
    "cayley",
    "circulant",
    "cos",
    "diag",
    "eye",
    "fft",
    "gelu",
    "ifft",
    "ifft2",
    "inv",
    "kron",
    "layer_norm",
    "ones",
    "row_norm",
    "sin",
    "skew",
    "softmax",
    "sqrt",
    "svd",
    "tiny_block",
    "topk",
    "transformer",
    "zeros",
]

_dtype = torch.float64  # pseudocode builds its constants in the verifier's dtype; modules pass dtype explicitly


def zeros(*shape: int, dtype: torch.dtype | None = None) -> Tensor:
    """A tensor of zeros, ``zeros(d_out, r)``."""
    return torch.zeros(*shape, dtype=dtype or _dtype)


def ones(*shape: int, dtype: torch.dtype | None = None) -> Tensor:
    """A tensor of ones, ``ones(d)``."""
    return torch.ones(*shape, dtype=dtype or _dtype)


def eye(n: int, dtype: torch.dtype | None = None) -> Tensor:
    """The ``n × n`` identity matrix."""
    return torch.eye(n, dtype=dtype or _dtype)


def diag(v: Tensor) -> Tensor:
    """Diagonal matrix from a vector (or the diagonal of a matrix), as ``torch.diag``."""
    return torch.diag(v)


def sqrt(v: Tensor) -> Tensor:
    """Element-wise square root."""
    return torch.sqrt(v)


def cos(v: Tensor) -> Tensor:
    """Element-wise cosine."""
    return torch.cos(v)


def sin(v: Tensor) -> Tensor:
    """Element-wise sine."""
    return torch.sin(v)


def softmax(v: Tensor, dim: int = -1) -> Tensor:
    """``exp(v) / Σ exp(v)`` along ``dim``."""
    return torch.softmax(v, dim=dim)


def gelu(v: Tensor) -> Tensor:
    """The exact GELU, ``v · Φ(v)`` with ``Φ`` the standard normal CDF (``torch.nn.functional.gelu``, GPT-2 style
    MLPs of `adapterspec.tiny`)."""
    return torch.nn.functional.gelu(v)


def topk(v: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` largest entries of ``v`` along its last dimension and their indices (largest first)."""
    values, indices = torch.topk(v, k, dim=-1)
    return values, indices


def cat(tensors: list[Tensor], dim: int = 0) -> Tensor:
    """Concatenate along ``dim``, as ``torch.cat``: ``cat([P, E], dim=0)`` puts ``P (n, d)`` before ``E (T, d)``."""
    return torch.cat(list(tensors), dim=dim)


def kron(A: Tensor, B: Tensor) -> Tensor:
    """Kronecker product: ``(m, n) ⊗ (p, q) → (mp, nq)``, block ``(i, j)`` is ``A[i, j] · B``."""
    return torch.kron(A, B)


def fft(v: Tensor, dim: int = -1) -> Tensor:
    """Discrete Fourier transform along ``dim`` (complex result, unnormalised: ``F[k] = Σ_n v[n] e^{-2πikn/N}``)."""
    return torch.fft.fft(v, dim=dim)


def ifft(v: Tensor, dim: int = -1) -> Tensor:
    """Inverse of `fft` along ``dim`` (carries the ``1/N``); complex result — take ``.real`` for real signals."""
    return torch.fft.ifft(v, dim=dim)


def ifft2(F: Tensor) -> Tensor:
    """2-D inverse DFT over the last two dimensions (carries ``1/(MN)``); complex result."""
    return torch.fft.ifft2(F)


def circulant(c: Tensor) -> Tensor:
    """Circulant matrix with first column ``c (n,)``: ``C[i, j] = c[(i - j) mod n]``, so ``C @ x`` is the circular
    convolution ``c ⊛ x``. Batched over leading dimensions: ``(..., n) → (..., n, n)``."""
    n = c.shape[-1]
    idx = (torch.arange(n)[:, None] - torch.arange(n)[None, :]) % n  # (n, n)
    return c[..., idx]


def inv(M: Tensor) -> Tensor:
    """Matrix inverse (batched over leading dimensions)."""
    return torch.linalg.inv(M)


def row_norm(W: Tensor) -> Tensor:
    """Euclidean norm of each row of ``W (d_out, d_in)``: one value per output neuron, shape ``(d_out,)``."""
    return torch.linalg.vector_norm(W, dim=1)


def svd(W: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Thin SVD ``W = U diag(S) Vh`` with a canonical sign for each singular pair.

    A singular pair ``(u_i, v_i)`` is only defined up to a joint sign flip, so two correct implementations can return
    different factors. We fix the sign so that the largest-magnitude entry of each ``u_i`` is positive; the product is
    unchanged, and any two callers (a reference module and its pseudocode) now agree factor by factor.

    Returns:
        ``U (m, k)``, ``S (k,)`` descending, ``Vh (k, n)`` with ``k = min(m, n)``.
    """
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    idx = U.abs().argmax(dim=0, keepdim=True)  # (1, k) row of each column's largest entry
    signs = torch.sign(torch.gather(U, 0, idx))  # (1, k)
    signs[signs == 0] = 1
    return U * signs, S, Vh * signs.T


def skew(q: Tensor, b: int) -> Tensor:
    """Skew-symmetric ``b × b`` blocks from their strictly-upper-triangular entries.

    Args:
        q: ``(..., b(b-1)/2)`` free parameters, row-major over the upper triangle.
        b: block size.

    Returns:
        ``Q (..., b, b)`` with ``Q = -Qᵀ``.
    """
    rows, cols = torch.triu_indices(b, b, offset=1)
    U = q.new_zeros(*q.shape[:-1], b, b)
    U[..., rows, cols] = q
    return U - U.transpose(-1, -2)


def cayley(Q: Tensor) -> Tensor:
    """Cayley transform ``R = (I + Q)(I - Q)⁻¹`` of skew-symmetric ``Q``: an orthogonal matrix with det 1.

    Exact (a linear solve), batched over leading dimensions. ``(I + Q)`` and ``(I - Q)⁻¹`` commute, so the order of
    the product does not matter.
    """
    I = torch.eye(Q.shape[-1], dtype=Q.dtype, device=Q.device).expand_as(Q)
    # R (I - Q) = (I + Q)  <=>  (I - Q)ᵀ Rᵀ = (I + Q)ᵀ
    return torch.linalg.solve((I - Q).transpose(-1, -2), (I + Q).transpose(-1, -2)).transpose(-1, -2)


def block_diag(R: Tensor) -> Tensor:
    """Block-diagonal matrix from a stack of blocks ``R (k, b, b)`` → ``(k·b, k·b)``."""
    return torch.block_diag(*R)


# -- the tiny transformer's frozen parts, for pseudocode of methods that act on a whole model -----------------------
def gelu(v: Tensor) -> Tensor:
    """Exact GELU, ``v · Φ(v)`` with ``Φ`` the standard normal CDF (``0.5 v (1 + erf(v / √2))``)."""
    return torch.nn.functional.gelu(v)


def layer_norm(v: Tensor, g: Tensor, b: Tensor, eps: float = 1e-5) -> Tensor:
    """LayerNorm over the last dimension: ``g ⊙ (v − mean) / sqrt(var + eps) + b`` (biased variance)."""
    mu = v.mean(dim=-1, keepdim=True)
    var = (v - mu).pow(2).mean(dim=-1, keepdim=True)
    return g * (v - mu) / torch.sqrt(var + eps) + b


def tiny_block(h: Tensor, w: dict, H: int) -> Tensor:
    """One frozen block of the tiny transformer (`adapterspec.tiny.Block`), written out on plain tensors.

    Pre-norm: ``h + attn(LN₁(h))``, then ``+ mlp(LN₂(·))``, with causal ``H``-head attention and a GELU MLP.

    Args:
        h: the residual stream ``(T, d)`` of one sequence (or ``(B, T, d)``).
        w: the block's tensors by name (`adapterspec.tiny.model_symbols` builds them): ``g1 b1 g2 b2`` (the two
            LayerNorms), ``W_q b_q W_k b_k W_v b_v W_o b_o`` (attention, each ``W (d, d)``), ``W_up b_up W_down
            b_down`` (MLP) and ``eps``; a bias may be ``None``.
        H: number of heads (``d`` divisible by it).
    """
    T, d = h.shape[-2:]
    hd = d // H

    def lin(x: Tensor, W: Tensor, b: Tensor | None) -> Tensor:
        return x @ W.T if b is None else x @ W.T + b

    def heads(x: Tensor) -> Tensor:  # (..., T, d) -> (..., H, T, hd)
        return x.reshape(*x.shape[:-1], H, hd).transpose(-2, -3)

    a = layer_norm(h, w["g1"], w["b1"], w["eps"])
    q, k, v = (heads(lin(a, w[f"W_{n}"], w[f"b_{n}"])) for n in "qkv")
    future = torch.ones(T, T, dtype=torch.bool, device=h.device).triu(1)
    S = (q @ k.transpose(-1, -2) / hd**0.5).masked_fill(future, float("-inf"))  # (..., H, T, T)
    o = (torch.softmax(S, dim=-1) @ v).transpose(-2, -3).reshape(h.shape)  # (..., T, d)
    h = h + lin(o, w["W_o"], w["b_o"])
    m = layer_norm(h, w["g2"], w["b2"], w["eps"])
    return h + lin(gelu(lin(m, w["W_up"], w["b_up"])), w["W_down"], w["b_down"])


def transformer(θ: dict[str, Tensor], e: Tensor, H: int, attend: Callable[[int, Tensor, Tensor, Tensor], Tensor] | None = None,
                start: int = 0, eps: float = 1e-5) -> Tensor:
    r"""Logits ``(T, V)`` of a tiny transformer (`adapterspec.tiny.TinyTransformer`) run on one sequence of input
    embeddings ``e (T, d)``, written out from its weights ``θ`` (its ``state_dict``, by name) so that a method that acts
    on the inputs or inside attention can be stated around it.

    Position ``start + t`` is added to input ``t``; then each block ``l`` is
    ``h ← h + W_O [attend(l, q, k, v)] + b_O`` (heads merged) and ``h ← h + MLP(LN_2(h))``, with
    ``q, k, v (H, T, h)`` the heads of ``LN_1(h)`` through ``q_proj``, ``k_proj``, ``v_proj``; the logits are
    ``lm_head(LN(h))``. ``attend(l, q, k, v) → (H, T, h)`` is where a method's attention goes (prefix keys and
    values, a gated prompt); by default it is plain causal attention, ``softmax(q kᵀ/√h + M) v``.

    Args:
        θ: the model's weights by ``state_dict`` name (``embed.weight``, ``blocks.0.attn.q_proj.weight``, ...).
        e: input embeddings of one sequence, ``(T, d)``.
        H: number of attention heads.
        attend: ``attend(l, q, k, v)``, the heads of block ``l``; ``None`` for causal attention.
        start: position of the first input (the prefix length, when a prefix stands for earlier tokens).
        eps: LayerNorm epsilon.
    """
    T, d = e.shape
    n_layers = sum(1 for name in θ if name.startswith("blocks.") and name.endswith(".norm1.weight"))

    def linear(x: Tensor, name: str) -> Tensor:
        bias = θ.get(name + ".bias")
        return x @ θ[name + ".weight"].T + (0 if bias is None else bias)

    def norm(x: Tensor, name: str) -> Tensor:
        return torch.nn.functional.layer_norm(x, (d,), θ[name + ".weight"], θ.get(name + ".bias"), eps)

    def causal(l: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
        S = (q @ k.mT / q.shape[-1] ** 0.5).masked_fill(future, float("-inf"))  # (H, T, T)
        return torch.softmax(S, dim=-1) @ v

    attend = attend or causal
    h = e + θ["pos.weight"][start:start + T]  # (T, d)
    for l in range(n_layers):
        block = f"blocks.{l}."
        a = norm(h, block + "norm1")
        q, k, v = (linear(a, block + "attn." + p).reshape(T, H, d // H).transpose(0, 1)
                   for p in ("q_proj", "k_proj", "v_proj"))  # (H, T, h)
        heads = attend(l, q, k, v)  # (H, T, h)
        h = h + linear(heads.transpose(0, 1).reshape(T, d), block + "attn.o_proj")
        h = h + linear(torch.nn.functional.gelu(linear(norm(h, block + "norm2"), block + "mlp.up")),
                       block + "mlp.down")
    return linear(norm(h, "norm"), "lm_head")  # (T, V)
