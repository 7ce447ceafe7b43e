"""MiSS ⇄ peft 0.21.2's ``peft.tuners.miss.layer.MissLinear`` (``init_weights`` True, False or ``"mini"``).

peft stores the paper's ``D`` transposed: ``miss_block`` is ``(r, d_out)``, or ``(r, mini_r)`` in mini mode. The
layer's third mode, ``init_weights="bat"``, is a different update rule (the earlier Bone/Bat block-affine
transform) and converts to `adapterspec.methods.bone.Bone` instead.
"""

from __future__ import annotations

import torch

from adapterspec.interop.peft import PeftConversionError
from adapterspec.methods.miss import MiSS

LAYER = "peft.tuners.miss.layer.MissLinear"
CONFIG = "MissConfig"
SHAPES = [(24, 40), (40, 24)]
BENCH = dict(r=64)  # peft's default MiSS (balance) at its default r
CASES = [
    dict(r=8),  # divides both d_in values: plain tiling
    dict(r=7),  # 24 = 3·7 + 3, 40 = 5·7 + 5: a zero-padded last chunk; odd r (peft's note says "even")
    dict(r=4, init_weights="mini", mini_r=8),  # mini: 8 trained rows shared by the d_out output neurons
    dict(r=5, init_weights="mini", mini_r=4),
    dict(r=6, init_weights=False),  # Kaiming-uniform init instead of zeros: same update rule
]


def matches(layer, name: str) -> bool:
    return getattr(layer, "miss_fn", None) != "bat"


@torch.no_grad()
def convert(layer, base, name: str) -> MiSS:
    if layer.miss_fn == "bat":
        raise PeftConversionError("init_weights='bat' is the block-affine Bone/Bat update; convert with method='bone'")
    mini_r = layer.miss_mini_r[name] if layer.miss_fn == "mini" else None
    module = MiSS(base, r=layer.miss_r[name], mini_r=mini_r)
    module.D.copy_(layer.miss_block[name].T)  # (r, d_out) → D (d_out, r); (r, mini_r) → (mini_r, r)
    return module
