r"""PiSSA — Principal Singular values and Singular vectors Adaptation (Meng et al., arXiv:2404.02948)."""

from __future__ import annotations

import torch
from torch import nn

from adapterspec import ops
from adapterspec.methods.lora import LoRA


class PiSSA(LoRA):
    r"""LoRA's architecture, initialised on the principal singular subspace of the pretrained weight.

    With $W = U \operatorname{diag}(S) V^\top$ (singular values descending) and $s = \alpha / r$:

    $$B = U_{[:, :r]} \operatorname{diag}\big(\sqrt{S_{[:r]}/s}\big),\quad
      A = \operatorname{diag}\big(\sqrt{S_{[:r]}/s}\big) V^\top_{[:r, :]},\quad
      W^{res} = W - s\, B A$$

    $W^{res}$ (the minor singular components) is frozen in ``base.weight``; the forward is LoRA's,
    $W' = W^{res} + s\, B A$, which equals $W$ at init. With the default ``alpha = r`` (``s = 1``) this is the paper's
    split exactly; dividing $S$ by $s$ for other ``alpha`` keeps the init exact under LoRA's scaling (as peft does).

    Args:
        base: the pretrained layer; its weight is replaced by the residual $W^{res}$ at init.
        r: number of principal components trained.
        alpha: scale numerator; defaults to ``r``.
    """

    capacity = "r"

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float | None = None) -> None:
        if r > min(base.in_features, base.out_features):
            raise ValueError(f"r={r} exceeds the rank of a {base.out_features}×{base.in_features} weight")
        super().__init__(base, r=r, alpha=float(r) if alpha is None else alpha)

    # --8<-- [start:init]
    @torch.no_grad()
    def reset_parameters(self) -> None:
        # The pretrained weight is whatever the layer computes now
        # (W^res + sBA; on first call BA = 0).
        # A and B are still uninitialised on the first call
        first = not getattr(self, "_split_done", False)
        W = self.base.weight.clone() if first else self.base.weight + self.scaling * self.B @ self.A
        # canonical signs, so any correct caller gets the same factors
        U, S, Vh = ops.svd(W.double())
        sqrt_S = torch.sqrt(S[: self.r] / self.scaling)  # (r,)
        self.B.copy_(U[:, : self.r] * sqrt_S)  # (d_out, r) principal left singular vectors
        self.A.copy_(sqrt_S[:, None] * Vh[: self.r])  # (r, d_in) principal right singular vectors
        # W^res: the minor components, frozen
        self.base.weight.copy_(W - self.scaling * self.B @ self.A)
        self._split_done = True
    # --8<-- [end:init]

    def symbols(self) -> dict:
        return {**super().symbols(), "W_res": self.base.weight}
