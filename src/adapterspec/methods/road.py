r"""RoAd — 2D Rotary Adaptation (Liao & Monz, arXiv:2409.00119)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from adapterspec.adapter import Adapter


class RoAd(Adapter):
    r"""Rotate (and rescale) the layer's output, two coordinates at a time.

    $$y = R\,(W_0 x + b),\qquad W' = R\,W_0,\quad b' = R\,b,\qquad
      R = \operatorname{diag}(R_1, \dots, R_{d_{out}/2}) \text{ acting on the pairs } (p_i, q_i)$$

    $$R_i = \begin{pmatrix} \alpha_{i,11}\cos\theta_{i,11} & -\alpha_{i,12}\sin\theta_{i,12} \\
                            \alpha_{i,21}\sin\theta_{i,21} & \alpha_{i,22}\cos\theta_{i,22} \end{pmatrix}$$

    The paper writes $z = R h$ with $h = W_0^\top x$ for a ``d_1 × d_2`` (input × output) weight, so $R$ is
    ``d_out × d_out`` and acts on the output; in the ``(d_out, d_in)`` layout of ``nn.Linear`` the merged weight is
    $R W_0$ (the paper's $W_0 R^\top$). The bias is part of the output and is rotated with it, as in peft (the paper
    never mentions a bias). Three variants tie the block entries (Table 1): ``variant=1`` one $(\alpha_i, \theta_i)$
    per block, a scaled rotation (Eq. 2 with a magnitude); ``variant=2`` one pair per *row* of the block; ``variant=4``
    all four entries free. Pair $i$ joins output coordinates $p_i = g\lfloor i/(g/2)\rfloor + (i \bmod g/2)$ and
    $q_i = p_i + g/2$ for a group size $g$:
    $g = 2$ gives the paper's adjacent pairs $(2i, 2i+1)$ (0-based), peft's default $g = 64$ pairs coordinate $j$ with
    $j + 32$ inside each group of 64. $\alpha = 1$, $\theta = 0$ at init, so $R = I$.

    Args:
        base: the frozen layer.
        variant: 1, 2 or 4: how many $(\alpha, \theta)$ pairs each $2\times2$ block has ($d_{out}$, $2d_{out}$ or
            $4d_{out}$ trainable numbers per layer).
        group_size: even divisor of ``d_out`` fixing which output coordinates are paired (see above); 2 is the
            paper's adjacent pairing, 64 is peft's default.
    """

    capacity = "variant"  # 1, 2 or 4 numbers per output coordinate

    def __init__(self, base: nn.Linear, variant: int = 1, group_size: int = 2) -> None:
        super().__init__(base)
        if variant not in (1, 2, 4):
            raise ValueError(f"variant must be 1, 2 or 4 (RoAd_1, RoAd_2, RoAd_4), got {variant!r}")
        if group_size < 2 or group_size % 2 or self.d_out % group_size:
            raise ValueError(f"group_size={group_size} must be an even divisor of d_out={self.d_out} (coordinates are "
                             "paired inside groups); use group_size=2 for the paper's adjacent pairs")
        self.variant, self.group_size = variant, group_size
        self.n = self.d_out // 2  # number of 2×2 blocks
        shape = {1: (self.n,), 2: (self.n, 2), 4: (self.n, 2, 2)}[variant]  # per block / per row / per entry
        self.theta = nn.Parameter(torch.empty(shape, **self.factory))  # (d_out/2[, 2[, 2]]) angles
        self.alpha = nn.Parameter(torch.empty(shape, **self.factory))  # (d_out/2[, 2[, 2]]) magnitudes
        self.reset_parameters()

    # --8<-- [start:init]
    def reset_parameters(self) -> None:
        nn.init.zeros_(self.theta)  # θ = 0: no rotation
        nn.init.ones_(self.alpha)  # α = 1: no rescaling, so R = I and W' = W0
    # --8<-- [end:init]

    # --8<-- [start:update]
    def entries(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The four entries of every block ``R_i`` (``R_i[0,0], R_i[0,1], R_i[1,0], R_i[1,1]``),
        each ``(d_out/2,)``."""
        view = {1: (self.n, 1, 1), 2: (self.n, 2, 1), 4: (self.n, 2, 2)}[self.variant]
        # (n, 2, 2) α_{i,rc}, shared as the variant says
        A = self.alpha.reshape(view).expand(self.n, 2, 2)
        T = self.theta.reshape(view).expand(self.n, 2, 2)  # (n, 2, 2) θ_{i,rc}
        return (A[:, 0, 0] * torch.cos(T[:, 0, 0]), -A[:, 0, 1] * torch.sin(T[:, 0, 1]),
                A[:, 1, 0] * torch.sin(T[:, 1, 0]), A[:, 1, 1] * torch.cos(T[:, 1, 1]))  # 4 × (n,)

    def rotate(self, h: Tensor) -> Tensor:
        """``R h`` along the last dimension of ``h (..., d_out)``, element-wise (Eq. 4), never
        forming ``R``."""
        g = self.group_size
        shape = (self.d_out // g, g // 2)  # pair i = (group, position in the first half)
        a, b, c, d = (e.reshape(shape) for e in self.entries())  # (d_out/g, g/2) each
        hg = h.unflatten(-1, (self.d_out // g, 2, g // 2))  # (..., d_out/g, 2, g/2)
        hp, hq = hg[..., 0, :], hg[..., 1, :]  # (..., d_out/g, g/2): coordinates p_i and q_i
        return torch.stack((a * hp + b * hq, c * hp + d * hq), dim=-2).flatten(-3)  # (..., d_out)

    def rotation(self) -> Tensor:
        """The block-diagonal ``R (d_out, d_out)`` (dense, for inspection; the layer never
        builds it)."""
        # (d_out, d_out): column j is R e_j
        return self.rotate(torch.eye(self.d_out, **self.factory)).T

    def adapted_weight(self, W0: Tensor) -> Tensor:
        return self.rotate(W0.T).T  # (d_out, d_in) = R W0

    def adapted_bias(self, b0: Tensor | None) -> Tensor | None:
        # (d_out,) = R b: the whole output is rotated
        return None if b0 is None else self.rotate(b0)

    def forward(self, x: Tensor) -> Tensor:
        if self.merged:
            return self.base(x)
        return self.rotate(self.base(x))  # (..., d_out) = R (W0 x + b)
    # --8<-- [end:update]

    def symbols(self) -> dict:
        return {**super().symbols(), "theta": self.theta, "alpha": self.alpha, "R": self.rotation(),
                "variant": self.variant, "group_size": self.group_size}
