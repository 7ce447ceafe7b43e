r"""LoKr — Low-rank adaptation with Kronecker product (Yeh et al., arXiv:2309.14859)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from adapterspec import ops
from adapterspec.adapter import Adapter


def kron_split(p: int, f: int) -> int:
    r"""LyCORIS's Eq. (5): $u = \max\{u \le \min(f, \sqrt{p}) : u \mid p\}$, the size of the small Kronecker factor.

    ``f = -1`` means no cap (the divisor of ``p`` closest to $\sqrt{p}$ from below); a prime ``p`` gives ``u = 1``.
    """
    cap = math.isqrt(p) if f == -1 else min(f, math.isqrt(p))
    return next(u for u in range(cap, 0, -1) if p % u == 0)


class LoKr(Adapter):
    r"""An additive update that is the Kronecker product of a small block and a (low-rank) large block.

    $$W' = W_0 + \frac{\alpha}{r}\, C \otimes R,\qquad C \in \mathbb{R}^{u_p\times u_q},\quad
      R = B A \in \mathbb{R}^{v_p\times v_q},$$

    $$B \in \mathbb{R}^{v_p\times r},\quad A \in \mathbb{R}^{r\times v_q},\quad d_{out} = u_p v_p,\quad
      d_{in} = u_q v_q$$

    LyCORIS's Eq. (4)–(5), with $p = d_{out}$, $q = d_{in}$. Block $(i, j)$ of $\Delta W$ is $C_{ij} R$: the output
    neurons fall into $u_p$ groups of $v_p$ consecutive ones, the inputs into $u_q$ groups of $v_q$, and every pair of
    groups is changed by the same matrix $R$, weighted by $C$. Ranks multiply,
    $\operatorname{rank}(C \otimes R) = \operatorname{rank}(C)\operatorname{rank}(R)$, and so do singular values.
    Applied to a vector, $(C \otimes R)\,x = \operatorname{vec}(C X R^\top)$ with $X$ the $u_q\times v_q$ row-major
    reshape of $x$, so the update never needs the $d_{out}\times d_{in}$ matrix.

    The large block is factored as $B A$ only when $2r < \max(v_p, v_q)$, otherwise it is a full matrix $D$ (LyCORIS's
    and peft's rule: a large ``r`` means "no decomposition"); with ``decompose_both`` the small block is likewise
    $C = C_1 C_2$ when $2r < \max(u_p, u_q)$. At init one block is zero, so $W' = W_0$.

    Args:
        base: the frozen layer.
        r: rank of the factored block(s); also the denominator of the scale.
        alpha: scale numerator; the update is multiplied by ``alpha / r`` (LyCORIS's merge ratio $\gamma$).
        factor: the paper's $f$, a cap on the small block's sides (Eq. 5); ``-1`` (peft's default) means none, which
            splits each dimension near its square root. LyCORIS's experiments used ``factor=8`` with ``r`` large enough
            to keep the big block full.
        decompose_both: also factor the small block as $C_1 C_2$ (peft's ``decompose_both``; not in the paper).
        u_p: the small block's height, overriding ``factor`` (must divide ``d_out``); peft's ``factorization``
            differs from Eq. (5) when ``factor`` divides the dimension and exceeds its square root.
        u_q: the small block's width, overriding ``factor`` (must divide ``d_in``).
        zero_block: which block starts at zero: ``"C"``, the small one ($C$, or $C_1$: peft's default) or ``"R"``,
            the large one ($D$, or $A$: the LyCORIS repository, and peft's ``init_weights="lycoris"``). The paper
            gives no init.
    """

    capacity = "r"  # rank of the large Kronecker factor

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 8.0, factor: int = -1,
                 decompose_both: bool = False, u_p: int | None = None, u_q: int | None = None,
                 zero_block: str = "C") -> None:
        super().__init__(base)
        if not isinstance(r, int) or r < 1:
            raise ValueError(f"r must be a positive integer, got {r!r}")
        if not isinstance(factor, int) or not (factor == -1 or factor >= 1):
            raise ValueError(f"factor must be -1 (no cap) or a positive integer, got {factor!r}")
        if zero_block not in ("C", "R"):
            raise ValueError(f"zero_block must be 'C' (the small block starts at zero, peft's default) or 'R' (the "
                             f"large block, the LyCORIS repository's), got {zero_block!r}")
        for name, u, d in (("u_p", u_p, self.d_out), ("u_q", u_q, self.d_in)):
            if u is not None and (not isinstance(u, int) or u < 1 or d % u):
                raise ValueError(f"{name}={u!r} must be a positive divisor of {d} (the layer's "
                                 f"{'d_out' if name == 'u_p' else 'd_in'}); leave it None to derive it from factor")
        self.r, self.alpha, self.factor, self.decompose_both = r, alpha, factor, decompose_both
        self.zero_block = zero_block
        self.scaling = alpha / r
        self.u_p = u_p if u_p is not None else kron_split(self.d_out, factor)
        self.u_q = u_q if u_q is not None else kron_split(self.d_in, factor)
        self.v_p, self.v_q = self.d_out // self.u_p, self.d_in // self.u_q
        self.full_left = not (decompose_both and 2 * r < max(self.u_p, self.u_q))
        self.full_right = 2 * r >= max(self.v_p, self.v_q)

        def param(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.empty(*shape, **self.factory))

        for name in ("C", "C1", "C2", "D", "B", "A"):
            self.register_parameter(name, None)
        if self.full_left:
            self.C = param(self.u_p, self.u_q)  # (u_p, u_q)
        else:
            self.C1, self.C2 = param(self.u_p, r), param(r, self.u_q)  # (u_p, r), (r, u_q)
        if self.full_right:
            self.D = param(self.v_p, self.v_q)  # (v_p, v_q)
        else:
            self.B, self.A = param(self.v_p, r), param(r, self.v_q)  # (v_p, r), (r, v_q)
        self.reset_parameters()

    # --8<-- [start:init]
    def reset_parameters(self) -> None:
        for p in (self.C, self.C1, self.C2, self.D, self.B, self.A):
            if p is not None:
                nn.init.kaiming_uniform_(p, a=math.sqrt(5))
        # One block zero, so C ⊗ R = 0. peft zeroes the small block (C, or its outer factor C1); the
        # LyCORIS repository zeroes the large one (D, or its inner factor A).
        if self.zero_block == "C":
            nn.init.zeros_(self.C if self.full_left else self.C1)
        else:
            nn.init.zeros_(self.D if self.full_right else self.A)
    # --8<-- [end:init]

    # --8<-- [start:update]
    def left(self) -> Tensor:
        """The small block ``C``, ``(u_p, u_q)``."""
        return self.C if self.full_left else self.C1 @ self.C2  # (u_p, u_q)

    def right(self) -> Tensor:
        """The large block ``R = B A`` (or the full ``D``), ``(v_p, v_q)``."""
        return self.D if self.full_right else self.B @ self.A  # (v_p, v_q)

    def adapted_weight(self, W0: Tensor) -> Tensor:
        # (d_out, d_in), block (i, j) = C_ij R
        return W0 + self.scaling * ops.kron(self.left(), self.right())

    def forward(self, x: Tensor) -> Tensor:
        if self.merged:
            return self.base(x)
        # (C ⊗ R) x = vec(C X Rᵀ), X the (u_q, v_q) row-major reshape of x: no d_out × d_in matrix.
        X = x.unflatten(-1, (self.u_q, self.v_q))  # (..., u_q, v_q)
        XR = X @ self.D.T if self.full_right else (X @ self.A.T) @ self.B.T  # (..., u_q, v_p)
        Y = self.left() @ XR  # (..., u_p, v_p)
        return self.base(x) + self.scaling * Y.flatten(-2)  # (..., d_out)
    # --8<-- [end:update]

    def symbols(self) -> dict:
        return {**super().symbols(), "C": self.left(), "R": self.right(), "C1": self.C1, "C2": self.C2,
                "B": self.B, "A": self.A, "D": self.D, "r": self.r, "alpha": self.alpha, "scaling": self.scaling,
                "factor": self.factor, "decompose_both": self.decompose_both, "zero_block": self.zero_block,
                "u_p": self.u_p, "u_q": self.u_q, "v_p": self.v_p, "v_q": self.v_q}
