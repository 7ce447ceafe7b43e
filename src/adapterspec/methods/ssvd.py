r"""SSVD — Structured SVD-guided fine-tuning (Wang, Watanabe & Van hamme, arXiv:2509.02830)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from adapterspec import ops
from adapterspec.adapter import Adapter

CONSTRAINTS = ("cayley", "neumann", "none")


class SSVD(Adapter):
    r"""Rotate the input-side (right) singular vectors of the top-$k$ singular triplets and shift their singular
    values; the output-side (left) singular vectors stay fixed.

    $$W_0 = U \operatorname{diag}(S) V^\top,\qquad
      W' = U\,(\Sigma + \Delta\Sigma)\, G\, V^\top,\qquad
      \Delta\Sigma = \begin{pmatrix}\Delta\Sigma_k & 0\\ 0 & 0\end{pmatrix},\
      G = \begin{pmatrix}G_k & 0\\ 0 & I\end{pmatrix}$$

    (Eqs. 8-9), that is $W' = W_0 + U_k\big((\Sigma_k + \Delta\Sigma_k) G_k - \Sigma_k\big) V_k^\top$ with $U_k$
    ``(d_out, k)``, $\Sigma_k$ ``(k,)``, $V_k^\top$ ``(k, d_in)`` the top-$k$ triplets, frozen. The rotation is
    $G_k = (I - K)(I + K)^{-1}$, $K = -K^\top$ (Eq. 10). Equivalently $W' = (W_0 + U_k \Delta\Sigma_k V_k^\top)
    R^\top$ with the input-side rotation $R = I + V_k (G_k^\top - I) V_k^\top$ ``(d_in, d_in)``, which turns only
    inside the span of $V_k$. $K = 0$ and $\Delta\Sigma_k = 0$ at init, so $W' = W_0$.

    Args:
        base: the frozen layer.
        k: number of top singular triplets adapted (the paper's proportion $p$ of them is $k / \min(d_{in},
            d_{out})$).
        constraint: ``"cayley"`` (strict orthogonality, Eq. 10, $k(k-1)/2 + k$ parameters), ``"neumann"`` (the
            first-order approximation $G_k = I - 2K$ of Eq. 13, the paper's default in its experiments, orthogonal
            only up to $4\lVert K \rVert^2$) or ``"none"`` (an unconstrained $G_k$, Section III-C, $k^2 + k$
            parameters, starting at $I$).
    """

    capacity = "k"

    def __init__(self, base: nn.Linear, k: int = 4, constraint: str = "cayley") -> None:
        super().__init__(base)
        n = min(self.d_in, self.d_out)
        if not 1 <= k <= n:
            raise ValueError(
                f"k must be between 1 and min(d_in, d_out) = {n} (top singular triplets adapted), got {k}"
            )
        if constraint not in CONSTRAINTS:
            raise ValueError(
                f"constraint must be one of {', '.join(CONSTRAINTS)}, got {constraint!r}"
            )
        self.k, self.constraint = k, constraint
        self.register_buffer(
            "U", torch.empty(self.d_out, k, **self.factory)
        )  # (d_out, k) fixed output directions
        self.register_buffer("S", torch.empty(k, **self.factory))  # (k,) top singular values
        self.register_buffer(
            "Vh", torch.empty(k, self.d_in, **self.factory)
        )  # (k, d_in) input directions to rotate
        if constraint == "none":
            self.G_free = nn.Parameter(torch.empty(k, k, **self.factory))  # (k, k) any matrix
        else:
            self.q = nn.Parameter(
                torch.empty(k * (k - 1) // 2, **self.factory)
            )  # (k(k-1)/2,) entries of K
        self.dSigma = nn.Parameter(torch.empty(k, **self.factory))  # (k,) ΔΣ_k
        self.reset_parameters()

    # --8<-- [start:init]
    @torch.no_grad()
    def reset_parameters(self) -> None:
        U, S, Vh = ops.svd(self.base.weight.double())  # canonical signs
        self.U.copy_(U[:, : self.k])
        self.S.copy_(S[: self.k])
        self.Vh.copy_(Vh[: self.k])
        if self.constraint == "none":
            self.G_free.copy_(torch.eye(self.k))  # G_k = I
        else:
            nn.init.zeros_(self.q)  # K = 0  ⇒  G_k = I
        nn.init.zeros_(self.dSigma)  # ΔΣ_k = 0: W' = W0

    # --8<-- [end:init]

    # --8<-- [start:update]
    def G(self) -> Tensor:
        """The ``(k, k)`` rotation $G_k$ (exactly orthogonal only with ``constraint="cayley"``)."""
        if self.constraint == "none":
            return self.G_free
        K = ops.skew(self.q, self.k)  # (k, k), Kᵀ = -K
        if self.constraint == "neumann":
            return torch.eye(self.k, **self.factory) - 2 * K  # Eq. 13
        return ops.cayley(-K)  # (I - K)(I + K)⁻¹, Eq. 10

    def core(self) -> Tensor:
        """``(Σ_k + ΔΣ_k) G_k − Σ_k``, the ``(k, k)`` change in the top-k singular coordinates."""
        return (self.S + self.dSigma)[:, None] * self.G() - torch.diag(self.S)  # (k, k)

    def adapted_weight(self, W0: Tensor) -> Tensor:
        return W0 + self.U @ self.core() @ self.Vh  # (d_out, d_in)

    def forward(self, x: Tensor) -> Tensor:
        if self.merged:
            return self.base(x)
        # Through the k singular coordinates: x ↦ U_k C (V_kᵀ x), never forming a d_out × d_in
        # matrix.
        return self.base(x) + ((x @ self.Vh.T) @ self.core().T) @ self.U.T  # (..., d_out)

    # --8<-- [end:update]

    def rotation(self) -> Tensor:
        """$R = I + V_k (G_k^\\top - I) V_k^\\top$ ``(d_in, d_in)``: $W' = (W_0 + U_k \\Delta\\Sigma_k V_k^\\top) R^\\top$."""
        eye_k = torch.eye(self.k, **self.factory)
        return torch.eye(self.d_in, **self.factory) + self.Vh.T @ (self.G().T - eye_k) @ self.Vh

    def symbols(self) -> dict:
        out = {
            **super().symbols(),
            "U": self.U,
            "S": self.S,
            "Vh": self.Vh,
            "ΔΣ": self.dSigma,
            "dSigma": self.dSigma,
            "G": self.G(),
            "R": self.rotation(),
            "k": self.k,
            "constraint": self.constraint,
        }
        if self.constraint != "none":
            out.update(q=self.q, K=ops.skew(self.q, self.k))
        return out
