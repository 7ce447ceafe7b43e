r"""LoHa — Low-rank Hadamard product adaptation (Hyeon-Woo et al., arXiv:2108.06098; Yeh et al., arXiv:2309.14859)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from adapterspec.adapter import Adapter


class LoHa(Adapter):
    r"""An additive update that is the element-wise product of two rank-r matrices.

    $$W' = W_0 + \frac{\alpha}{r}\,(B_1 A_1) \odot (B_2 A_2),\qquad B_1, B_2 \in \mathbb{R}^{d_{out}\times r},\
      A_1, A_2 \in \mathbb{R}^{r\times d_{in}}$$

    This is LyCORIS's Eq. (3); the Hadamard product of two low-rank matrices is FedPara's parameterization
    (Proposition 1, written there $(X_1 Y_1^\top) \odot (X_2 Y_2^\top)$ for a whole weight trained from scratch, so
    $X_i = B_i$, $Y_i = A_i^\top$). Entry by entry, $\Delta W_{ij} = \sum_{k,l} B_{1,ik} B_{2,il} A_{1,kj} A_{2,lj}$:
    a sum of $r^2$ rank-one matrices, so $\operatorname{rank}(\Delta W) \le \min(r^2, d_{out}, d_{in})$ from
    $2r(d_{in} + d_{out})$ parameters, the budget of a rank-$2r$ LoRA. Equivalently
    $\Delta W = P Q$ with $P = B_1 \bullet B_2 \in \mathbb{R}^{d_{out}\times r^2}$ (row-wise Kronecker products) and
    $Q \in \mathbb{R}^{r^2\times d_{in}}$ (column-wise Kronecker products of $A_1$, $A_2$): a rank-$r^2$ LoRA whose
    factors are constrained. $A_2 = 0$ at init (peft's choice; the papers give no init for the update), so $W' = W_0$.

    Args:
        base: the frozen layer.
        r: inner rank of each of the two factors (the update's rank can reach $r^2$).
        alpha: scale numerator; the update is multiplied by ``alpha / r`` (LyCORIS's merge ratio $\gamma$). The
            defaults ``r=4, alpha=2`` are LyCORIS's experimental defaults for LoHa; peft's are ``r=8, alpha=8``.
    """

    capacity = "r"

    def __init__(self, base: nn.Linear, r: int = 4, alpha: float = 2.0) -> None:
        super().__init__(base)
        if not isinstance(r, int) or r < 1:
            raise ValueError(f"r must be a positive integer (the inner rank of each factor), got {r!r}")
        self.r, self.alpha = r, alpha
        self.scaling = alpha / r
        self.B1 = nn.Parameter(torch.empty(self.d_out, r, **self.factory))  # (d_out, r)
        self.A1 = nn.Parameter(torch.empty(r, self.d_in, **self.factory))  # (r, d_in)
        self.B2 = nn.Parameter(torch.empty(self.d_out, r, **self.factory))  # (d_out, r)
        self.A2 = nn.Parameter(torch.empty(r, self.d_in, **self.factory))  # (r, d_in)
        self.reset_parameters()

    # --8<-- [start:init]
    def reset_parameters(self) -> None:
        # Three factors random, A2 zero: B2 A2 = 0, so ΔW = 0 at init. At the first step only A2
        # has a non-zero gradient (∂L/∂A2 = B2ᵀ (G ⊙ B1 A1)); the other three receive gradient
        # once A2 ≠ 0.
        for p in (self.B1, self.A1, self.B2):
            nn.init.kaiming_uniform_(p, a=math.sqrt(5))
        nn.init.zeros_(self.A2)
    # --8<-- [end:init]

    # --8<-- [start:update]
    def delta(self) -> Tensor:
        """``ΔW = (α/r) (B1 A1) ⊙ (B2 A2)``, ``(d_out, d_in)``."""
        return self.scaling * ((self.B1 @ self.A1) * (self.B2 @ self.A2))  # (d_out, d_in)

    def adapted_weight(self, W0: Tensor) -> Tensor:
        return W0 + self.delta()  # (d_out, d_in)

    def forward(self, x: Tensor) -> Tensor:
        if self.merged:
            return self.base(x)
        r2 = self.r * self.r
        if r2 * (self.d_in + self.d_out) >= self.d_in * self.d_out:
            # r² too large for the factored form to save work: x ↦ W' x + b
            return super().forward(x)
        # ΔW = P Q, a rank-r² product, never forming the d_out × d_in matrix.
        # (d_out, r²): B1[i,k] B2[i,l]
        P = (self.B1[:, :, None] * self.B2[:, None, :]).reshape(self.d_out, r2)
        # (r², d_in): A1[k,j] A2[l,j]
        Q = (self.A1[:, None, :] * self.A2[None, :, :]).reshape(r2, self.d_in)
        return self.base(x) + self.scaling * (x @ Q.T) @ P.T  # (..., d_out)
    # --8<-- [end:update]

    def symbols(self) -> dict:
        return {**super().symbols(), "B1": self.B1, "A1": self.A1, "B2": self.B2, "A2": self.A2, "r": self.r,
                "alpha": self.alpha, "scaling": self.scaling}
