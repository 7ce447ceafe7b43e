r"""OFT — Orthogonal Fine-Tuning (Qiu et al., arXiv:2306.07280)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from adapterspec import ops
from adapterspec.adapter import Adapter


class OFT(Adapter):
    r"""Every neuron's weight vector is rotated by one shared, block-diagonal orthogonal matrix.

    $$W' = W_0 R^\top,\qquad R = \operatorname{diag}(R_1,\dots,R_r),\qquad
      R_i = (I + Q_i)(I - Q_i)^{-1},\ Q_i = -Q_i^\top \in \mathbb{R}^{b\times b},\ b = d_{in}/r$$

    The paper writes $W = R W_0$ for a ``d × n`` weight whose columns are neurons (living in the input space); with
    the ``(d_out, d_in)`` layout of ``nn.Linear`` that is $W' = W_0 R^\top$: the input is rotated, $y = W_0 (R^\top x)$.
    Because $R$ is orthogonal, $W' W'^\top = W_0 W_0^\top$: all norms of, and angles between, neurons are kept
    (the paper's hyperspherical energy). $Q = 0$ gives $R = I$, the identity at init.

    Args:
        base: the frozen layer.
        r: number of diagonal blocks; ``d_in`` must be divisible by it.
        neumann_order: ``0`` (default) is the paper's exact Cayley map. ``m > 0`` replaces $(I - Q)^{-1}$ by its
            Neumann series truncated after ``m`` terms, $R \approx (I + Q)(I + Q + \dots + Q^{m-1})$, which is only
            approximately orthogonal (error of order $\lVert Q \rVert^{m+1}$). peft's default
            (``num_cayley_neumann_terms=5``) is ``m = 4``.
    """

    capacity = "r"  # number of blocks: more blocks, fewer trainable numbers

    def __init__(self, base: nn.Linear, r: int = 4, neumann_order: int = 0) -> None:
        super().__init__(base)
        if r < 1 or self.d_in % r:
            raise ValueError(f"r={r} must divide d_in={self.d_in} (R is made of r square blocks)")
        if neumann_order < 0:
            raise ValueError(f"neumann_order must be 0 (exact Cayley) or a positive number of terms, got {neumann_order}")
        self.r, self.b, self.neumann_order = r, self.d_in // r, neumann_order
        # Only the strict upper triangle of each skew-symmetric block is free: b(b-1)/2 numbers per block.
        self.q = nn.Parameter(torch.empty(r, self.b * (self.b - 1) // 2, **self.factory))  # (r, b(b-1)/2)
        self.reset_parameters()

    # --8<-- [start:init]
    def reset_parameters(self) -> None:
        nn.init.zeros_(self.q)  # Q = 0  ⇒  R = I  ⇒  W' = W0
    # --8<-- [end:init]

    # --8<-- [start:update]
    def blocks(self) -> Tensor:
        """The rotation blocks ``R_i``, stacked ``(r, b, b)``."""
        Q = ops.skew(self.q, self.b)  # (r, b, b), Qᵀ = -Q
        if not self.neumann_order:
            return ops.cayley(Q)  # (I + Q)(I - Q)⁻¹, exactly orthogonal
        S, Q_k = torch.zeros_like(Q), torch.eye(self.b, **self.factory).expand_as(Q)
        for _ in range(self.neumann_order):  # S = I + Q + … + Q^(m-1) ≈ (I - Q)⁻¹
            S, Q_k = S + Q_k, Q_k @ Q
        return S + Q @ S  # (I + Q) S

    def rotation(self) -> Tensor:
        """The block-diagonal ``R (d_in, d_in)`` (orthogonal with the exact Cayley map)."""
        return ops.block_diag(self.blocks())  # (d_in, d_in)

    def adapted_weight(self, W0: Tensor) -> Tensor:
        return W0 @ self.rotation().T  # (d_out, d_in): each neuron (row) w ↦ R w

    def forward(self, x: Tensor) -> Tensor:
        if self.merged:
            return self.base(x)
        # Rotate the input block by block (never forming the d_in × d_in matrix):
        # row vector x ↦ (Rᵀ x)ᵀ = xᵀ R.
        R_blocks = self.blocks()  # (r, b, b)
        x_blocks = x.unflatten(-1, (self.r, self.b))  # (..., r, b)
        x_rot = torch.einsum("...ki,kij->...kj", x_blocks, R_blocks).flatten(-2)  # (..., d_in)
        return self.base(x_rot)
    # --8<-- [end:update]

    def symbols(self) -> dict:
        Q = ops.skew(self.q, self.b)
        return {**super().symbols(), "q": self.q, "Q": Q, "R": self.rotation(), "r": self.r, "b": self.b,
                "neumann_order": self.neumann_order}
