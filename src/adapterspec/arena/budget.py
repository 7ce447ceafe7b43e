"""Matching a method to a parameter budget, with no knowledge of the method.

A method names the integer hyperparameter that scales what it trains (`Adapter.capacity`: ``"r"`` for LoRA, the
block size ``"b"`` for C3A, ``None`` for (IA)³). For each candidate value the method is *built* on the arena's layer
(values its constructor refuses are skipped) and its real `Adapter.num_trainable` counted; the value whose count is
closest to the budget (in ratio, so 2× over and 2× under are equally far) is chosen, and the real count reported.
Every other hyperparameter keeps its default: the defaults are the method as its authors (or peft) ship it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from adapterspec.registry import adapter_class, create


@dataclass(frozen=True)
class Choice:
    """What a method trains under one budget."""

    hyper: tuple[tuple[str, int], ...]  # the capacity hyperparameter and its value, or () when fixed
    params: int  # the real trainable count

    @property
    def kwargs(self) -> dict[str, int]:
        return dict(self.hyper)


def applicable(slug: str) -> str | None:
    """None if tier 1 can fit ``slug`` (it wraps an ``nn.Linear``), else why not."""
    cls = adapter_class(slug)
    if not issubclass(nn.Linear, cls.base_type):
        return f"wraps an nn.{cls.base_type.__name__}, not the nn.Linear tier 1 fits"
    return None


def candidates(d_in: int, d_out: int) -> list[int]:
    """Values tried for a capacity hyperparameter: 1…64, a geometric grid (ratio 2^(1/4)) up to d_in·d_out, and every
    divisor of d_in and d_out (block sizes)."""
    top = d_in * d_out
    values = set(range(1, 65))
    values |= {round(2 ** (k / 4)) for k in range(int(4 * math.log2(top)) + 1)}
    values |= {v for d in (d_in, d_out) for v in range(1, d + 1) if d % v == 0}
    return sorted(v for v in values if v <= top)


# A candidate whose frozen tensors (buffers: VeRA's random pair, RandLoRA's bases) exceed this many layers' worth of
# numbers is not used: in a model such tensors are shared by every layer, but a layer-sized run cannot pay for
# dozens of layers of them (VeRA at r = 10,000 would multiply 10,000-wide matrices at every step).
FROZEN_CAP = 4


def _count(slug: str, d_in: int, d_out: int, hyper: dict) -> tuple[int, int] | None:
    """(trainable count, frozen buffer count), or None when the constructor refuses ``hyper``."""
    try:
        with torch.random.fork_rng(devices=[]):
            module = create(slug, nn.Linear(d_in, d_out, bias=False), **hyper)
    except (ValueError, TypeError, RuntimeError, MemoryError):
        return None
    return module.num_trainable(), sum(b.numel() for b in module.buffers())


@lru_cache(maxsize=64)
def counts(slug: str, d_in: int, d_out: int) -> tuple[tuple[int, int], ...]:
    """``(value, trainable count)`` for every candidate value the method's constructor accepts."""
    name = adapter_class(slug).capacity
    layer = d_in * d_out
    if name is None:
        got = _count(slug, d_in, d_out, {})
        return () if got is None else ((0, got[0]),)
    found = []
    for v in candidates(d_in, d_out):
        got = _count(slug, d_in, d_out, {name: v})
        if got is None:
            continue
        n, frozen = got
        if frozen <= FROZEN_CAP * layer:
            found.append((v, n))
        if v > max(d_in, d_out) and (n > 2 * layer or frozen > FROZEN_CAP * layer):
            break  # past the layer's size the counts only grow: nothing further can be used
    return tuple(found)


def choose(slug: str, budget: float, d_in: int, d_out: int) -> Choice | None:
    """The hyperparameter value whose real count is closest to ``budget · d_in · d_out``; None if none builds."""
    name = adapter_class(slug).capacity
    table = counts(slug, d_in, d_out)
    if not table:
        return None
    goal = budget * d_in * d_out
    # closest in ratio; ties go to the smaller count
    value, n = min(table, key=lambda vn: (abs(math.log(max(vn[1], 1) / goal)), vn[1]))
    return Choice(hyper=() if name is None else ((name, value),), params=n)
