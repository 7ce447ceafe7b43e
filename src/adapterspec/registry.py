"""Finds the methods: every module in `adapterspec.methods` that defines one `Adapter` subclass."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from functools import lru_cache

import torch
from torch import nn

from adapterspec import methods
from adapterspec.adapter import Adapter


@lru_cache(maxsize=None)
def _registry() -> dict[str, type[Adapter]]:
    found: dict[str, type[Adapter]] = {}
    for info in sorted(pkgutil.iter_modules(methods.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{methods.__name__}.{info.name}")
        classes = [
            obj for obj in vars(module).values()
            if inspect.isclass(obj) and issubclass(obj, Adapter) and obj.__module__ == module.__name__
        ]
        if len(classes) != 1:
            names = ", ".join(c.__name__ for c in classes) or "none"
            raise ImportError(f"{module.__file__}: a method file defines exactly one Adapter subclass (found {names})")
        cls = classes[0]
        slug = cls.__dict__.get("slug") or info.name.replace("_", "-")
        cls.slug = slug
        found[slug] = cls
    return found


def available() -> list[str]:
    """The slugs of every method with a reference implementation, sorted."""
    return sorted(_registry())


def adapter_class(slug: str) -> type[Adapter]:
    """The `Adapter` subclass implementing ``slug``."""
    try:
        return _registry()[slug]
    except KeyError:
        raise KeyError(f"no method {slug!r}; available: {', '.join(available())}") from None


def hyperparameters(slug: str) -> dict[str, object]:
    """The hyperparameters ``create`` accepts for ``slug``, with their defaults."""
    return dict(_defaults(adapter_class(slug)))


@lru_cache(maxsize=None)
def _defaults(cls: type[Adapter]) -> dict[str, object]:
    # a separate function because create()'s `**hyperparameters` argument shadows hyperparameters() there
    sig = inspect.signature(cls.__init__)
    return {n: p.default for n, p in list(sig.parameters.items())[2:]}  # after self, base


def create(slug: str, base_linear: nn.Module, **hyperparameters: object) -> Adapter:
    """Wrap ``base_linear`` in the adapter for method ``slug`` (an ``nn.Linear`` for most methods; the method's
    ``base_type`` says what it wraps).

    Example:
        >>> import torch, adapterspec
        >>> layer = torch.nn.Linear(16, 32)
        >>> lora = adapterspec.create("lora", layer, r=4, alpha=8)
        >>> lora.num_trainable()
        192
    """
    cls = adapter_class(slug)
    valid = list(_defaults(cls))
    unknown = sorted(set(hyperparameters) - set(valid))
    if unknown:
        raise TypeError(f"{slug}: unknown hyperparameter(s) {', '.join(unknown)}; valid: {', '.join(valid) or 'none'}")
    return cls(base_linear, **hyperparameters)


@torch.no_grad()
def randomize_(module: Adapter, generator: torch.Generator | None = None, scale: float = 0.5) -> Adapter:
    """Move every trainable tensor away from its init, in place: ``p ← p + scale · max(rms(p), 0.1) · ε``.

    Verification runs on such a state, so that an update that is zero (or the identity) at init cannot hide an
    error: after this, ``ΔW ≠ 0`` for every method. Returns ``module``.
    """
    for p in module.trainable_parameters().values():
        rms = float(p.pow(2).mean().sqrt()) if p.numel() else 0.0
        noise = torch.randn(p.shape, generator=generator, dtype=p.dtype, device="cpu").to(p.device)
        p.add_(scale * max(rms, 0.1) * noise)
    return module
