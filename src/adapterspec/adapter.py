"""The one base class every method builds on.

An `Adapter` wraps one frozen module (``base``: an ``nn.Linear`` for most methods; a LayerNorm, an embedding, an
attention block or a whole `adapterspec.tiny.TinyTransformer` for others) and adds the method's trainable tensors. A
method writes two things: its init (`Adapter.reset_parameters`, where the method's *init hypothesis* lives) and its
update, either `Adapter.adapted_weight` (weight-space methods on one weight: the forward, merge and ``ΔW`` follow from
it), `Adapter.adapted_weights` (weight-space methods that change several weights, such as Q, K, V and O of an attention
block) or ``forward`` (activation-space methods, which set ``mergeable = False``). Merging, unmerging and listing or
counting the trainable parameters are written once, here.

What a method wraps, and what it is verified on, are its own to say, with no special case in the verifier:
``base_type`` (the class it wraps), `Adapter.example_base` (a pretrained-looking base built from the entry's
``shapes`` pair ``(d_in, d_out)``, whose meaning ``shape_names`` gives) and `Adapter.example_inputs` (the inputs the
verifier feeds, one per row; the pseudocode's ``forward(x, ...)`` receives one of them).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class Adapter(nn.Module):
    """A frozen base module plus a method's trainable update.

    Class attributes a method sets:

    * ``slug``: the catalog id (defaults to the module file name, ``_`` read as ``-``).
    * ``mergeable``: whether the update can be folded into the base's weights (``W0 → W'``) with no change in output.
    * ``base_type``: the module it wraps, ``nn.Linear`` unless the method tunes another kind (``nn.LayerNorm``,
      ``nn.Embedding``, `adapterspec.tiny.Attention`, `adapterspec.tiny.TinyTransformer`). A method on another
      kind also defines ``d_in``/``d_out`` and overrides `example_base`, usually `example_inputs`, and ``forward``
      or `adapted_weights`.
    * ``shape_names``: what the two numbers of an entry's ``shapes`` pair mean for this base, in the order
      `example_base` takes them (``("d_model", "n_heads")`` for an attention block); the verifier labels cases with
      them, and property formulas may use them beside ``d_in`` and ``d_out``.
    * ``capacity``: the integer hyperparameter that sets how many parameters the method trains (``"r"`` for LoRA),
      or ``None`` when the count is fixed by the layer ((IA)³). The arena turns it to meet a parameter budget.

    Args:
        base: the pretrained module. It is frozen (``requires_grad=False``) and used in place, as peft does; methods
            that re-split the pretrained weight (PiSSA) rewrite ``base.weight`` at init.
    """

    slug: ClassVar[str] = ""
    mergeable: ClassVar[bool] = True
    base_type: ClassVar[type[nn.Module]] = nn.Linear  # LN tuning wraps an nn.LayerNorm instead
    shape_names: ClassVar[tuple[str, str]] = ("d_in", "d_out")
    capacity: ClassVar[str | None] = None  # the hyperparameter that scales the trainable-parameter count

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        if not isinstance(base, self.base_type):
            kind = self.base_type.__name__
            kind = f"nn.{kind}" if self.base_type.__module__.startswith("torch.nn") else kind
            raise TypeError(f"{type(self).__name__} wraps a {kind}, got {type(base).__name__}")
        self.base = base
        self.base.requires_grad_(False)
        self.merged = False
        self._unmerged: dict[str, Tensor] = {}  # while merged: each changed base tensor's frozen value, by path

    # -- shape helpers -------------------------------------------------------------------------------------------
    @property
    def d_in(self) -> int:
        return self.base.in_features

    @property
    def d_out(self) -> int:
        return self.base.out_features

    @classmethod
    def example_base(cls, d_in: int, d_out: int, generator: torch.Generator, dtype: torch.dtype) -> nn.Module:
        """A pretrained-looking module of this method's ``base_type`` for tests and verification, built from an entry's
        ``shapes`` pair. Here an ``nn.Linear(d_in, d_out)`` (random weight and bias, ``W0 ~ N(0, 1/d_in)``,
        ``b ~ N(0, 0.01)``); a method on another kind of module reads the pair its own way and names it in
        ``shape_names``: a LayerNorm of width ``d_in = d_out``, an attention block ``(d_model, n_heads)``
        (`adapterspec.tiny.example_attention`), a whole tiny transformer ``(d_model, n_heads)``
        (`adapterspec.tiny.example_model`), an embedding table ``(vocab_size, d_model)``."""
        base = nn.Linear(d_in, d_out, bias=True, dtype=dtype)
        with torch.no_grad():
            base.weight.copy_(torch.randn(d_out, d_in, generator=generator, dtype=dtype) / d_in**0.5)
            base.bias.copy_(torch.randn(d_out, generator=generator, dtype=dtype) * 0.1)
        return base

    @classmethod
    def example_inputs(cls, base: nn.Module, n: int, generator: torch.Generator, dtype: torch.dtype) -> Tensor:
        """``n`` verification inputs for ``base``, stacked along the first dimension: ``module(X)`` must give one
        output per row, and the pseudocode's ``forward(x, ...)`` receives one row ``X[i]`` at a time. Here
        ``randn(n, d_in)`` with ``d_in`` the width ``base.weight`` reads (``in_features`` of an ``nn.Linear``, the
        width of a LayerNorm); ``(n, T, d_model)`` suits an attention block, token ids ``(n, T)`` a transformer or an
        embedding."""
        return torch.randn(n, base.weight.shape[-1], generator=generator, dtype=dtype)

    @classmethod
    def sizes(cls, base: nn.Module) -> dict[str, int]:
        """Sizes of ``base`` beyond its ``shapes`` pair that property formulas may use (``n_layers`` and
        ``vocab_size`` of a transformer); none by default."""
        return {}

    @property
    def factory(self) -> dict[str, Any]:
        """``dtype``/``device`` keyword arguments matching the base's parameters, for creating adapter tensors."""
        p = next(self.base.parameters())
        return {"dtype": p.dtype, "device": p.device}

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

    def adapted_weights(self) -> dict[str, Tensor]:
        """Every base tensor the update changes, by its path in ``base`` (``"weight"``, ``"q_proj.weight"``), with its
        adapted value. Merging writes these, and the default ``forward`` of a base other than ``nn.Linear`` runs the
        base with them. By default ``{"weight": adapted_weight(W0), "bias": adapted_bias(b0)}``; a method whose
        update changes several weights (Q, K, V and O of an attention block) overrides this instead."""
        new = {"weight": self.adapted_weight(self.base.weight)}
        if getattr(self.base, "bias", None) is not None:
            new["bias"] = self.adapted_bias(self.base.bias)
        return new

    def symbols(self) -> dict[str, Any]:
        """The paper's symbols, bound to this module's tensors and hyperparameters (used to run pseudocode).

        By default ``W0`` and ``bias`` (where the base has a ``weight``), ``d_in`` and ``d_out``."""
        out: dict[str, Any] = {"d_in": self.d_in, "d_out": self.d_out}
        if isinstance(getattr(self.base, "weight", None), Tensor):
            out = {"W0": self.base.weight, "bias": getattr(self.base, "bias", None), **out}
        return out

    # -- behaviour written once -------------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        if self.merged:
            return self.base(x)
        if isinstance(self.base, nn.Linear):  # the same value as the general case, without its overhead
            return F.linear(x, self.adapted_weight(self.base.weight), self.adapted_bias(self.base.bias))
        return torch.func.functional_call(self.base, self.adapted_weights(), (x,))

    @classmethod
    def has_delta_weight(cls) -> bool:
        """Whether the update is one weight ``ΔW`` (a mergeable method that changes ``base.weight``, and perhaps
        ``base.bias``, only). The rank, Gram and row-norm checks and the page's figure of ``ΔW`` need one."""
        return cls.mergeable and cls.adapted_weights is Adapter.adapted_weights

    def original(self, path: str = "weight") -> Tensor:
        """The frozen pretrained tensor at ``path`` in ``base``, also while merged (when ``base`` holds ``W'``)."""
        return self._unmerged[path] if path in self._unmerged else self.base.get_parameter(path)

    def delta_weight(self) -> Tensor:
        """``ΔW = W' − W0``, the change the adapter makes to the frozen weight, ``(d_out, d_in)``."""
        self._require_delta_weight()
        W0 = self.original("weight")
        return self.adapted_weight(W0) - W0

    def merged_weight(self) -> Tensor:
        """``W'``, the weight a merged layer would hold, ``(d_out, d_in)``."""
        self._require_delta_weight()
        return self.base.weight if self.merged else self.adapted_weight(self.base.weight)

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into the base's weights (`adapted_weights`); the output is unchanged and the adapter costs
        nothing at inference.

        Each frozen tensor is kept aside so that `unmerge` restores it bit for bit (not by subtracting ``ΔW``,
        which would accumulate rounding error and is impossible for non-additive updates such as DoRA's).
        """
        self._require_mergeable()
        if self.merged:
            return
        new = self.adapted_weights()  # all computed from the frozen weights before any is overwritten
        for path, value in new.items():
            param = self.base.get_parameter(path)
            self._unmerged[path] = param.detach().clone()
            param.copy_(value)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo `merge`, restoring every frozen tensor exactly."""
        if not self.merged:
            return
        for path, value in self._unmerged.items():
            self.base.get_parameter(path).copy_(value)
        self._unmerged = {}
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

    def _require_delta_weight(self) -> None:
        self._require_mergeable()
        if not self.has_delta_weight():
            raise TypeError(f"{type(self).__name__} changes several weights (adapted_weights): there is no single ΔW; "
                            "use adapted_weights()")

    def extra_repr(self) -> str:
        return f"d_in={self.d_in}, d_out={self.d_out}, trainable={self.num_trainable()}"
