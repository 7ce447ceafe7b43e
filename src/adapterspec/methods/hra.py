r"""HRA — Householder Reflection Adaptation (Yuan, Liu & Xu, arXiv:2405.17484)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from adapterspec.adapter import Adapter


class HRA(Adapter):
    r"""The frozen weight times a chain of ``r`` learned Householder reflections acting on the input space.

    $$W' = W_0 H,\qquad H = \prod_{i=1}^{r} (I - 2 u_i u_i^\top),\qquad u_i = v_i / \lVert v_i \rVert$$

    With ``apply_GS`` (the paper's strictly orthogonal HRA, $\lambda = \infty$) the columns of $V$ are first made
    orthonormal, $U = \mathrm{GS}(V)$, and the chain collapses to $H = I - 2UU^\top$. The paper writes $z = W H x$ with
    $W \in \mathbb{R}^{d_{out}\times d}$, the layout of ``nn.Linear``, so no transpose is needed: $H$ acts on the
    ``d_in`` side and every neuron (row of $W_0$) is reflected ``r`` times, which keeps $W'W'^\top = W_0W_0^\top$.

    Eq. (3): $H = I + U\Gamma U^\top$ with $\Gamma$ upper triangular, so $\Delta W = W_0 U \Gamma U^\top$ has rank
    $\le r$. $\det H = (-1)^r$ whatever the $u_i$: with odd ``r`` the layer can never equal $W_0$.

    Args:
        base: the frozen layer.
        r: number of reflections (the trainable count is ``r * d_in``).
        apply_GS: orthonormalise the reflection vectors (Gram–Schmidt), giving $H = I - 2UU^\top$.
    """

    capacity = "r"

    def __init__(self, base: nn.Linear, r: int = 8, apply_GS: bool = False) -> None:
        super().__init__(base)
        if apply_GS not in (True, False):
            raise ValueError(f"apply_GS must be True or False, got {apply_GS!r}")
        if r < 1 or (apply_GS and r > self.d_in):
            raise ValueError(
                f"r={r} must be a positive number of reflections"
                + (
                    f", at most d_in={self.d_in} with apply_GS (r orthonormal vectors in a d_in-dimensional space)"
                    if apply_GS
                    else ""
                )
            )
        self.r, self.apply_GS = r, apply_GS
        self.V = nn.Parameter(
            torch.empty(self.d_in, r, **self.factory)
        )  # (d_in, r), column i ∝ u_i
        self.reset_parameters()

    # --8<-- [start:init]
    def reset_parameters(self) -> None:
        if self.r % 2 or self.apply_GS:
            # Odd r: det H = −1, so no choice of V gives H = I; peft draws every column at random.
            # With GS, a
            # repeated column would have nothing left to orthonormalise: draw at random too (H is
            # then a fixed
            # distance 2√r from I, ‖H − I‖_F² = 4r).
            nn.init.kaiming_uniform_(self.V, a=math.sqrt(5))
        else:
            # Even r: columns in equal pairs (v1, v1, v2, v2, ...): each pair H_i H_i = I, so H = I
            # and W' = W0.
            half = torch.empty(self.d_in, self.r // 2, **self.factory)  # (d_in, r/2)
            nn.init.kaiming_uniform_(half, a=math.sqrt(5))
            with torch.no_grad():
                self.V.copy_(half.repeat_interleave(2, dim=1))

    # --8<-- [end:init]

    # --8<-- [start:update]
    def unit_vectors(self) -> Tensor:
        """``U (d_in, r)``: the unit normals $u_i$ (orthonormal with ``apply_GS``)."""
        if self.apply_GS:
            # GS(V) and the Q of a QR decomposition span the same nested subspaces and differ only
            # in the signs of
            # columns, which I − 2UUᵀ does not see.
            return torch.linalg.qr(self.V).Q  # (d_in, r)
        return self.V / self.V.norm(dim=0)  # (d_in, r)

    def reflection(self) -> Tensor:
        """``H = H_1 H_2 … H_r (d_in, d_in)``, orthogonal, ``det H = (−1)^r``."""
        U = self.unit_vectors()
        H = torch.eye(self.d_in, **self.factory)
        if self.apply_GS:
            return H - 2 * U @ U.T
        for i in range(self.r):  # H ← H (I − 2 u_i u_iᵀ)
            H = H - 2 * (H @ U[:, i : i + 1]) @ U[:, i : i + 1].T
        return H

    def adapted_weight(self, W0: Tensor) -> Tensor:
        return W0 @ self.reflection()  # (d_out, d_in)

    def forward(self, x: Tensor) -> Tensor:
        if self.merged:
            return self.base(x)
        # y = W0 (H x), reflecting x itself: H_r first, then H_{r−1}, …, H_1 (Eq. 2), O(r · d_in)
        # per token.
        U = self.unit_vectors()  # (d_in, r)
        if self.apply_GS:
            return self.base(x - 2 * (x @ U) @ U.T)
        for i in reversed(range(self.r)):
            u = U[:, i]  # (d_in,)
            x = x - 2 * (x @ u)[..., None] * u
        return self.base(x)

    # --8<-- [end:update]

    def symbols(self) -> dict:
        return {
            **super().symbols(),
            "V": self.V,
            "U": self.unit_vectors(),
            "H": self.reflection(),
            "r": self.r,
            "apply_GS": self.apply_GS,
        }
