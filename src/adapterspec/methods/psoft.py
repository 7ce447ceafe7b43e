r"""PSOFT — Orthogonal Fine-Tuning with Principal Subspace Adaptation (Wu et al., arXiv:2505.11235)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from adapterspec import ops
from adapterspec.adapter import Adapter


class PSOFT(Adapter):
    r"""An $r\times r$ rotation inside the top-$r$ singular subspace of the pretrained weight, with two scaling vectors.

    With $W_0 = U \operatorname{diag}(S) V^\top$ (singular values descending), split once at init:

    $$A = V_{[:, :r]}^\top,\quad B = U_{[:, :r]} \operatorname{diag}(S_{[:r]}),\quad W_{res} = W_0 - BA\ \text{(frozen)}$$

    $$W' = W_{res} + B \operatorname{diag}(\beta)\, R\, \operatorname{diag}(\alpha)\, A,\qquad
      R = (I + Q)(I - Q)^{-1},\ Q = -Q^\top \in \mathbb{R}^{r\times r}$$

    Only $Q$ (the strict upper triangle), $\alpha$ and $\beta$ train; $Q = 0$, $\alpha = \beta = 1$ give $W' = W_0$.
    $A$ has orthonormal rows, which is the paper's condition (Theorem 4.1, $A^\top A = I$ in its layout) for $R$ to
    keep the norms of and angles between the principal parts of the neurons. ΔW $= B(\operatorname{diag}(\beta) R
    \operatorname{diag}(\alpha) - I)A$ lies in the span of the top-$r$ singular vectors on both sides.

    The paper writes $W \in \mathbb{R}^{d\times n}$ (columns are neurons) and $W = A' \operatorname{diag}(\alpha) R_p
    \operatorname{diag}(\beta) B' + W_{res}$ with $R_p = (I - Q)(I + Q)^{-1}$ (Eq. 8); in the ``(d_out, d_in)`` layout
    that is the formula above with $A = A'^\top$, $B = B'^\top$ and $R = R_p^\top$ (same $Q$).

    Args:
        base: the pretrained layer; its weight is replaced by $W_{res}$ at init.
        r: dimension of the principal subspace (rank of the split); at most ``min(d_in, d_out)``.
        mag_a: train $\alpha$, the scaling between $A$ and $R$ (input side of $R$); otherwise $\alpha = 1$.
        mag_b: train $\beta$, the scaling between $R$ and $B$ (output side of $R$); otherwise $\beta = 1$.
        symmetric: split $\sqrt{S}$ onto both factors, $A = \operatorname{diag}(\sqrt{S})V^\top$,
            $B = U\operatorname{diag}(\sqrt{S})$ (the paper's Eq. 3, PiSSA's split), which does not keep the geometry.
        orth: ``False`` trains $R$ as a free $r\times r$ matrix (initialised to $I$) instead of a Cayley rotation.
        k: ``0`` (default) is the exact Cayley map; ``k > 0`` replaces $(I - Q)^{-1}$ by $I + Q + \dots + Q^k$ (the
            Cayley–Neumann series the paper's experiments use), only approximately orthogonal.
        eps: with the series, rescale $Q$ to Frobenius norm ``eps`` whenever it is larger (``0``: never).
    """

    capacity = "r"

    def __init__(
        self,
        base: nn.Linear,
        r: int = 32,
        mag_a: bool = True,
        mag_b: bool = True,
        symmetric: bool = False,
        orth: bool = True,
        k: int = 0,
        eps: float = 0.0,
    ) -> None:
        super().__init__(base)
        if not 1 <= r <= min(self.d_in, self.d_out):
            raise ValueError(
                f"r={r} must be between 1 and min(d_in, d_out) = {min(self.d_in, self.d_out)} (the "
                "principal subspace is spanned by r singular vectors)"
            )
        if k < 0:
            raise ValueError(
                f"k={k} must be 0 (exact Cayley map) or the number of powers of Q in the Neumann series"
            )
        if eps < 0 or (eps and not k):
            raise ValueError(
                f"eps={eps} bounds ‖Q‖_F for the Neumann series only: use eps > 0 with k > 0, or eps = 0"
            )
        self.r, self.mag_a, self.mag_b, self.symmetric, self.orth, self.k, self.eps = (
            r,
            mag_a,
            mag_b,
            symmetric,
            orth,
            k,
            eps,
        )
        free = r * (r - 1) // 2 if orth else r * r
        self.q = nn.Parameter(
            torch.empty(free, **self.factory)
        )  # strict upper triangle of Q, or R itself
        self.alpha = nn.Parameter(torch.empty(r, **self.factory)) if mag_a else None  # (r,)
        self.beta = nn.Parameter(torch.empty(r, **self.factory)) if mag_b else None  # (r,)
        self.register_buffer("A", torch.empty(r, self.d_in, **self.factory))  # (r, d_in), frozen
        self.register_buffer("B", torch.empty(self.d_out, r, **self.factory))  # (d_out, r), frozen
        self.reset_parameters()

    # --8<-- [start:init]
    @torch.no_grad()
    def reset_parameters(self) -> None:
        first = not getattr(self, "_split_done", False)
        # the pretrained weight
        W = self.base.weight.clone() if first else self.base.weight + self.B @ self.A
        U, S, Vh = ops.svd(W.double())  # canonical signs
        if self.symmetric:  # Eq. 3: √S on both sides
            self.A.copy_(S[: self.r, None].sqrt() * Vh[: self.r])  # (r, d_in)
            self.B.copy_(U[:, : self.r] * S[: self.r].sqrt())  # (d_out, r)
        else:  # Eq. 6: A has orthonormal rows, the principal right singular vectors
            self.A.copy_(Vh[: self.r])  # (r, d_in)
            self.B.copy_(U[:, : self.r] * S[: self.r])  # (d_out, r)
        self.base.weight.copy_(W - self.B @ self.A)  # W_res: the minor components, frozen
        self._split_done = True
        if self.orth:
            self.q.zero_()  # Q = 0  ⇒  R = I
        else:
            self.q.copy_(torch.eye(self.r, dtype=self.q.dtype).flatten())
        for v in (self.alpha, self.beta):
            if v is not None:
                v.fill_(1.0)

    # --8<-- [end:init]

    # --8<-- [start:update]
    def rotation(self) -> Tensor:
        """``R (r, r)``: the Cayley map of ``Q`` (or its series), or the free matrix when
        ``orth=False``."""
        if not self.orth:
            return self.q.reshape(self.r, self.r)
        Q = ops.skew(self.q, self.r)  # (r, r), Qᵀ = −Q
        if not self.k:
            return ops.cayley(Q)  # (I + Q)(I − Q)⁻¹, exactly orthogonal
        if self.eps:  # peft's optional bound on ‖Q‖_F for the series
            norm = torch.linalg.matrix_norm(Q)
            Q = Q * (self.eps / (norm + 1e-12)) if norm > self.eps else Q
        I = torch.eye(self.r, **self.factory)
        S = I
        for _ in range(self.k):  # S = I + Q + … + Q^k ≈ (I − Q)⁻¹
            S = I + Q @ S
        return S + Q @ S  # (I + Q) S

    def core(self) -> Tensor:
        """``diag(β) R diag(α)``, the ``r × r`` map between the frozen factors."""
        M = self.rotation()
        if self.beta is not None:
            M = self.beta[:, None] * M
        if self.alpha is not None:
            M = M * self.alpha[None, :]
        return M  # (r, r)

    def adapted_weight(self, W_res: Tensor) -> Tensor:
        return W_res + self.B @ self.core() @ self.A  # (d_out, d_in)

    def forward(self, x: Tensor) -> Tensor:
        if self.merged:
            return self.base(x)
        z = x @ self.A.T  # (..., r): coordinates in the principal input subspace
        return self.base(x) + (z @ self.core().T) @ self.B.T  # W_res x + B M A x

    # --8<-- [end:update]

    def symbols(self) -> dict:
        ones = torch.ones(self.r, **self.factory)
        Q = ops.skew(self.q, self.r) if self.orth else None
        return {
            **super().symbols(),
            "W_res": self.base.weight,
            "A": self.A,
            "B": self.B,
            "q": self.q,
            "Q": Q,
            "R": self.rotation(),
            "alpha": ones if self.alpha is None else self.alpha,
            "beta": ones if self.beta is None else self.beta,
            "r": self.r,
            "k": self.k,
            "symmetric": self.symmetric,
        }
