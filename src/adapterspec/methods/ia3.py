r"""(IA)³ — Infused Adapter by Inhibiting and Amplifying Inner Activations (Liu et al., arXiv:2205.05638)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from adapterspec.adapter import Adapter


class IA3(Adapter):
    r"""A learned gain per channel: rescale what the layer already computes.

    $$\text{attention (keys, values):}\quad y = l \odot (W_0 x + b),\qquad W' = \operatorname{diag}(l)\, W_0,
      \ l \in \mathbb{R}^{d_{out}}$$

    $$\text{feed-forward (second FFN linear):}\quad y = W_0 (l \odot x) + b,\qquad W' = W_0 \operatorname{diag}(l),
      \ l \in \mathbb{R}^{d_{in}}$$

    The paper rescales keys, values and the FFN's inner activation $\gamma(W_1 x)$. For one linear layer that is a
    scaling of its *output* (``k_proj``, ``v_proj``) or of its *input* (the FFN's down projection, whose input is that
    inner activation). $l = 1$ at init.

    Args:
        base: the frozen layer.
        feedforward: scale the input (the FFN down projection) instead of the output.
    """

    capacity = None  # one gain per channel, fixed by the layer

    def __init__(self, base: nn.Linear, feedforward: bool = False) -> None:
        super().__init__(base)
        self.feedforward = feedforward
        self.l = nn.Parameter(torch.empty(self.d_in if feedforward else self.d_out, **self.factory))
        self.reset_parameters()

    # --8<-- [start:init]
    def reset_parameters(self) -> None:
        nn.init.ones_(self.l)  # unit gain: W' = W0
    # --8<-- [end:init]

    # --8<-- [start:update]
    def adapted_weight(self, W0: Tensor) -> Tensor:
        if self.feedforward:
            return W0 * self.l[None, :]  # (d_out, d_in): column j scaled by l_j
        return self.l[:, None] * W0  # (d_out, d_in): row i scaled by l_i

    def adapted_bias(self, b0: Tensor | None) -> Tensor | None:
        # Output scaling multiplies the whole output, bias included;
        # input scaling leaves the bias alone.
        return b0 if self.feedforward or b0 is None else self.l * b0

    def forward(self, x: Tensor) -> Tensor:
        if self.merged:
            return self.base(x)
        return self.base(x * self.l) if self.feedforward else self.base(x) * self.l  # (..., d_out)
    # --8<-- [end:update]

    def symbols(self) -> dict:
        return {**super().symbols(), "l": self.l, "feedforward": self.feedforward}
