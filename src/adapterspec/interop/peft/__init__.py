"""From a peft tuner layer to the adapterspec module that computes the same thing.

    >>> config = peft.LoraConfig(r=8, target_modules=["q_proj"])
    >>> model = peft.get_peft_model(model, config)
    >>> layer = model.base_model.model.layers[0].self_attn.q_proj
    >>> ours = from_peft(layer)  # an adapterspec.methods.lora.LoRA

Each method peft implements has a converter module here, named after the method (``lora.py``, ``oft.py``, ...),
found automatically like the methods themselves. A converter module defines:

* ``LAYER``: the qualified name of the peft layer class it converts, e.g. ``"peft.tuners.lora.layer.Linear"``;
* ``convert(layer, base, name)``: our module for adapter ``name`` of ``layer``, wrapping ``base`` (a copy of the
  layer's frozen base module), with peft's tensors copied in;
* ``CONFIG``: the name of peft's config class, and ``CASES``, its keyword arguments for each case of the equality
  matrix (``SHAPES`` optionally overrides the ``(d_in, d_out)`` pairs) — used by `adapterspec.interop.equality`; a
  converter whose config needs more than keyword arguments defines ``peft_config(**kwargs)`` instead (SHiRA's mask);
* optionally ``forward_kwargs(ours, x)``, keyword arguments both forwards need besides ``x`` (Poly's ``task_ids``),
  and ``MERGES = False`` where peft's layer has no ``merge`` (the matrix then skips the merged comparison);
* optionally ``BENCH``, the config ``scripts/bench_peft.py`` times (default: the first case), and
  ``matches(layer, name)``, when several methods share one peft layer class (LoRA and DoRA), and
  ``EXPLICIT = True`` for a method only chosen by name (PiSSA is LoRA after an SVD init: ``method="pissa"``).

peft is only imported by the functions that need it; importing this module does not import peft.
"""

from __future__ import annotations

import copy
import importlib
import pkgutil
from functools import lru_cache
from types import ModuleType

from torch import nn

from adapterspec.adapter import Adapter

__all__ = ["PeftConversionError", "converters", "from_peft", "peft_config", "supported_layers"]


class PeftConversionError(ValueError):
    """The layer cannot be converted (unsupported type or option, merged, several active adapters)."""


@lru_cache(maxsize=None)
def converters() -> dict[str, ModuleType]:
    """Converter modules by method slug."""
    found = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            module = importlib.import_module(f"{__name__}.{info.name}")
            found[info.name.replace("_", "-")] = module
    return found


def supported_layers() -> dict[str, str]:
    """peft layer class → the method slug(s) it converts to."""
    layers: dict[str, list[str]] = {}
    for slug, conv in converters().items():
        layers.setdefault(conv.LAYER, []).append(slug)
    return {layer: ", ".join(slugs) for layer, slugs in sorted(layers.items())}


def peft_config(slug: str, **kwargs):
    """peft's config for method ``slug``, e.g. ``peft_config("vera", r=8, target_modules=["q_proj"])``."""
    conv = converters()[slug]
    if hasattr(conv, "peft_config"):
        return conv.peft_config(**kwargs)
    import peft

    return getattr(peft, conv.CONFIG)(**kwargs)


def _qualnames(layer: nn.Module) -> list[str]:
    return [f"{c.__module__}.{c.__qualname__}" for c in type(layer).__mro__]


def from_peft(layer: nn.Module, adapter_name: str | None = None, method: str | None = None) -> Adapter:
    """The adapterspec module equal to ``layer``, a peft tuner layer, for its active adapter.

    The result wraps a *copy* of the frozen base layer, so the peft model is left untouched, and holds copies of the
    adapter's tensors. peft's dropout options are training-time noise and are not carried over.

    Args:
        layer: a peft tuner layer, e.g. ``model.base_model.model.layers[0].self_attn.q_proj``.
        adapter_name: which adapter to convert; defaults to the layer's single active adapter.
        method: the catalog slug to convert to, when the layer alone does not say (``"pissa"``: a LoRA layer
            initialised by SVD).

    Raises:
        PeftConversionError: the layer type or one of its options is not supported, the adapter is merged into the
            base weight, or ``adapter_name`` is ambiguous or unknown.
    """
    names = _qualnames(layer)
    candidates = {slug: c for slug, c in converters().items() if c.LAYER in names}
    if not candidates:
        supported = "; ".join(f"{cls} ({slugs})" for cls, slugs in supported_layers().items())
        raise PeftConversionError(f"{names[0]} is not a peft layer adapterspec can convert. Supported: {supported}")
    if adapter_name is None:
        active = list(getattr(layer, "active_adapters", []))
        if len(active) != 1:
            raise PeftConversionError(f"{names[0]} has {len(active)} active adapters ({', '.join(active) or 'none'});"
                                      " pass adapter_name=")
        adapter_name = active[0]
    known = {n for attr in getattr(layer, "adapter_layer_names", ()) for n in getattr(layer, attr, {})}
    if adapter_name not in known:
        raise PeftConversionError(f"{names[0]} has no adapter {adapter_name!r}; it has: {', '.join(sorted(known))}")
    if getattr(layer, "fan_in_fan_out", False):
        raise PeftConversionError(f"{names[0]} wraps a Conv1D (fan_in_fan_out=True); adapterspec's modules wrap "
                                  "nn.Linear, whose weight is the transpose")
    if getattr(layer, "merged_adapters", None):
        raise PeftConversionError(f"{names[0]} has merged adapters ({', '.join(layer.merged_adapters)}); call "
                                  "layer.unmerge() first, so that the frozen base weight is the pretrained one")
    fitting = {s: c for s, c in candidates.items() if getattr(c, "matches", lambda *_: True)(layer, adapter_name)}
    if method is not None:
        if method not in fitting:
            raise PeftConversionError(f"method={method!r} does not convert adapter {adapter_name!r} of {names[0]}; "
                                      f"candidates: {', '.join(fitting) or 'none'}")
        fitting = {method: fitting[method]}
    else:
        fitting = {s: c for s, c in fitting.items() if not getattr(c, "EXPLICIT", False)}
        if len(fitting) != 1:
            raise PeftConversionError(f"{names[0]}: cannot tell which method adapter {adapter_name!r} is "
                                      f"(candidates: {', '.join(fitting) or 'none'}); pass method=")
    (conv,) = fitting.values()
    base = copy.deepcopy(layer.get_base_layer())
    base.requires_grad_(False)
    return conv.convert(layer, base, adapter_name)
