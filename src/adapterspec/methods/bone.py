r"""Bone — Block Affine Transformation (Kang, arXiv:2409.15371 v1–v3; superseded by MiSS)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from adapterspec.adapter import Adapter


class Bone(Adapter):
    r"""Every $r\times r$ block of the weight is moved by an affine map of itself, with one matrix per block-row.

    $$W'_{ab} = W_{0,ab} + W_{0,ab}\, D_a + D_a = W_{0,ab}\,(I_r + D_a) + D_a,\qquad D_a \in \mathbb{R}^{r\times r},\
      a = 1,\dots,d_{out}/r,\ b = 1,\dots,d_{in}/r$$

    $W_{0,ab}$ is the block of output rows $(a-1)r+1 \dots ar$ and input columns $(b-1)r+1 \dots br$ of the
    ``(d_out, d_in)`` weight (counting from 1). One $D_a$ serves all $d_{in}/r$ blocks of output block-row $a$. Read
    per output group $a$: the $r$ neurons of the group see their input re-mixed chunk by chunk by the same
    $I_r + D_a$ (a block-diagonal, unconstrained input-side transform), plus the shift $D_a$ repeated in every chunk.
    The multiplicative term is what the paper's early versions call the "Weight Guide" (the update is steered by
    $W_0$); the shift alone, with $D$ reshaped to ``(d_out, r)``, is exactly the later MiSS update. $D = 0$ at init, so
    $W' = W_0$; $\Delta W$ is not rank-limited. The paper's v4–v5 renamed this rule "Bat" (and peft selects it with
    ``init_weights="bat"``).

    The stacked $D$ ``(d_out/r, r, r)`` is the layout of peft's ``miss_block`` in ``"bat"`` mode.

    Args:
        base: the frozen layer.
        r: block size; must divide both ``d_in`` and ``d_out``.
    """

    capacity = "r"  # block size: d_out * r trainable

    def __init__(self, base: nn.Linear, r: int = 64) -> None:
        super().__init__(base)
        if r < 1 or self.d_in % r or self.d_out % r:
            raise ValueError(f"the block size r={r} must divide d_in={self.d_in} and d_out={self.d_out} (the weight is "
                             "cut into r x r blocks)")
        self.r = r
        self.D = nn.Parameter(torch.empty(self.d_out // r, r, r, **self.factory))  # (d_out/r, r, r): D_a per block-row
        self.reset_parameters()

    # --8<-- [start:init]
    def reset_parameters(self) -> None:
        nn.init.zeros_(self.D)  # D = 0  ⇒  every block W_ab ↦ W_ab: W' = W0
    # --8<-- [end:init]

    # --8<-- [start:update]
    def adapted_weight(self, W0: Tensor) -> Tensor:
        r, n_out, n_in = self.r, self.d_out // self.r, self.d_in // self.r
        # (d_out/r, d_in/r, r, r): blocks[a, b] = W0_ab
        blocks = W0.reshape(n_out, r, n_in, r).transpose(1, 2)
        D = self.D.unsqueeze(1)  # (d_out/r, 1, r, r): D_a shared along b
        new = blocks + blocks @ D + D  # (d_out/r, d_in/r, r, r): W_ab (I + D_a) + D_a
        return new.transpose(1, 2).reshape(self.d_out, self.d_in)  # (d_out, d_in)
    # --8<-- [end:update]

    def symbols(self) -> dict:
        return {**super().symbols(), "D": self.D, "r": self.r}
