r"""OFTv2 — Orthogonal Finetuning Made Scalable (Qiu et al., arXiv:2506.19847)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from adapterspec import ops
from adapterspec.adapter import Adapter


class OFTv2(Adapter):
    r"""OFT's block-diagonal input rotation, applied to the input rather than to the weight, with a truncated series.

    $$y = W_0\,(R^\top x),\qquad R = \operatorname{diag}(R_1,\dots,R_{d_{in}/b}),\qquad
      R_i = (I + Q_i)\Big(I + \sum_{j=1}^{k} Q_i^{\,j}\Big),\ Q_i = -Q_i^\top \in \mathbb{R}^{b\times b}$$

    The function is OFT's, $W' = W_0 R^\top$; what OFTv2 changes is how it is computed and parameterized:

    * *input-centric* (Eq. 2 of the paper): the forward rotates each length-``b`` slice of ``x`` and then applies the
      frozen ``W0``, never forming ``W0 Rᵀ``. `adapted_weight` (the weight-centric product, Eq. 1) is only used to
      merge.
    * *Cayley–Neumann* (Section 3.3): $(I - Q)^{-1}$ is replaced by $I + Q + \dots + Q^k$, so no inverse or solve is
      needed. $k = 3$ is the paper's "five terms" ($I + 2Q + 2Q^2 + 2Q^3 + Q^4$ expanded, peft's default). The result
      is only approximately orthogonal: exactly, $R_k = R\,(I - Q^{k+1})$ with $R$ the Cayley map, so its singular
      values are $|1 - (i\theta)^{k+1}|$ for the eigenvalues $\pm i\theta$ of $Q$. ``k = 0`` is the exact Cayley map.

    Args:
        base: the frozen layer.
        b: block size; ``d_in`` must be divisible by it (the paper's default is 32).
        k: number of powers of $Q$ kept in the Neumann series of $(I - Q)^{-1}$ (default 3); ``0`` uses the exact
            Cayley map $(I + Q)(I - Q)^{-1}$ (a linear solve) instead of the series.
    """

    capacity = "b"  # d_in (b - 1) / 2 trainable numbers: a larger block trains more

    def __init__(self, base: nn.Linear, b: int = 32, k: int = 3) -> None:
        super().__init__(base)
        if b < 1 or self.d_in % b:
            raise ValueError(
                f"b={b} must be a block size dividing d_in={self.d_in} (R is made of d_in/b square blocks)"
            )
        if k < 0:
            raise ValueError(
                f"k={k} must be 0 (exact Cayley map) or the number of powers of Q in the Neumann series "
                "(the paper's five terms are k = 3)"
            )
        self.b, self.n, self.k = b, self.d_in // b, k
        # Only the strict upper triangle of each skew-symmetric block is stored: b(b-1)/2 numbers
        # per block.
        self.q = nn.Parameter(
            torch.empty(self.n, b * (b - 1) // 2, **self.factory)
        )  # (n, b(b-1)/2)
        self.reset_parameters()

    # --8<-- [start:init]
    def reset_parameters(self) -> None:
        nn.init.zeros_(self.q)  # Q = 0  ⇒  R = I  ⇒  the pretrained layer

    # --8<-- [end:init]

    # --8<-- [start:update]
    def blocks(self) -> Tensor:
        """The blocks ``R_i`` stacked ``(n, b, b)``; only approximately orthogonal unless ``k =
        0``."""
        Q = ops.skew(self.q, self.b)  # (n, b, b), Qᵀ = −Q
        if not self.k:
            return ops.cayley(Q)  # (I + Q)(I − Q)⁻¹
        I = torch.eye(self.b, **self.factory)
        S = I.expand_as(Q)
        for _ in range(self.k):  # Horner: S = I + Q + … + Q^k ≈ (I − Q)⁻¹, matrix products only
            S = I + Q @ S
        return S + Q @ S  # (I + Q) S

    def forward(self, x: Tensor) -> Tensor:
        if self.merged:
            return self.base(x)
        # Input-centric: x ↦ Rᵀx slice by slice (row vector: xᵀR), then the frozen layer. No weight-
        # sized tensor.
        x_blocks = x.unflatten(-1, (self.n, self.b))  # (..., n, b)
        x_rot = torch.einsum("...ki,kij->...kj", x_blocks, self.blocks())  # (..., n, b)
        return self.base(x_rot.flatten(-2))  # (..., d_out)

    def adapted_weight(self, W0: Tensor) -> Tensor:
        # Weight-centric W0 Rᵀ, block by block (used to merge): column slice i of W0 times R_iᵀ.
        W_blocks = W0.unflatten(-1, (self.n, self.b))  # (d_out, n, b)
        return torch.einsum("okj,kij->oki", W_blocks, self.blocks()).flatten(-2)  # (d_out, d_in)

    # --8<-- [end:update]

    def rotation(self) -> Tensor:
        """The block-diagonal ``R (d_in, d_in)``."""
        return ops.block_diag(self.blocks())

    def symbols(self) -> dict:
        return {
            **super().symbols(),
            "q": self.q,
            "Q": ops.skew(self.q, self.b),
            "R": self.rotation(),
            "b": self.b,
            "k": self.k,
        }
