"""The shared math vocabulary.

Every reference module and every pseudocode snippet in the catalog speaks this small language. Pseudocode runs with
*only* these names in scope (plus arithmetic and iteration), so a snippet cannot quietly call something the reference
does not. Conventions: math shapes, ``W`` is ``(d_out, d_in)`` as in ``torch.nn.Linear.weight``, so ``y = W @ x``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "block_diag",
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
    "ones",
    "row_norm",
    "sin",
    "skew",
    "softmax",
    "sqrt",
    "svd",
    "topk",
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
