r"""ReFT — Representation Finetuning, LoReFT and DiReFT (Wu et al., arXiv:2404.03592)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from adapterspec.tiny import ModelAdapter, TinyTransformer, model_symbols


class ReFT(ModelAdapter):
    r"""Edit the hidden states of a frozen transformer at one layer, at the first ``p`` and last ``s`` positions.

    $$\Phi_{\text{LoReFT}}(h) = h + R^\top (W h + b - R h),\qquad R \in \mathbb{R}^{r\times d},\ R R^\top = I_r$$

    $$\Phi_{\text{DiReFT}}(h) = h + W_2^\top (W_1 h + b),\qquad W_1, W_2 \in \mathbb{R}^{r\times d}\ \text{(no constraint)}$$

    (Eq. 2 and Eq. 3.) LoReFT replaces the coordinates of ``h`` in the ``r``-dimensional subspace spanned by the rows
    of ``R`` by the learned values ``W h + b`` and leaves the orthogonal complement alone. It is applied to
    ``h_layer`` (the residual stream entering block ``layer``; ``layer = L`` is the last block's output) at positions
    ``{0 … p−1}`` and ``{T−s … T−1}`` of every sequence, before the next block reads it (Eq. 7). For a sequence
    shorter than ``p + s`` the paper sets ``p ← min(p, ⌊T/2⌋)``, ``s ← min(s, ⌈T/2⌉)`` (Section 4.1).

    ``R`` is parameterized by an unconstrained ``A ∈ ℝ^{d×r}`` through its QR decomposition, ``R = Qᵀ`` with
    ``A = Q Rq`` and ``diag(Rq) > 0``: exactly ``r·d`` free numbers (the count the paper gives for ``R``), every
    matrix with orthonormal rows is reachable (``A = Rᵀ`` gives back ``R``), and any value of ``A`` (an optimizer
    step, `adapterspec.randomize_`) still gives orthonormal rows to machine precision.

    Args:
        base: the frozen `adapterspec.tiny.TinyTransformer`.
        r: rank of the edited subspace (``1 ≤ r ≤ d``).
        layer: the hidden state edited, ``0 … L`` (``h_0`` is the embedding output).
        p: number of leading (prefix) positions edited.
        s: number of trailing (suffix) positions edited.
        tied: one parameter set for prefix and suffix positions; untied (default), each group has its own, as in the
            official code and the parameter counts the paper reports.
        direct: DiReFT (Eq. 3) instead of LoReFT: ``R`` is an unconstrained ``W_2`` and ``R h`` is not subtracted.
        identity_init: start at the identity (LoReFT: ``W = R``, ``b = 0``; DiReFT: ``W_1 = 0``, ``b = 0``) instead
            of the official code's random init (random orthonormal ``R``; ``W``, ``b`` as ``nn.Linear``).
    """

    capacity = "r"
    # examples: 2 layers and a vocabulary of 11 (logits and hidden states differ in size), sequences of 9 tokens
    EXAMPLE: dict = {"vocab_size": 11, "n_layers": 2, "max_len": 16}
    T_EXAMPLE = 9

    def __init__(
        self,
        base: TinyTransformer,
        r: int = 4,
        layer: int = 1,
        p: int = 2,
        s: int = 2,
        tied: bool = False,
        direct: bool = False,
        identity_init: bool = False,
    ) -> None:
        super().__init__(base)
        d, L = base.config.d_model, base.config.n_layers
        if not 1 <= r <= d:
            raise ValueError(
                f"r={r} must be between 1 and d_model={d} (R has r orthonormal rows of size d_model)"
            )
        if not 0 <= layer <= L:
            raise ValueError(f"layer={layer} must be a hidden state index 0 … n_layers={L}")
        if p < 0 or s < 0 or p + s == 0:
            raise ValueError(
                f"p={p} and s={s} must be non-negative, and p + s ≥ 1 (no position would be edited)"
            )
        self.r, self.layer, self.p, self.s = r, layer, p, s
        self.tied, self.direct, self.identity_init = tied, direct, identity_init
        self.k = (
            1 if tied or p == 0 or s == 0 else 2
        )  # parameter sets: prefix and suffix, or one for both
        if direct:
            self.W2 = nn.Parameter(
                torch.empty(self.k, r, d, **self.factory)
            )  # (k, r, d), unconstrained
        else:
            self.A = nn.Parameter(
                torch.empty(self.k, d, r, **self.factory)
            )  # (k, d, r), R = qr(A).Qᵀ
        self.W = nn.Parameter(
            torch.empty(self.k, r, d, **self.factory)
        )  # (k, r, d), W_1 for DiReFT
        self.b = nn.Parameter(torch.empty(self.k, r, **self.factory))  # (k, r)
        self.reset_parameters()

    # --8<-- [start:init]
    def reset_parameters(self) -> None:
        d = self.d_in
        with torch.no_grad():
            if self.direct:  # W_2 as an nn.Linear(d, r) weight, U(±1/√d)
                self.W2.uniform_(-(d**-0.5), d**-0.5)
            else:  # a random R with orthonormal rows (nn.init.orthogonal_ in the official code)
                self.A.copy_(torch.linalg.qr(torch.randn_like(self.A)).Q)
            # source = current coordinates (LoReFT) or zero (DiReFT): Φ(h) = h
            if self.identity_init:
                self.W.copy_(torch.zeros_like(self.W) if self.direct else self.R())
                self.b.zero_()
            else:  # W h + b as a default nn.Linear(d, r): weight and bias U(±1/√d)
                self.W.uniform_(-(d**-0.5), d**-0.5)
                self.b.uniform_(-(d**-0.5), d**-0.5)

    # --8<-- [end:init]

    # --8<-- [start:update]
    def R(self) -> Tensor:
        """``(k, r, d)``: orthonormal rows for LoReFT (QR of ``A``, signs fixed by ``diag(Rq) >
        0``); ``W_2`` for
        DiReFT."""
        if self.direct:
            return self.W2
        Q, Rq = torch.linalg.qr(self.A)  # (k, d, r), (k, r, r)
        signs = torch.sign(torch.diagonal(Rq, dim1=-2, dim2=-1))  # (k, r)
        return (Q * torch.where(signs == 0, 1.0, signs)[:, None, :]).mT  # (k, r, d), R Rᵀ = I

    def phi(self, h: Tensor, R: Tensor, W: Tensor, b: Tensor) -> Tensor:
        """Φ on hidden states ``h (..., d)`` with one parameter set ``R, W (r, d)``, ``b (r,)``."""
        source = h @ W.T + b  # (..., r): W h + b
        if self.direct:
            return h + source @ R  # h + W_2ᵀ (W_1 h + b)
        return h + (source - h @ R.T) @ R  # h + Rᵀ (W h + b − R h)

    def positions(self, T: int) -> tuple[int, int]:
        """``(p, s)`` for a sequence of ``T`` positions: shortened, as in the paper, when ``T < p +
        s``."""
        if T < self.p + self.s:
            return min(self.p, T // 2), min(self.s, T - T // 2)
        return self.p, self.s

    def intervene(self, h: Tensor) -> Tensor:
        """``h_layer (B, T, d)`` with Φ applied at the first ``p`` and last ``s`` positions."""
        T = h.shape[1]
        p, s = self.positions(T)
        R, W, b, j = self.R(), self.W, self.b, self.k - 1  # j: the suffix's parameter set
        head, middle, tail = h[:, :p], h[:, p : T - s], h[:, T - s :]
        return torch.cat(
            [self.phi(head, R[0], W[0], b[0]), middle, self.phi(tail, R[j], W[j], b[j])], dim=1
        )

    def forward(self, tokens: Tensor) -> Tensor:
        return self.base(tokens, interventions={self.layer: self.intervene})  # (B, T, V) logits

    # --8<-- [end:update]

    def symbols(self) -> dict:
        R = self.R()
        return {
            **model_symbols(self.base),
            "R": R,
            "W": self.W,
            "b": self.b,
            "W1": self.W,
            "W2": R,
            "r": self.r,
            "layer": self.layer,
            "p": self.p,
            "s": self.s,
            "tied": self.tied,
            "direct": self.direct,
            "d_model": self.d_in,
            "n_heads": self.d_out,
        }

    def extra_repr(self) -> str:
        kind = "DiReFT" if self.direct else "LoReFT"
        return (
            f"{kind}, r={self.r}, layer={self.layer}, p={self.p}, s={self.s}, tied={self.tied}, "
            f"trainable={self.num_trainable()}"
        )
