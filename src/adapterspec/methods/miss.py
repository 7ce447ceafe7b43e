r"""MiSS — Matrix Shard Sharing (Kang & Yin, arXiv:2409.15371)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from adapterspec.adapter import Adapter


class MiSS(Adapter):
    r"""One small matrix $D$, zero at init, is tiled across the input dimension to form the whole update.

    $$W' = W_0 + D E,\qquad D \in \mathbb{R}^{d_{out}\times r},\qquad
      E = \big[\,I_r\ \ I_r\ \cdots\ I_r\,\big]_{:,\,1:d_{in}} \in \{0,1\}^{r\times d_{in}},\qquad
      \Delta W_{:,j} = D_{:,\,j \bmod r}$$

    This is the paper's efficient form MiSS$_e$ (Eqs. 4–7), the one peft implements and the paper's parameter counts
    follow: the input $x$ is cut into consecutive chunks of $r$ coordinates, the chunks are summed,
    $S = E x = \sum_i x^{(i)} \in \mathbb{R}^r$, and the update adds $D S$ (Eq. 7). Every input coordinate $j$ shares
    its update column with all coordinates $j' \equiv j \pmod r$: one shard $D$ is shared by all
    $\lceil d_{in}/r \rceil$ column blocks of $\Delta W$, so $\operatorname{rank}(\Delta W) \le r$. When $r$ does not
    divide $d_{in}$, the last chunk is zero-padded (as in peft), which is the same rule
    $\Delta W_{:,j} = D_{:,\,j \bmod r}$ on a partial last block.
    $D = 0$ at init, so $W' = W_0$. There is no scale factor.

    With ``mini_r`` (peft's ``init_weights="mini"``, not in the paper's text) the rows of $D$ are shared as well:
    only $D \in \mathbb{R}^{m\times r}$, $m$ = ``mini_r``, is trained, and output neuron $o$ uses row $o \bmod m$,
    i.e. $\Delta W = F D E$ with $F = [I_m; I_m; \dots] \in \{0,1\}^{d_{out}\times m}$; $\operatorname{rank}(\Delta W)
    \le \min(r, m)$.

    peft stores $D^\top$ (``miss_block``, shape ``(r, d_out)``, or ``(r, mini_r)``).

    Args:
        base: the frozen layer.
        r: shard width (the paper's and peft's "rank"); ``1 <= r <= d_in``.
        mini_r: ``None`` (default: the paper's MiSS$_e$, $D$ has one row per output neuron) or the number $m$ of
            trained rows, shared cyclically by the output neurons; must divide ``d_out``.
    """

    capacity = "r"  # shard width: d_out * r trainable

    def __init__(self, base: nn.Linear, r: int = 64, mini_r: int | None = None) -> None:
        super().__init__(base)
        if not 1 <= r <= self.d_in:
            raise ValueError(f"r={r} must be between 1 and d_in={self.d_in} (D is tiled over chunks of r input "
                             "coordinates; with r > d_in some columns of D would never be used)")
        if mini_r is not None and not (1 <= mini_r <= self.d_out and self.d_out % mini_r == 0):
            raise ValueError(f"mini_r={mini_r} must divide d_out={self.d_out} (output neuron o uses row o mod mini_r "
                             "of D); pass mini_r=None for one row per output neuron")
        self.r, self.mini_r = r, mini_r
        self.g = -(-self.d_in // r)  # number of input chunks, the last one possibly partial
        rows = self.d_out if mini_r is None else mini_r
        self.D = nn.Parameter(torch.empty(rows, r, **self.factory))  # (d_out or mini_r, r)
        self.reset_parameters()

    # --8<-- [start:init]
    def reset_parameters(self) -> None:
        nn.init.zeros_(self.D)  # D = 0  ⇒  ΔW = 0: W' = W0 at init, and ∂L/∂D = (∂L/∂W) Eᵀ ≠ 0
    # --8<-- [end:init]

    # --8<-- [start:update]
    def output_shard(self) -> Tensor:
        """``D`` with one row per output neuron, ``(d_out, r)`` (row ``o`` is ``D[o mod mini_r]``
        with ``mini_r``)."""
        if self.mini_r is None:
            return self.D  # (d_out, r)
        return self.D.repeat(self.d_out // self.mini_r, 1)  # (d_out, r)

    def adapted_weight(self, W0: Tensor) -> Tensor:
        # (d_in,): column j of ΔW is column j mod r of D
        cols = torch.arange(self.d_in, device=W0.device) % self.r
        return W0 + self.output_shard()[:, cols]  # (d_out, d_in)

    def forward(self, x: Tensor) -> Tensor:
        if self.merged:
            return self.base(x)
        # S = E x: pad the input to g·r coordinates, cut it into g chunks of r and sum them
        # (no d_out × d_in matrix).
        # (..., r)
        S = F.pad(x, (0, self.g * self.r - self.d_in)).unflatten(-1, (self.g, self.r)).sum(-2)
        dy = S @ self.D.T  # (..., d_out), or (..., mini_r) with mini_r
        if self.mini_r is not None:
            # (..., d_out): neuron o ← o mod mini_r
            dy = dy.repeat(*([1] * (dy.dim() - 1)), self.d_out // self.mini_r)
        return self.base(x) + dy  # (..., d_out)
    # --8<-- [end:update]

    def symbols(self) -> dict:
        return {**super().symbols(), "D": self.D, "r": self.r, "mini_r": self.mini_r, "g": self.g}
