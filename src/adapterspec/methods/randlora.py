r"""RandLoRA — Full-rank parameter-efficient fine-tuning from random bases (Albert et al., arXiv:2502.00987)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from adapterspec.adapter import Adapter

SCALINGS = ("paper", "peft")


class RandLoRA(Adapter):
    r"""A sum of $n$ frozen random rank-$r$ bases, each re-weighted by two trainable diagonal matrices.

    $$W' = W_0 + s\,M \ \ (d_{in} \le d_{out}),\qquad W' = W_0 + s\,M^\top \ \ (d_{in} > d_{out}),\qquad
      M = \sum_{j=1}^{n} B_j \Lambda_j A \Gamma_j \in \mathbb{R}^{D\times d}$$

    with $d = \min(d_{in}, d_{out})$, $D = \max(d_{in}, d_{out})$ and $n = \lceil d/r \rceil$ bases, enough for
    $nr \ge d$ and so for a full-rank update. $B_j \in \mathbb{R}^{D\times r}$ (one per basis) and
    $A \in \mathbb{R}^{r\times d}$ (one, shared by the $n$ terms, Eq. 4) are random and frozen (buffers). Only the
    diagonals train: $\Lambda_j = \operatorname{diag}(\lambda_j)$, $\lambda_j \in \mathbb{R}^r$ and
    $\Gamma_j = \operatorname{diag}(\gamma_j)$, $\gamma_j \in \mathbb{R}^d$, so $n(r + d) \approx d^2/r + d$ numbers.
    The paper writes $W_0 \in \mathbb{R}^{D\times d}$ with $d < D$ "without loss of generality", $A\Gamma_j$ acting on
    the input: that is the $d_{in} \le d_{out}$ case. For a wider input the same construction is applied to the
    transpose, so that $\Gamma_j$ always sits on the smaller side (as in the authors' code and peft).

    In the paper (Appendix C.5.1) and in peft one set of bases, sized to the largest layer, is shared by every adapted
    layer; this module draws its own from a ``torch.Generator`` seeded by ``seed`` (``A`` first, then ``B_1 … B_n``,
    each Kaiming-uniform with ``a=√5`` and divided by its standard deviation, as the authors do), in float32.
    $\Lambda = 0$ at init, so $W' = W_0$; $\Gamma_j = I/d$.

    Args:
        base: the frozen layer.
        r: rank of each random basis. The trainable count falls as ``r`` grows (``≈ d²/r + d``); the update stays
            full rank. The paper uses 6, 8 and 10 on CLIP; for LLMs Table 9 lists 6 to 15 while Table 15 runs 5 to 60;
            32 is peft's default.
        alpha: scale numerator; ``alpha / r`` is the "base scaling coefficient" (2 in the paper's LLM runs, so the
            default ``alpha = 64`` with ``r = 32``).
        scaling: ``"paper"``: $s = \alpha / (r\sqrt{n})$ (the LLM runs, Appendix C.4 and Table 9: the base coefficient
            times $1/\sqrt{n}$, to offset the growing norm of a sum of $n$ random terms); ``"peft"``: $s = \alpha / r$,
            what peft 0.21.2 applies (its default ``randlora_alpha=640``, ``r=32`` gives $s = 20$), and also the paper's
            CLIP rule $10/r$ with ``alpha = 10`` (Table 8).
        sparsity: ``0`` for dense bases; ``s ≥ 2`` for the paper's ternary bases (Section 6.4): entries $-1, 0, +1$
            with probabilities $1/s, 1 - 2/s, 1/s$, then divided by their standard deviation.
        seed: seed of the generator that draws $A$ and the $B_j$.
    """

    capacity = "r"  # rank of each random basis: larger r, fewer trainable numbers

    def __init__(self, base: nn.Linear, r: int = 32, alpha: float = 64.0, scaling: str = "paper",
                 sparsity: float = 0, seed: int = 0) -> None:
        super().__init__(base)
        if r < 1:
            raise ValueError(f"r must be a positive integer, got {r}")
        if scaling not in SCALINGS:
            raise ValueError(f"scaling must be one of {SCALINGS} (the paper's α/(r√n) or peft's α/r), got {scaling!r}")
        if alpha == 0:
            raise ValueError("alpha must be non-zero: with s = 0 no parameter gets a gradient (the paper uses α/r = 2)")
        if sparsity != 0 and sparsity < 2:
            raise ValueError(f"sparsity must be 0 (dense bases) or s ≥ 2 (P(±1) = 1/s each), got {sparsity}")
        self.r, self.alpha, self.scaling, self.sparsity, self.seed = r, alpha, scaling, sparsity, seed
        self.d, self.D = min(self.d_in, self.d_out), max(self.d_in, self.d_out)
        self.n = math.ceil(self.d / r)  # enough rank-r terms to reach rank d
        self.s = alpha / (r * math.sqrt(self.n)) if scaling == "paper" else alpha / r
        self.register_buffer("A", torch.empty(r, self.d, **self.factory))  # (r, d), shared by the n terms
        self.register_buffer("B", torch.empty(self.n, self.D, r, **self.factory))  # (n, D, r), B_j = B[j]
        self.Lambda = nn.Parameter(torch.empty(self.n, r, **self.factory))  # (n, r), row j = diagonal of Λ_j
        self.Gamma = nn.Parameter(torch.empty(self.n, self.d, **self.factory))  # (n, d), row j = diagonal of Γ_j
        self.reset_parameters()

    # --8<-- [start:init]
    def _draw(self, shape: tuple[int, ...], g: torch.Generator) -> Tensor:
        if self.sparsity:  # ternary: −1 w.p. 1/s, +1 w.p. 1/s, 0 otherwise
            u = torch.rand(shape, generator=g)
            return (u > 1 - 1 / self.sparsity).float() - (u < 1 / self.sparsity).float()
        return nn.init.kaiming_uniform_(torch.empty(shape), a=math.sqrt(5), generator=g)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        g = torch.Generator().manual_seed(self.seed)
        A = self._draw((self.r, self.d), g)  # (r, d)
        B = torch.stack([self._draw((self.D, self.r), g) for _ in range(self.n)])  # (n, D, r)
        self.A.copy_(A / A.std())  # unit-variance entries, as the authors normalise
        self.B.copy_(B / B.std())
        self.Lambda.zero_()  # Λ_j = 0 ⇒ ΔW = 0 at init
        self.Gamma.fill_(1 / self.d)  # Γ_j = I/d (peft and the authors' LLM code)
    # --8<-- [end:init]

    # --8<-- [start:update]
    def _factors(self) -> tuple[Tensor, Tensor]:
        """``(B_flat (D, n·r), ΛAΓ (n·r, d))`` with ``M = B_flat @ ΛAΓ``; index ``j·r + k`` is
        basis j, column k."""
        # (n, r, d): Λ_j A Γ_j
        LAG = self.Lambda[:, :, None] * self.A[None] * self.Gamma[:, None, :]
        B_flat = self.B.permute(1, 0, 2).reshape(self.D, self.n * self.r)  # (D, n·r) = [B_1 … B_n]
        return B_flat, LAG.reshape(self.n * self.r, self.d)  # (D, n·r), (n·r, d)

    def adapted_weight(self, W0: Tensor) -> Tensor:
        B_flat, LAG = self._factors()
        M = B_flat @ LAG  # (D, d) = Σ_j B_j Λ_j A Γ_j
        return W0 + self.s * (M if self.d_in <= self.d_out else M.T)  # (d_out, d_in)

    def forward(self, x: Tensor) -> Tensor:
        if self.merged:
            return self.base(x)
        # Same value as adapted_weight, through the n·r-dimensional bottleneck, without forming ΔW.
        B_flat, LAG = self._factors()
        if self.d_in <= self.d_out:
            h = (x @ LAG.T) @ B_flat.T  # (..., d_out): Γ on the input side
        else:
            h = (x @ B_flat) @ LAG  # (..., d_out): Mᵀ x, Γ on the output side
        return self.base(x) + self.s * h
    # --8<-- [end:update]

    def symbols(self) -> dict:
        return {**super().symbols(), "A": self.A, "B": self.B, "Lambda": self.Lambda, "Gamma": self.Gamma,
                "r": self.r, "n": self.n, "alpha": self.alpha, "scaling": self.scaling, "s": self.s,
                "sparsity": self.sparsity, "seed": self.seed}
