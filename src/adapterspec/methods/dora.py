r"""DoRA — Weight-Decomposed Low-Rank Adaptation (Liu et al., arXiv:2402.09353)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from adapterspec import ops
from adapterspec.methods.lora import LoRA


class DoRA(LoRA):
    r"""Magnitude and direction trained separately: a learned norm per output neuron, a LoRA-updated direction.

    $$W' = \operatorname{diag}(m)\,\frac{V}{\lVert V \rVert_{\text{row}}},\qquad V = W_0 + \frac{\alpha}{r} B A,
      \qquad m \in \mathbb{R}^{d_{out}},\ m_{\text{init}} = \lVert W_0 \rVert_{\text{row}}$$

    $\lVert\cdot\rVert_{\text{row}}$ is the Euclidean norm of each output neuron's weight vector (a row of the
    ``(d_out, d_in)`` weight; the paper's "column" of its ``d × k`` matrix). Every row of $W'$ has norm $m_i$.

    Args:
        base: the frozen layer.
        r: rank of the directional update.
        alpha: LoRA scale numerator (``alpha / r``).
        detach_norm: treat $\lVert V\rVert$ as a constant in backpropagation (the paper's Sec. 4.3 memory saving;
            peft always does). The forward value does not depend on it.
    """

    capacity = "r"

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 8.0, detach_norm: bool = True) -> None:
        self.detach_norm = detach_norm
        super().__init__(base, r=r, alpha=alpha)

    # --8<-- [start:init]
    def reset_parameters(self) -> None:
        super().reset_parameters()  # LoRA's: A random, B = 0, so V = W0 at init
        with torch.no_grad():
            m = ops.row_norm(self.base.weight)  # (d_out,) so W' = diag(m) W0/‖W0‖ = W0 at init
        if hasattr(self, "m"):
            self.m.data.copy_(m)
        else:
            self.m = nn.Parameter(m)
    # --8<-- [end:init]

    # --8<-- [start:update]
    def adapted_weight(self, W0: Tensor) -> Tensor:
        V = W0 + self.scaling * self.B @ self.A  # (d_out, d_in) direction, before normalisation
        V_norm = ops.row_norm(V)  # (d_out,)
        if self.detach_norm:
            V_norm = V_norm.detach()
        return (self.m / V_norm)[:, None] * V  # (d_out, d_in), row i has norm m_i

    def forward(self, x: Tensor) -> Tensor:
        if self.merged:
            return self.base(x)
        # Same value as adapted_weight: W' x = diag(m / ‖V‖) (W0 x + s·B A x). The norm needs V, but
        # the matrix products that carry gradients stay low-rank.
        W0 = self.base.weight
        V_norm = ops.row_norm(W0 + self.scaling * self.B @ self.A)  # (d_out,)
        if self.detach_norm:
            V_norm = V_norm.detach()
        Vx = F.linear(x, W0) + self.scaling * (x @ self.A.T) @ self.B.T  # (..., d_out)
        y = (self.m / V_norm) * Vx  # (..., d_out)
        return y if self.base.bias is None else y + self.base.bias
    # --8<-- [end:update]

    def symbols(self) -> dict:
        return {**super().symbols(), "m": self.m}
