r"""DeLoRA — Decoupling Angles and Strength in Low-rank Adaptation (Bini et al., arXiv:2503.18225)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from adapterspec.adapter import Adapter


class DeLoRA(Adapter):
    r"""LoRA with every rank-one component normalised to unit norm and one learned strength λ per layer.

    $$W' = W_0 + \Big(\frac{\lambda}{r} B \Xi A - \frac{\lambda_0}{r} B_0 \Xi_0 A_0\Big) D_W,\qquad
      \Xi = \operatorname{diag}\Big(\frac{1}{\lVert b_i\rVert\,\lVert a_i\rVert}\Big),\qquad
      D_W = \operatorname{diag}\big(\lVert W_0[:, j]\rVert\big)_{j=1}^{d_{in}}$$

    $B \in \mathbb{R}^{d_{out}\times r}$ (columns $b_i$) and $A \in \mathbb{R}^{r\times d_{in}}$ (rows $a_i$) are
    trained; $\frac{1}{r}B\Xi A = \frac{1}{r}\sum_i \hat b_i \hat a_i^\top$ is an average of $r$ unit-Frobenius
    rank-one matrices, so only the *directions* of $a_i, b_i$ matter and its norm is at most 1 (Eqs. 5-7). The learned
    scalar $\lambda$ sets the strength. $D_W$ (Eq. 8, "weights-norm scaling") multiplies column $j$ of the update by
    the norm of column $j$ of the pretrained weight (the weights reading input feature $j$), frozen at init; the paper
    writes a single factor $\lVert W \rVert$ without naming the norm; peft (and code circulating as the authors') use
    these per-input-feature norms.

    The normalisation forbids LoRA's $B = 0$ start, so the paper draws both factors at random and subtracts a frozen
    copy of the initial update, $B_0 \Xi_0 A_0$ with $\lambda_0$ (Eq. 9; the paper folds it into $W_0$, here it is kept
    as buffers, the same maths): $W' = W_0$ at init, and $\operatorname{rank}(\Delta W) \le 2r$ afterwards.
    ``init="peft"`` reproduces peft 0.21.2 instead: $B = 0$, no frozen copy (rank $\le r$), and the norms in $\Xi$
    floored at ``eps = 1e-4`` (else $1/\lVert b_i\rVert$ is infinite at init).

    Args:
        base: the frozen layer.
        r: rank of the learned update.
        lambda0: initial value of the trainable strength $\lambda$ (peft's ``delora_lambda``).
        init: ``"paper"`` (random $A$, $B$ and a subtracted frozen copy) or ``"peft"`` ($B = 0$, no copy).
        eps: floor on $\lVert a_i\rVert$ and $\lVert b_i\rVert$ in $\Xi$; ``None`` means 0 (none) for ``"paper"`` and
            peft's ``1e-4`` for ``"peft"``.
    """

    capacity = "r"

    def __init__(self, base: nn.Linear, r: int = 8, lambda0: float = 15.0, init: str = "paper",
                 eps: float | None = None) -> None:
        super().__init__(base)
        if r < 1:
            raise ValueError(f"r must be a positive integer, got {r}")
        if init not in ("paper", "peft"):
            raise ValueError(f"init must be 'paper' (frozen copy subtracted) or 'peft' (B = 0), got {init!r}")
        eps = (0.0 if init == "paper" else 1e-4) if eps is None else eps
        if eps < 0 or (init == "peft" and eps == 0):
            raise ValueError(f"eps={eps}: must be >= 0, and > 0 with init='peft' (B = 0 has zero column norms)")
        self.r, self.lambda0, self.init, self.eps = r, lambda0, init, eps
        self.A = nn.Parameter(torch.empty(r, self.d_in, **self.factory))  # (r, d_in), rows a_i
        self.B = nn.Parameter(torch.empty(self.d_out, r, **self.factory))  # (d_out, r), columns b_i
        self.lambda_ = nn.Parameter(torch.empty(1, **self.factory))  # (1,) the strength λ
        self.register_buffer("A0", torch.empty(r, self.d_in, **self.factory))  # (r, d_in) frozen copy of A at init
        self.register_buffer("B0", torch.empty(self.d_out, r, **self.factory))  # (d_out, r) frozen copy of B at init
        self.register_buffer("w_norm", torch.empty(self.d_in, **self.factory))  # (d_in,) ‖W0[:, j]‖, frozen
        self.reset_parameters()

    # --8<-- [start:init]
    @torch.no_grad()
    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        if self.init == "paper":
            nn.init.kaiming_uniform_(self.B, a=math.sqrt(5))  # both factors random: every ‖b_i‖ > 0
        else:
            # peft: B = 0, so the learned term is 0 (with norms floored at eps)
            nn.init.zeros_(self.B)
        self.lambda_.fill_(self.lambda0)
        # The initial update, frozen and subtracted (Eq. 9), so W' = W0 at init.
        # With B = 0 it is zero.
        self.A0.copy_(self.A)
        self.B0.copy_(self.B)
        # (d_in,) norm of each column of W0
        self.w_norm.copy_(torch.linalg.vector_norm(self.base.weight, dim=0))
    # --8<-- [end:init]

    # --8<-- [start:update]
    def scales(self, A: Tensor, B: Tensor, lam: Tensor) -> Tensor:
        """``λ / (r ‖b_i‖ ‖a_i‖)`` for each rank component, ``(r,)``: the diagonal of
        ``(λ/r) Ξ``."""
        a_norm = torch.linalg.vector_norm(A, dim=1).clamp_min(self.eps)  # (r,)
        b_norm = torch.linalg.vector_norm(B, dim=0).clamp_min(self.eps)  # (r,)
        return lam / self.r / (a_norm * b_norm)  # (r,)

    def _lambda0(self) -> Tensor:
        # λ0 in λ's dtype, rounded exactly as λ was at init,
        # so that the two terms cancel bit for bit at init
        return self.lambda_.new_full((1,), self.lambda0)  # (1,)

    def adapted_weight(self, W0: Tensor) -> Tensor:
        # (d_out, d_in) (λ/r) B Ξ A
        dW = (self.B * self.scales(self.A, self.B, self.lambda_)) @ self.A
        if self.init == "paper":
            # minus the frozen copy
            dW = dW - (self.B0 * self.scales(self.A0, self.B0, self._lambda0())) @ self.A0
        return W0 + dW * self.w_norm  # (d_out, d_in): column j scaled by ‖W0[:, j]‖

    def forward(self, x: Tensor) -> Tensor:
        if self.merged:
            return self.base(x)
        # (..., d_in): D_W on the input side, never forming the d_out × d_in update
        xw = x * self.w_norm
        dy = (xw @ self.A.T * self.scales(self.A, self.B, self.lambda_)) @ self.B.T  # (..., d_out)
        if self.init == "paper":  # the two terms cancel exactly at init, before W0 x is added
            dy = dy - (xw @ self.A0.T * self.scales(self.A0, self.B0, self._lambda0())) @ self.B0.T
        return self.base(x) + dy  # (..., d_out)
    # --8<-- [end:update]

    def symbols(self) -> dict:
        return {**super().symbols(), "A": self.A, "B": self.B, "lambda": self.lambda_, "A0": self.A0,
                "B0": self.B0, "w_norm": self.w_norm, "r": self.r, "lambda0": self.lambda0, "init": self.init,
                "eps": self.eps}
