"""The one base class every method builds on.

An `Adapter` wraps one frozen ``nn.Linear`` (``base``) and adds the method's trainable tensors. A method writes
two things: its init (`Adapter.reset_parameters`, where the method's *init hypothesis* lives) and its update,
either `Adapter.adapted_weight` (weight-space methods: the forward, merge and delta follow from it) or ``forward``
(activation-space methods, which set ``mergeable = False``). Merging, unmerging and listing or counting the trainable
parameters are written once, here.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class Adapter(nn.Module):
    """A frozen ``nn.Linear`` plus a method's trainable update.

    Class attributes a method sets:

    * ``slug``: the catalog id (defaults to the module file name, ``_`` read as ``-``).
    * ``mergeable``: whether the update can be folded into ``base.weight`` (``W0 → W'``) with no change in output.
    * ``base_type``: the layer it wraps, ``nn.Linear`` unless the method tunes another kind of layer.
    * ``capacity``: the integer hyperparameter that sets how many parameters the method trains (``"r"`` for LoRA),
      or ``None`` when the count is fixed by the layer ((IA)³). The arena turns it to meet a parameter budget.

    Args:
        base: the pretrained layer. It is frozen (``requires_grad=False``) and used in place, as peft does; methods
            that re-split the pretrained weight (PiSSA) rewrite ``base.weight`` at init.
    """

    slug: ClassVar[str] = ""
    mergeable: ClassVar[bool] = True
    base_type: ClassVar[type[nn.Module]] = nn.Linear  # LN tuning wraps an nn.LayerNorm instead
    capacity: ClassVar[str | None] = None  # the hyperparameter that scales the trainable-parameter count

    def __init__(self, base: nn.Linear) -> None:
        super().__init__()
        if not isinstance(base, self.base_type):
            raise TypeError(f"{type(self).__name__} wraps an nn.{self.base_type.__name__}, got {type(base).__name__}")
        self.base = base
        self.base.requires_grad_(False)
        self.merged = False
        self._W_unmerged: Tensor | None = None  # the frozen weight and bias, kept while merged
        self._b_unmerged: Tensor | None = None

    # -- shape helpers -------------------------------------------------------------------------------------------
    @property
    def d_in(self) -> int:
        return self.base.in_features

    @property
    def d_out(self) -> int:
        return self.base.out_features

    @classmethod
    def example_base(cls, d_in: int, d_out: int, generator: torch.Generator, dtype: torch.dtype) -> nn.Module:
        """A pretrained-looking layer of this method's ``base_type`` for tests and verification (random weight and
        bias, ``W0 ~ N(0, 1/d_in)``, ``b ~ N(0, 0.01)``)."""
        base = nn.Linear(d_in, d_out, bias=True, dtype=dtype)
        with torch.no_grad():
            base.weight.copy_(torch.randn(d_out, d_in, generator=generator, dtype=dtype) / d_in**0.5)
            base.bias.copy_(torch.randn(d_out, generator=generator, dtype=dtype) * 0.1)
        return base

    @property
    def factory(self) -> dict[str, Any]:
        """``dtype``/``device`` keyword arguments matching the base weight, for creating adapter tensors."""
        return {"dtype": self.base.weight.dtype, "device": self.base.weight.device}

    # -- what a method implements ---------------------------------------------------------------------------------
    def reset_parameters(self) -> None:
        """Put the adapter in its initial state (the method's init hypothesis)."""
        raise NotImplementedError

    def adapted_weight(self, W0: Tensor) -> Tensor:
        """The effective weight ``W'`` the adapted layer applies, given the frozen ``W0 (d_out, d_in)``."""
        raise NotImplementedError(f"{type(self).__name__} is not a weight-space method")

    def adapted_bias(self, b0: Tensor | None) -> Tensor | None:
        """The effective bias; unchanged unless the method scales outputs (IA3 on attention layers)."""
        return b0

    def symbols(self) -> dict[str, Any]:
        """The paper's symbols, bound to this module's tensors and hyperparameters (used to run pseudocode)."""
        return {"W0": self.base.weight, "bias": self.base.bias, "d_in": self.d_in, "d_out": self.d_out}

    def procedure_cases(self, generator: torch.Generator) -> list[tuple[str, dict[str, Any], Any]]:
        """Claims about the method's *training procedure* (a schedule, a score, a regulariser) that the pseudocode
        must reproduce, as ``(function, kwargs, expected)``: the pseudocode's ``function``, called with ``kwargs``
        (its other parameters bound to `symbols`, as ``forward``'s are), must return ``expected``, which this module
        computed. The verifier calls it on a randomized module, with a seeded ``generator`` for synthetic inputs
        (gradients, steps). Default: none; most methods are fully described by their init and update."""
        return []

    # -- behaviour written once -------------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        if self.merged:
            return self.base(x)
        return F.linear(x, self.adapted_weight(self.base.weight), self.adapted_bias(self.base.bias))

    def delta_weight(self) -> Tensor:
        """``ΔW = W' − W0``, the change the adapter makes to the frozen weight, ``(d_out, d_in)``."""
        self._require_mergeable()
        W0 = self._W_unmerged if self.merged else self.base.weight
        return self.adapted_weight(W0) - W0

    def merged_weight(self) -> Tensor:
        """``W'``, the weight a merged layer would hold, ``(d_out, d_in)``."""
        self._require_mergeable()
        return self.base.weight if self.merged else self.adapted_weight(self.base.weight)

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into ``base.weight``; the output is unchanged and the adapter costs nothing at inference.

        The frozen weight is kept aside so that `unmerge` restores it bit for bit (not by subtracting ``ΔW``,
        which would accumulate rounding error and is impossible for non-additive updates such as DoRA's).
        """
        self._require_mergeable()
        if self.merged:
            return
        W_merged = self.adapted_weight(self.base.weight)
        b_merged = self.adapted_bias(self.base.bias)
        self._W_unmerged = self.base.weight.detach().clone()
        self._b_unmerged = None if self.base.bias is None else self.base.bias.detach().clone()
        self.base.weight.copy_(W_merged)
        if self.base.bias is not None:
            self.base.bias.copy_(b_merged)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo `merge`, restoring the frozen weight exactly."""
        if not self.merged:
            return
        assert self._W_unmerged is not None
        self.base.weight.copy_(self._W_unmerged)
        if self.base.bias is not None:
            self.base.bias.copy_(self._b_unmerged)
        self._W_unmerged = self._b_unmerged = None
        self.merged = False

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        """The tensors an optimizer should update: the adapter's own parameters, never the base layer's."""
        return {n: p for n, p in self.named_parameters() if p.requires_grad}

    def num_trainable(self) -> int:
        """Number of trainable scalars."""
        return sum(p.numel() for p in self.trainable_parameters().values())

    def _require_mergeable(self) -> None:
        if not self.mergeable:
            raise TypeError(f"{type(self).__name__} acts on activations and cannot be merged into the weight")

    def extra_repr(self) -> str:
        return f"d_in={self.d_in}, d_out={self.d_out}, trainable={self.num_trainable()}"
