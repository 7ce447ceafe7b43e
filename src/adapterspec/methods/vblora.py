r"""VB-LoRA — Extreme Parameter Efficient Fine-Tuning with Vector Banks (Li et al., arXiv:2405.15179)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from adapterspec.adapter import Adapter


class VBLoRA(Adapter):
    r"""LoRA whose factors are tiled from sub-vectors, each a sparse (top-k) convex mix of vectors from a bank.

    $$W' = W_0 + B A,\qquad B \in \mathbb{R}^{d_{out}\times r},\ A \in \mathbb{R}^{r\times d_{in}}$$

    $$A_{i,:} = \big[u^A_{i,1}, \dots, u^A_{i,d_{in}/b}\big],\qquad
      B_{:,i} = \big[u^B_{1,i}; \dots; u^B_{d_{out}/b,i}\big],\qquad
      u = \sum_{s=1}^{h} \operatorname{softmax}\!\big(\operatorname{TopK}(\sigma, k)\big)_s\, \alpha_s$$

    Every row of $A$ and every column of $B$ (the rank-one component vectors of $BA$, Eq. 3.1) is cut into contiguous
    sub-vectors of length $b$ (Eq. 3.2); sub-vector $j$ fills positions $jb, \dots, (j+1)b - 1$. Each sub-vector has
    its own logits $\sigma \in \mathbb{R}^h$ and is the softmax-weighted sum of the $k$ bank vectors $\alpha_s \in
    \mathbb{R}^b$ with the largest logits (Eq. 3.3; ``TopK`` sets the other logits to $-\infty$). There is no scale
    factor and no zero factor: the bank is small and random, so $W' \ne W_0$ at init (not the identity).

    In the paper (and peft) one bank is shared by every adapted layer of the model, and only the logits belong to a
    layer. This module adapts one layer, so it holds a bank of its own: its trainable count
    $hb + h\,r\,(d_{in} + d_{out})/b$ is the bank plus this layer's logits; a model pays $hb$ once plus
    $h\,r\,(d_{in}+d_{out})/b$ per layer. Logits are laid out as in peft: ``logits_A`` ``(r, d_in/b, h)``,
    ``logits_B`` ``(d_out/b, r, h)``.

    Args:
        base: the frozen layer.
        r: rank of the update $BA$.
        h: number of vectors in the bank (peft's ``num_vectors``).
        b: sub-vector length (peft's ``vector_length``); must divide ``d_in`` and ``d_out``. By default 256 (the
            paper's and peft's value), or, on a layer 256 does not divide, the largest common divisor of ``d_in`` and
            ``d_out`` below 256 (peft refuses such a layer and asks for a ``vector_length`` that divides it).
        k: number of bank vectors mixed into each sub-vector (peft's ``topk``).
        init_bank_bound: the bank is drawn from $U(-\text{bound}, \text{bound})$.
        init_logits_std: the logits are drawn from $N(0, \text{std}^2)$.
    """

    capacity = "h"  # the bank dominates one layer's count (h·b against h·r·(d_in + d_out)/b of logits)

    def __init__(self, base: nn.Linear, r: int = 4, h: int = 256, b: int | None = None, k: int = 2,
                 init_bank_bound: float = 0.02, init_logits_std: float = 0.1) -> None:
        super().__init__(base)
        if b is None:  # 256, else the largest common divisor of d_in and d_out below it
            g = math.gcd(self.d_in, self.d_out)
            b = max(v for v in range(1, min(g, 256) + 1) if g % v == 0)
        if r < 1:
            raise ValueError(f"r must be a positive integer, got {r}")
        if b < 1 or self.d_in % b or self.d_out % b:
            raise ValueError(f"the sub-vector length b={b} must divide d_in={self.d_in} and d_out={self.d_out}")
        if not 1 <= k <= h:
            raise ValueError(f"k={k} bank vectors per sub-vector needs 1 <= k <= h (bank size h={h})")
        if init_bank_bound <= 0 or init_logits_std < 0:
            raise ValueError("init_bank_bound must be > 0 (an all-zero bank gets no gradient) and init_logits_std >= 0")
        self.r, self.h, self.b, self.k = r, h, b, k
        self.init_bank_bound, self.init_logits_std = init_bank_bound, init_logits_std
        self.vector_bank = nn.Parameter(torch.empty(h, b, **self.factory))  # (h, b): α_1 … α_h
        self.logits_A = nn.Parameter(torch.empty(r, self.d_in // b, h, **self.factory))  # (r, d_in/b, h)
        self.logits_B = nn.Parameter(torch.empty(self.d_out // b, r, h, **self.factory))  # (d_out/b, r, h)
        self.reset_parameters()

    # --8<-- [start:init]
    def reset_parameters(self) -> None:
        # A small random bank (not zero: a zero bank would leave the logits without gradient) and
        # near-uniform logits. Both factors are non-zero, so W' = W0 + BA is NOT W0 at init; BA is
        # small (|entries| <= r·bound²).
        nn.init.uniform_(self.vector_bank, -self.init_bank_bound, self.init_bank_bound)
        nn.init.normal_(self.logits_A, 0.0, self.init_logits_std)
        nn.init.normal_(self.logits_B, 0.0, self.init_logits_std)
    # --8<-- [end:init]

    # --8<-- [start:update]
    def mix(self, logits: Tensor) -> Tensor:
        """The top-k admixture (Eq. 3.3): ``logits (..., h)`` → sub-vectors ``(..., b)``."""
        top, idx = logits.topk(self.k, dim=-1)  # (..., k) the k largest logits, their bank indices
        # (..., k) = softmax over h logits with all but the top k at -inf
        w = torch.softmax(top, dim=-1)
        return (w.unsqueeze(-1) * self.vector_bank[idx]).sum(-2)  # (..., b)

    def factors(self) -> tuple[Tensor, Tensor]:
        """``A (r, d_in)`` and ``B (d_out, r)``, tiled from the mixed sub-vectors."""
        # (r, d_in/b, b) → (r, d_in): row i = [u_i1 … ]
        A = self.mix(self.logits_A).reshape(self.r, self.d_in)
        # (d_out/b, b, r) → (d_out, r)
        B = self.mix(self.logits_B).transpose(1, 2).reshape(self.d_out, self.r)
        return A, B

    def adapted_weight(self, W0: Tensor) -> Tensor:
        A, B = self.factors()
        return W0 + B @ A  # (d_out, d_in)

    def forward(self, x: Tensor) -> Tensor:
        if self.merged:
            return self.base(x)
        A, B = self.factors()  # never forms the d_out × d_in matrix BA
        return self.base(x) + (x @ A.T) @ B.T  # (..., d_out)
    # --8<-- [end:update]

    def symbols(self) -> dict:
        A, B = self.factors()
        return {**super().symbols(), "vector_bank": self.vector_bank, "logits_A": self.logits_A,
                "logits_B": self.logits_B, "A": A, "B": B, "r": self.r, "h": self.h, "b": self.b, "k": self.k}
