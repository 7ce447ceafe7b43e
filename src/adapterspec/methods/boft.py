r"""BOFT — Orthogonal Butterfly (Liu et al., arXiv:2311.06243)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from adapterspec import ops
from adapterspec.adapter import Adapter


class BOFT(Adapter):
    r"""Every neuron is rotated by one shared orthogonal matrix, a product of $m$ sparse butterfly factors.

    $$W' = W_0 R^\top,\qquad R = B_m B_{m-1} \cdots B_1$$

    $$B_i = P_i^\top \operatorname{diag}(R_{i,1},\dots,R_{i,d/b})\, P_i,\qquad
      R_{i,k} = (I + Q_{i,k})(I - Q_{i,k})^{-1}$$

    The paper (Sec. 4) writes $z = (R W_0)^\top x$ for a $d \times n$ weight whose columns are neurons; with the
    ``(d_out, d_in)`` layout of ``nn.Linear`` that is $W' = W_0 R^\top$, a rotation of the *input* side: every
    neuron (a row of $W_0$) is mapped to $R w$, so $W'W'^\top = W_0 W_0^\top$. Factor $B_1$ is block-diagonal with
    $b \times b$ blocks (OFT's $R$); factor $B_{i+1}$ cuts the input into chunks of $b/2$ coordinates and puts chunk
    $j$ and chunk $j + 2^i$ (inside groups of $2^{i+1}$ chunks) into one $b \times b$ orthogonal block: the block
    butterfly of Eq. (2), whose permutation $P_i$ only reorders coordinates. Each output coordinate of the product
    of $m$ factors depends on $b\,2^{m-1}$ inputs, so $m = \log_2(d/b) + 1$ factors give a dense $R$.
    $Q = 0$ gives $R = I$, the identity at init.

    Args:
        base: the frozen layer.
        b: block size of every factor (the paper's BOFT($m$, $b$)); ``d_in`` must be divisible by $b\,2^{m-1}$,
            and $b$ must be even when $m > 1$ (a block joins two half-blocks).
        m: number of butterfly factors; ``m = 1`` is OFT with block size ``b``.
        scale: also learn peft's output scale ``boft_s`` (not in the paper): $W' = \operatorname{diag}(s)\,W_0
            R^\top$, $s = 1$ at init. It changes neuron norms (not the angles between neurons).
        full_skew: store a full $b \times b$ matrix $A$ per block and use $Q = (A - A^\top)/2$, as peft does
            ($b^2$ numbers per block instead of $b(b-1)/2$; the rest have no effect on the output).
    """

    capacity = "m"

    def __init__(
        self, base: nn.Linear, b: int = 8, m: int = 2, scale: bool = False, full_skew: bool = False
    ) -> None:
        super().__init__(base)
        if m < 1:
            raise ValueError(f"m={m}: the number of butterfly factors must be a positive integer")
        if b < 2 or (m > 1 and b % 2):
            raise ValueError(
                f"b={b}: the block size must be at least 2, and even when m > 1 (m={m}), because each "
                "block of a butterfly factor joins two half-blocks of b/2 coordinates"
            )
        span = b * 2 ** (m - 1)  # inputs that reach one output of the product
        if self.d_in % span:
            raise ValueError(
                f"d_in={self.d_in} must be divisible by b·2^(m-1) = {b}·{2 ** (m - 1)} = {span}; "
                "choose a smaller m or a b that divides d_in"
            )
        self.b, self.m, self.r, self.scale, self.full_skew = b, m, self.d_in // b, scale, full_skew
        free = b * b if full_skew else b * (b - 1) // 2
        self.q = nn.Parameter(torch.empty(m, self.r, free, **self.factory))  # (m, d_in/b, b(b-1)/2)
        if scale:
            self.s = nn.Parameter(torch.empty(self.d_out, **self.factory))  # (d_out,)
        self.reset_parameters()

    # --8<-- [start:init]
    def reset_parameters(self) -> None:
        nn.init.zeros_(self.q)  # Q = 0  ⇒  every block is I  ⇒  R = I  ⇒  W' = W0
        if self.scale:
            nn.init.ones_(self.s)

    # --8<-- [end:init]

    # --8<-- [start:update]
    def skew(self) -> Tensor:
        """The skew-symmetric ``Q`` of every block of every factor, ``(m, d_in/b, b, b)``."""
        if self.full_skew:
            A = self.q.unflatten(-1, (self.b, self.b))
            return (A - A.transpose(-1, -2)) / 2
        return ops.skew(self.q, self.b)

    def blocks(self) -> Tensor:
        """The orthogonal blocks ``R_{i,k}`` (Cayley), ``(m, d_in/b, b, b)``; factor ``i`` is
        ``blocks()[i]``."""
        return ops.cayley(self.skew())

    def _rotate(self, x: Tensor, i: int, blocks: Tensor) -> Tensor:
        """``x B_{i+1}`` for row vectors ``x (..., d_in)``, without forming the d × d factor.

        Gathering the coordinates of each block (the permutation ``P_i``) is a reshape: ``d_in``
        splits into
        groups of ``2^(i+1)`` chunks of ``b/2``; chunk ``j`` and chunk ``j + 2^i`` of a group form
        one block.
        """
        h, n = self.b // 2, 2**i
        if i == 0:  # plain block-diagonal factor (also for odd b when m = 1)
            xb = x.unflatten(-1, (self.r, self.b))  # (..., r, b)
        else:
            # (..., G, n, 2, h)
            xb = x.unflatten(-1, (self.d_in // (2 * n * h), 2, n, h)).transpose(-3, -2)
            # (..., r, b): block G·n + j holds chunks j and j + n of group G
            xb = xb.flatten(-2).flatten(-3, -2)
        yb = torch.einsum("...ki,kij->...kj", xb, blocks)  # (..., r, b): row vector times block
        if i == 0:
            return yb.flatten(-2)
        # (..., G, n, 2, h)
        yb = yb.unflatten(-2, (self.d_in // (2 * n * h), n)).unflatten(-1, (2, h))
        return yb.transpose(-3, -2).flatten(-4)  # (..., d_in)

    def rotation(self) -> Tensor:
        """``R = B_m ⋯ B_1 (d_in, d_in)``, orthogonal."""
        blocks = self.blocks()
        R = torch.eye(self.d_in, **self.factory)
        for i in reversed(range(self.m)):  # I · B_m ⋯ B_1, one factor at a time
            R = self._rotate(R, i, blocks[i])
        return R

    def adapted_weight(self, W0: Tensor) -> Tensor:
        W = W0 @ self.rotation().T  # (d_out, d_in): each neuron (row) w ↦ R w
        return self.s[:, None] * W if self.scale else W

    def forward(self, x: Tensor) -> Tensor:
        if self.merged:
            return self.base(x)
        # y = W0 Rᵀ x, i.e. for a row vector x: x R = x B_m ⋯ B_1, one sparse factor at a time.
        blocks = self.blocks()
        for i in reversed(range(self.m)):
            x = self._rotate(x, i, blocks[i])
        y = x @ self.base.weight.T  # (..., d_out)
        if self.scale:
            y = self.s * y
        return y if self.base.bias is None else y + self.base.bias

    # --8<-- [end:update]

    def symbols(self) -> dict:
        return {
            **super().symbols(),
            "q": self.q,
            "Q": self.skew(),
            "R": self.rotation(),
            "m": self.m,
            "b": self.b,
            "r": self.r,
            **({"s": self.s} if self.scale else {}),
        }
