r"""LoRA — Low-Rank Adaptation (Hu et al., arXiv:2106.09685)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from adapterspec.adapter import Adapter


class LoRA(Adapter):
    r"""A low-rank additive update to a frozen weight.

    $$W' = W_0 + \frac{\alpha}{r}\, B A,\qquad B \in \mathbb{R}^{d_{out}\times r},\ A \in \mathbb{R}^{r\times d_{in}}$$

    Args:
        base: the frozen layer.
        r: rank of the update.
        alpha: scale numerator; the update is multiplied by ``alpha / r``.
        use_rslora: scale by ``alpha / sqrt(r)`` instead (rank-stabilised LoRA, arXiv:2312.03732).
    """

    capacity = "r"

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 8.0, use_rslora: bool = False) -> None:
        super().__init__(base)
        if r < 1:
            raise ValueError(f"r must be a positive integer, got {r}")
        self.r, self.alpha = r, alpha
        self.scaling = alpha / math.sqrt(r) if use_rslora else alpha / r
        self.A = nn.Parameter(torch.empty(r, self.d_in, **self.factory))  # (r, d_in)
        self.B = nn.Parameter(torch.empty(self.d_out, r, **self.factory))  # (d_out, r)
        self.reset_parameters()

    # --8<-- [start:init]
    def reset_parameters(self) -> None:
        # A random, B zero: ΔW = BA = 0 at init, yet ∂L/∂B = (∂L/∂ΔW) Aᵀ ≠ 0, so training can start.
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        nn.init.zeros_(self.B)
    # --8<-- [end:init]

    # --8<-- [start:update]
    def adapted_weight(self, W0: Tensor) -> Tensor:
        return W0 + self.scaling * self.B @ self.A  # (d_out, d_in)

    def forward(self, x: Tensor) -> Tensor:
        if self.merged:
            return self.base(x)
        # Same value as adapted_weight, without forming the d_out × d_in matrix BA.
        return self.base(x) + self.scaling * (x @ self.A.T) @ self.B.T  # (..., d_out)
    # --8<-- [end:update]

    def symbols(self) -> dict:
        return {**super().symbols(), "A": self.A, "B": self.B, "r": self.r, "alpha": self.alpha,
                "scaling": self.scaling}
