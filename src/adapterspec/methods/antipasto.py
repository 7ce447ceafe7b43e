r"""AntiPaSTO — Anti-Parallel Subspace Training for Ordered steering (Clark, arXiv:2601.07473)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from adapterspec import ops
from adapterspec.adapter import Adapter


class AntiPaSTO(Adapter):
    r"""A steering coefficient $\alpha$ turns the top-$r$ right singular vectors by a Cayley rotation and shifts the
    top-$r$ singular values; $-\alpha$ applies the inverse rotation and the opposite shift.

    $$W = U S V^\top + W_{res},\qquad
      W'(\alpha) = U\,(S + \alpha\,\Delta S)\,R(\alpha)\,V^\top + W_{res},$$

    $$R(\alpha) = \big(I - \tfrac{\alpha}{2} A_c\big)\big(I + \tfrac{\alpha}{2} A_c\big)^{-1},\qquad
      A_c = a\,\tanh(A / a),\quad a = 2\tan(\theta_{max}/2),\quad A = -A^\top$$

    (Eqs. 3-4, 6-8). $U$ ``(d_out, r)``, $S$ ``(r,)``, $V^\top$ ``(r, d_in)`` are $r$ singular triplets of $W_0$
    (the top $r$ by default; `select_dims` puts them where a score such as the paper's WANDA-style
    $s_k \operatorname{std}(X v_k)$ is largest), frozen; $W_{res}$ is the rest of $W_0$. $R(-\alpha) = R(\alpha)^\top
    = R(\alpha)^{-1}$ exactly, and $W'(0) = W_0$ whatever the state. Training runs $\alpha = \pm 1$ and pushes the two
    hidden-state shifts apart along one axis (the antiparallel loss, not part of this module). $A = 0$ and
    $\Delta S = 0$ at init, so $W'(\alpha) = W_0$ for every $\alpha$.

    Args:
        base: the frozen layer.
        r: number of singular triplets adapted.
        alpha: the steering coefficient $\alpha$ (a plain attribute: set ``module.alpha`` to steer; ``-1``, ``0``,
            ``1`` in training).
        theta_max: the soft clamp's angle $\theta_{max}$ in radians, in $(0, \pi)$ (Section A.5: $\pi/3$).
    """

    capacity = "r"

    def __init__(
        self, base: nn.Linear, r: int = 4, alpha: float = 1.0, theta_max: float = math.pi / 3
    ) -> None:
        super().__init__(base)
        n = min(self.d_in, self.d_out)
        if not 1 <= r <= n:
            raise ValueError(
                f"r must be between 1 and min(d_in, d_out) = {n} (singular triplets adapted), got {r}"
            )
        if not 0 < theta_max < math.pi:
            raise ValueError(
                f"theta_max must be an angle in (0, π) radians (the paper uses π/3), got {theta_max}"
            )
        self.r, self.alpha, self.theta_max = r, float(alpha), float(theta_max)
        self.a_limit = 2 * math.tan(theta_max / 2)  # Eq. 8: the bound on each entry of A
        self.register_buffer(
            "U", torch.empty(self.d_out, r, **self.factory)
        )  # (d_out, r) fixed output directions
        self.register_buffer("S", torch.empty(r, **self.factory))  # (r,) their singular values
        self.register_buffer(
            "Vh", torch.empty(r, self.d_in, **self.factory)
        )  # (r, d_in) input directions to turn
        self.q = nn.Parameter(
            torch.empty(r * (r - 1) // 2, **self.factory)
        )  # (r(r-1)/2,) entries of A
        self.dS = nn.Parameter(torch.empty(r, **self.factory))  # (r,) ΔS
        self.reset_parameters()

    # --8<-- [start:init]
    @torch.no_grad()
    def reset_parameters(self) -> None:
        self.select_dims(torch.arange(min(self.d_in, self.d_out), 0, -1))  # the top r, as in PiSSA

    @torch.no_grad()
    def select_dims(self, scores: Tensor) -> None:
        """Adapt the ``r`` singular triplets of largest ``scores`` ``(min(d_in, d_out),)``, and
        zero ``A``, ``ΔS``."""
        U, S, Vh = ops.svd(self.base.weight.double())  # canonical signs
        if scores.shape != S.shape:
            raise ValueError(
                f"scores must have one entry per singular triplet, shape {tuple(S.shape)}, "
                f"got {tuple(scores.shape)}"
            )
        dims = torch.topk(scores.double(), self.r).indices.sort().values  # (r,)
        self.U.copy_(U[:, dims])
        self.S.copy_(S[dims])
        self.Vh.copy_(Vh[dims])
        nn.init.zeros_(self.q)  # A = 0  ⇒  R(α) = I
        nn.init.zeros_(self.dS)  # ΔS = 0: W'(α) = W0 for every α

    @torch.no_grad()
    def wanda_scores(self, X: Tensor) -> Tensor:
        """Section A.4's importance of each singular triplet on calibration inputs ``X (N, d_in)``:
        $s_k \\operatorname{std}(X v_k)$, shape ``(min(d_in, d_out),)``; pass it to
        `select_dims`."""
        _, S, Vh = ops.svd(self.base.weight.double())
        return S * (X.double() @ Vh.T).std(dim=0)

    # --8<-- [end:init]

    # --8<-- [start:update]
    def R_r(self, alpha: float | None = None) -> Tensor:
        """The ``(r, r)`` rotation $R(\\alpha)$ (Eq. 7), at ``alpha`` or the module's own."""
        alpha = self.alpha if alpha is None else alpha
        A = ops.skew(self.q, self.r)  # (r, r), Aᵀ = -A
        A_c = self.a_limit * torch.tanh(A / self.a_limit)  # Eq. 8: entrywise soft clamp, still skew
        return ops.cayley(-alpha / 2 * A_c)  # (I - αA_c/2)(I + αA_c/2)⁻¹

    def core(self) -> Tensor:
        """``(S + αΔS) R(α) − S``, the ``(r, r)`` change in the adapted singular coordinates."""
        return (self.S + self.alpha * self.dS)[:, None] * self.R_r() - torch.diag(self.S)  # (r, r)

    def adapted_weight(self, W0: Tensor) -> Tensor:
        # (d_out, d_in): the PiSSA split, W_res untouched
        return W0 + self.U @ self.core() @ self.Vh

    def forward(self, x: Tensor) -> Tensor:
        if self.merged:
            return self.base(x)
        # (..., d_out), through r coordinates
        return self.base(x) + ((x @ self.Vh.T) @ self.core().T) @ self.U.T

    # --8<-- [end:update]

    def rotation(self) -> Tensor:
        """$R = I + V (R(\\alpha)^\\top - I) V^\\top$ ``(d_in, d_in)``, so that $W' = (W_0 + \\alpha U \\Delta S
        V^\\top) R^\\top$: the input-side rotation, turning only inside the span of the adapted right singular
        vectors."""
        eye_r = torch.eye(self.r, **self.factory)
        return torch.eye(self.d_in, **self.factory) + self.Vh.T @ (self.R_r().T - eye_r) @ self.Vh

    def symbols(self) -> dict:
        return {
            **super().symbols(),
            "U": self.U,
            "S": self.S,
            "Vh": self.Vh,
            "q": self.q,
            "A": ops.skew(self.q, self.r),
            "ΔS": self.dS,
            "dS": self.dS,
            "R_r": self.R_r(),
            "R": self.rotation(),
            "r": self.r,
            "alpha": self.alpha,
            "theta_max": self.theta_max,
            "a_limit": self.a_limit,
        }
