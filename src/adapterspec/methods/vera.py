r"""VeRA — Vector-based Random Matrix Adaptation (Kopiczko et al., arXiv:2310.11454)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from adapterspec.adapter import Adapter


class VeRA(Adapter):
    r"""A frozen random low-rank pair, re-weighted per layer by two trainable scaling vectors.

    $$W' = W_0 + \Lambda_b B \Lambda_d A,\qquad \Lambda_b = \operatorname{diag}(b),\ b \in \mathbb{R}^{d_{out}},
      \quad \Lambda_d = \operatorname{diag}(d),\ d \in \mathbb{R}^{r}$$

    $B \in \mathbb{R}^{d_{out}\times r}$ and $A \in \mathbb{R}^{r\times d_{in}}$ are random and frozen (buffers, never
    trained); only $b$ and $d$ train, ``d_out + r`` numbers per layer. In the paper (Eq. 2, $W_0 \in \mathbb{R}^{m\times
    n}$, $h = W_0 x$) one pair $(A, B)$ is shared by *every* adapted layer of the model, so a layer's own state is just
    $(b, d)$ and the pair can be regenerated from a seed. This module holds its own copy of the pair, drawn from a
    ``torch.Generator`` seeded by ``seed`` (Kaiming-uniform as implemented in PyTorch, ``A`` first, then ``B``, in
    float32): for a single adapted layer that is exactly the pair peft draws with ``projection_prng_key=seed``.
    Layers that should share the pair must be given the same tensors (as `adapterspec.interop.peft` does when it
    copies peft's shared, sliced pair). $b = 0$ at init, so $W' = W_0$; $d$ starts at the constant ``d_initial``.

    Args:
        base: the frozen layer.
        r: the inner dimension of the random pair. It only costs ``r`` trainable numbers per layer, so it is set
            far above LoRA ranks (256 or 1024 in the paper) and may exceed ``d_in``/``d_out``.
        d_initial: the constant every entry of $d$ starts at (0.1 in the paper's GLUE runs and ablations, Table 8;
            Figure 1 draws 1). Must be non-zero: with $b = 0$ and $d = 0$ both gradients vanish and training cannot start.
        seed: seed of the generator that draws $A$ and $B$.
    """

    capacity = "r"  # inner dimension of the frozen pair: d_out + r trainable

    def __init__(self, base: nn.Linear, r: int = 256, d_initial: float = 0.1, seed: int = 0) -> None:
        super().__init__(base)
        if r < 1:
            raise ValueError(f"r must be a positive integer, got {r}")
        if d_initial == 0:
            raise ValueError("d_initial must be non-zero: with b = 0 and d = 0 at init, neither b nor d gets a "
                             "gradient (try the paper's 0.1)")
        self.r, self.d_initial, self.seed = r, d_initial, seed
        self.register_buffer("A", torch.empty(r, self.d_in, **self.factory))  # (r, d_in), frozen random
        self.register_buffer("B", torch.empty(self.d_out, r, **self.factory))  # (d_out, r), frozen random
        self.b = nn.Parameter(torch.empty(self.d_out, **self.factory))  # (d_out,)
        self.d = nn.Parameter(torch.empty(r, **self.factory))  # (r,)
        self.reset_parameters()

    # --8<-- [start:init]
    @torch.no_grad()
    def reset_parameters(self) -> None:
        # Frozen pair: Kaiming-uniform (fan_in, gain √2, so bound √(6/fan_in)),
        # from a generator seeded by `seed`.
        g = torch.Generator().manual_seed(self.seed)
        # (r, d_in), fan_in = d_in
        A = nn.init.kaiming_uniform_(torch.empty(self.r, self.d_in), generator=g)
        # (d_out, r), fan_in = r
        B = nn.init.kaiming_uniform_(torch.empty(self.d_out, self.r), generator=g)
        self.A.copy_(A)
        self.B.copy_(B)
        # b = 0 ⇒ ΔW = 0 at init; d = d_initial ≠ 0 so that
        # ∂L/∂b = (∂L/∂ΔW-row) · B Λ_d A is not zero.
        self.b.zero_()  # (d_out,)
        self.d.fill_(self.d_initial)  # (r,)
    # --8<-- [end:init]

    # --8<-- [start:update]
    def adapted_weight(self, W0: Tensor) -> Tensor:
        # (d_out, d_in) = Λ_b B Λ_d A
        return W0 + (self.b[:, None] * self.B) @ (self.d[:, None] * self.A)

    def forward(self, x: Tensor) -> Tensor:
        if self.merged:
            return self.base(x)
        # Same value as adapted_weight, without forming the d_out × d_in matrix: x ↦ b ⊙ B(d ⊙ Ax).
        h = self.d * (x @ self.A.T)  # (..., r)
        return self.base(x) + self.b * (h @ self.B.T)  # (..., d_out)
    # --8<-- [end:update]

    def symbols(self) -> dict:
        return {**super().symbols(), "A": self.A, "B": self.B, "b": self.b, "d": self.d, "r": self.r,
                "d_initial": self.d_initial, "seed": self.seed}
