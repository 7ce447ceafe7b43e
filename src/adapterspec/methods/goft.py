r"""GOFT — Givens Orthogonal Fine-Tuning, and its quasi-Givens relaxation qGOFT (Ma et al., arXiv:2404.04316)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from adapterspec.adapter import Adapter


class GOFT(Adapter):
    r"""Every neuron is rotated by one shared product of $d-1$ Givens rotations, arranged in $\lceil\log_2 d\rceil$
    layers of disjoint rotations.

    $$W' = W_0 R^\top,\qquad R = P_L \cdots P_2 P_1,\qquad
      P_r = \prod_{k} G\big(2^r k,\ 2^{r-1}(2k+1);\ \theta_{r,k}\big),\qquad L = \lceil \log_2 d_{in} \rceil$$

    $G(i, j; \theta)$ is the identity except for $\cos\theta$ at $(i,i)$ and $(j,j)$, $-\sin\theta$ at $(i,j)$ and
    $\sin\theta$ at $(j,i)$ (Eqs. 1-2). Layer $P_r$ (Eq. 3) rotates the disjoint planes $(2^r k, 2^r k + 2^{r-1})$
    for every $k$ with $2^r k + 2^{r-1} < d_{in}$: $d/2$ planes in the first layer, $d/4$ in the second, one in the
    last, $d_{in} - 1$ angles in all (a binary tree; for $d_{in}$ not a power of two the same rule keeps the planes
    that exist, as the authors' code does). The paper's $h = (RW)^\top x$ (Eq. 4) for a $d \times n$ weight is
    $W' = W_0 R^\top$ in the ``(d_out, d_in)`` layout: each neuron (a row) is mapped to $R w$. $\theta = 0$ gives
    $R = I$.

    Args:
        base: the frozen layer.
        quasi: qGOFT (Sec. 4.2, Eq. 5): every $2 \times 2$ rotation block becomes a free matrix
            $\tilde G_i = (\alpha_i, \beta_i)$, the identity at init, with four numbers instead of one angle. It is
            no longer orthogonal; the paper adds $\lambda \sum_i \langle \alpha_i, \beta_i \rangle^2$ to the loss
            (`regularizer`).
    """

    capacity = None  # d_in − 1 angles (4(d_in − 1) numbers for qGOFT): fixed by the layer

    def __init__(self, base: nn.Linear, quasi: bool = False) -> None:
        super().__init__(base)
        if self.d_in < 2:
            raise ValueError(
                f"d_in={self.d_in}: a Givens rotation needs at least two input coordinates"
            )
        self.quasi = quasi
        self.planes = self._planes(
            self.d_in
        )  # per layer: (i, j) index tensors of its disjoint planes
        if quasi:
            self.G = nn.Parameter(
                torch.empty(self.d_in - 1, 2, 2, **self.factory)
            )  # (d_in − 1, 2, 2)
        else:
            self.theta = nn.Parameter(torch.empty(self.d_in - 1, **self.factory))  # (d_in − 1,)
        self.reset_parameters()

    @staticmethod
    def _planes(d: int) -> list[tuple[Tensor, Tensor]]:
        layers, s = [], 1
        while s < d:  # layer r has stride s = 2^(r-1): planes (2s·k, 2s·k + s)
            i = torch.arange(0, d - s, 2 * s)
            layers.append((i, i + s))
            s *= 2
        return layers

    # --8<-- [start:init]
    def reset_parameters(self) -> None:
        if self.quasi:
            with torch.no_grad():  # every quasi-Givens block is I
                self.G.copy_(torch.eye(2, **self.factory).expand_as(self.G))
        else:
            nn.init.zeros_(self.theta)  # θ = 0  ⇒  every G = I  ⇒  R = I  ⇒  W' = W0

    # --8<-- [end:init]

    # --8<-- [start:update]
    def blocks(self) -> Tensor:
        """The ``2 × 2`` block of every (quasi-)Givens rotation, in layer order, ``(d_in − 1, 2,
        2)``."""
        if self.quasi:
            return self.G
        c, s = torch.cos(self.theta), torch.sin(self.theta)
        # [[c, −s], [s, c]]
        return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)

    def _rotate(self, x: Tensor, transpose: bool) -> Tensor:
        """``x ↦ R x`` for column vectors stored as rows ``x (..., d_in)`` (``Rᵀ x`` with
        ``transpose``)."""
        G, start, layers = self.blocks(), 0, []
        for i, j in self.planes:  # this layer's blocks: the next len(i) rows of G
            layers.append((i, j, G[start : start + len(i)]))
            start += len(i)
        for i, j, g in reversed(layers) if transpose else layers:  # Rᵀ = P_1ᵀ ⋯ P_Lᵀ: P_L first
            if transpose:
                g = g.transpose(-1, -2)
            xi, xj = x[..., i], x[..., j]  # (..., n) each: the two coordinates of every plane
            x = x.clone()
            x[..., i] = g[:, 0, 0] * xi + g[:, 0, 1] * xj
            x[..., j] = g[:, 1, 0] * xi + g[:, 1, 1] * xj
        return x

    def rotation(self) -> Tensor:
        """``R = P_L ⋯ P_1 (d_in, d_in)``: orthogonal for GOFT, not for qGOFT."""
        # row k: (Rᵀe_k)ᵀ = row k of R
        return self._rotate(torch.eye(self.d_in, **self.factory), transpose=True)

    def adapted_weight(self, W0: Tensor) -> Tensor:
        return W0 @ self.rotation().T  # (d_out, d_in): each neuron (row) w ↦ R w

    def forward(self, x: Tensor) -> Tensor:
        if self.merged:
            return self.base(x)
        # y = W0 (Rᵀ x): the layers' planes are disjoint, so each layer is two gathers and a
        # scatter.
        return self.base(self._rotate(x, transpose=True))

    # --8<-- [end:update]

    def regularizer(self) -> Tensor:
        r"""qGOFT's soft orthogonality penalty $\sum_i \langle \alpha_i, \beta_i \rangle^2$ (columns of each
        $\tilde G_i$), to be added to the loss with weight $\lambda$; zero for GOFT."""
        if not self.quasi:
            return self.theta.new_zeros(())
        return ((self.G[:, :, 0] * self.G[:, :, 1]).sum(-1) ** 2).sum()

    def symbols(self) -> dict:
        params = {"G": self.G} if self.quasi else {"theta": self.theta}
        return {**super().symbols(), **params, "R": self.rotation(), "quasi": self.quasi}
