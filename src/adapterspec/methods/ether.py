r"""ETHER and ETHER+ — Efficient fine-Tuning via HypErplane Reflections (Bini et al., arXiv:2405.20271)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from adapterspec import ops
from adapterspec.adapter import Adapter


def _unit(w: Tensor) -> Tensor:
    return w / w.norm(dim=-1, keepdim=True)  # one unit vector per block (row)


class ETHER(Adapter):
    r"""One hyperplane reflection per block of input coordinates (ETHER), or its non-orthogonal relaxation on one or
    both sides of the weight (ETHER+).

    $$\text{ETHER: } W' = W_0 H,\qquad H = \operatorname{diag}(H_1,\dots,H_n),\qquad
      H_k = I - 2\hat u_k \hat u_k^\top$$

    $$\text{ETHER+: } W' = \tilde H^+ W_0 H^+,\qquad H^+_k = I - \hat u_k \hat u_k^\top + \hat v_k \hat v_k^\top,
      \qquad \tilde H^+_k = I - \tilde u_k \tilde u_k^\top + \tilde v_k \tilde v_k^\top$$

    with unit vectors $\hat u = u/\lVert u\rVert$ per block. The paper writes the weight as $W \in \mathbb{R}^{d\times
    f}$ ($d$ inputs, $f$ outputs, $y = W^\top x$) and the update as $HW$ (ETHER) or $H^+W\tilde H^{+\top}$ (ETHER+);
    in the ``(d_out, d_in)`` layout of ``nn.Linear`` that is $W_0H^\top = W_0H$ and $\tilde H^+ W_0 H^{+\top} =
    \tilde H^+ W_0 H^+$ ($H$, $H^+$ are symmetric). $H$ and $H^+$ act on the ``d_in`` side in ``n`` blocks of
    ``d_in / n``, $\tilde H^+$ on the ``d_out`` side in ``n`` blocks of ``d_out / n``.

    ETHER's $H$ is orthogonal with $\lVert H_k - I\rVert_F = 2$ for every $u_k$, so it is never the identity: the
    update has a fixed size. $H^+$ is symmetric with eigenvalues $1 \pm \sin\theta_k$ ($\cos\theta_k = \hat u_k^\top
    \hat v_k$) and $1$, hence not orthogonal unless $\hat u_k = \pm \hat v_k$, where it is $I$.

    Args:
        base: the frozen layer.
        n: number of diagonal blocks; must divide ``d_in`` (and ``d_out`` when ``two_sided``). It does not change
            the number of trainable parameters.
        plus: ETHER+ (``I − ûûᵀ + v̂v̂ᵀ``) instead of ETHER (``I − 2ûûᵀ``).
        two_sided: ETHER+ on both sides of the weight, as in the paper (``False``: input side only, the official
            code's ``Htype="etherplus"``). Only with ``plus``.
    """

    capacity = (
        None  # d_in (ETHER), 2 d_in or 2 (d_in + d_out) (ETHER+): n does not change the count
    )

    def __init__(
        self, base: nn.Linear, n: int = 1, plus: bool = False, two_sided: bool = False
    ) -> None:
        super().__init__(base)
        if two_sided and not plus:
            raise ValueError(
                "two_sided=True needs plus=True: the paper applies only ETHER+ on both sides (ETHER is a "
                "single reflection on the input side)"
            )
        if n < 1 or self.d_in % n or (two_sided and self.d_out % n):
            sides = (
                "d_in={} and d_out={}".format(self.d_in, self.d_out)
                if two_sided
                else f"d_in={self.d_in}"
            )
            raise ValueError(
                f"n={n} (number of diagonal blocks) must be a positive divisor of {sides}"
            )
        self.n, self.plus, self.two_sided = n, plus, two_sided
        b, c = self.d_in // n, self.d_out // n
        self.u = nn.Parameter(
            torch.empty(n, b, **self.factory)
        )  # (n, d_in/n), normal of each block's hyperplane
        self.v = nn.Parameter(torch.empty(n, b, **self.factory)) if plus else None  # (n, d_in/n)
        self.u_tilde = (
            nn.Parameter(torch.empty(n, c, **self.factory)) if two_sided else None
        )  # (n, d_out/n)
        self.v_tilde = (
            nn.Parameter(torch.empty(n, c, **self.factory)) if two_sided else None
        )  # (n, d_out/n)
        self.reset_parameters()

    # --8<-- [start:init]
    def reset_parameters(self) -> None:
        # A random hyperplane per block: ETHER starts one reflection away from W0 (‖H_k − I‖_F = 2),
        # as in the
        # official code; no unit vector makes H_k = I.
        nn.init.kaiming_uniform_(self.u, a=math.sqrt(5))
        with torch.no_grad():
            # v = −u: v̂v̂ᵀ = ûûᵀ, so H⁺ = I and W' = W0 at init (the official code's choice)
            if self.plus:
                self.v.copy_(-self.u)
            if self.two_sided:
                nn.init.kaiming_uniform_(self.u_tilde, a=math.sqrt(5))
                self.v_tilde.copy_(-self.u_tilde)

    # --8<-- [end:init]

    # --8<-- [start:update]
    def blocks(self) -> Tensor:
        """The input-side blocks ``(n, d_in/n, d_in/n)``: reflections ``H_k`` (ETHER) or ``H⁺_k``
        (ETHER+)."""
        u = _unit(self.u)  # (n, b)
        I = torch.eye(u.shape[1], **self.factory)
        if not self.plus:
            return I - 2 * u[:, :, None] * u[:, None, :]  # I − 2ûûᵀ
        v = _unit(self.v)
        return I - u[:, :, None] * u[:, None, :] + v[:, :, None] * v[:, None, :]  # I − ûûᵀ + v̂v̂ᵀ

    def blocks_tilde(self) -> Tensor | None:
        """The output-side blocks ``H̃⁺_k (n, d_out/n, d_out/n)`` of two-sided ETHER+, else
        ``None``."""
        if not self.two_sided:
            return None
        u, v = _unit(self.u_tilde), _unit(self.v_tilde)  # (n, c)
        I = torch.eye(u.shape[1], **self.factory)
        return I - u[:, :, None] * u[:, None, :] + v[:, :, None] * v[:, None, :]

    def adapted_weight(self, W0: Tensor) -> Tensor:
        W = W0 @ ops.block_diag(self.blocks())  # (d_out, d_in); blocks are symmetric, so H = Hᵀ
        if self.two_sided:
            W = ops.block_diag(self.blocks_tilde()) @ W  # (d_out, d_in)
        return W

    def _reflect(self, z: Tensor, U: Tensor, V: Tensor | None, strength: float) -> Tensor:
        """``z ↦ diag(I − s ûûᵀ + v̂v̂ᵀ) z`` block by block on the last dimension, never forming
        the matrix."""
        zb = z.unflatten(-1, (self.n, U.shape[1]))  # (..., n, block)
        out = zb - strength * (zb * U).sum(-1, keepdim=True) * U
        if V is not None:
            out = out + (zb * V).sum(-1, keepdim=True) * V
        return out.flatten(-2)

    def forward(self, x: Tensor) -> Tensor:
        if self.merged:
            return self.base(x)
        # y = H̃ (W0 (H x)) + b, with H, H̃ applied to the vectors (O(d) per token each)
        v = _unit(self.v) if self.plus else None
        z = F.linear(
            self._reflect(x, _unit(self.u), v, 1.0 if self.plus else 2.0), self.base.weight
        )
        if self.two_sided:
            z = self._reflect(z, _unit(self.u_tilde), _unit(self.v_tilde), 1.0)
        return z if self.base.bias is None else z + self.base.bias

    # --8<-- [end:update]

    def symbols(self) -> dict:
        H_tilde = self.blocks_tilde()
        return {
            **super().symbols(),
            "u": self.u,
            "v": self.v,
            "u_tilde": self.u_tilde,
            "v_tilde": self.v_tilde,
            "H": self.blocks(),
            "H_tilde": H_tilde,
            "n": self.n,
            "plus": self.plus,
            "two_sided": self.two_sided,
        }
