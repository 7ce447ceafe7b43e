"""Bone ⇄ peft 0.21.2's ``peft.tuners.miss.layer.MissLinear`` in ``init_weights="bat"`` mode.

peft 0.21.2 has no Bone tuner of its own (``BoneConfig`` was folded into MiSS). Its MiSS layer in ``"bat"`` mode
computes ``W_ab + W_ab D_a + D_a`` block by block with ``miss_block`` of shape ``(d_out/r, r, r)`` (``get_delta_weight``),
which is the block-affine rule of the paper's v1–v3 "Bone" (and of the authors' original code): the tensor is copied
as it is.
"""

from __future__ import annotations

import torch

from adapterspec.interop.peft import PeftConversionError
from adapterspec.methods.bone import Bone

LAYER = "peft.tuners.miss.layer.MissLinear"
CONFIG = "MissConfig"
SHAPES = [(24, 40), (40, 24)]
BENCH = dict(r=64, init_weights="bat")  # the benchmark's bat configuration
CASES = [
    dict(r=8, init_weights="bat"),
    dict(r=4, init_weights="bat"),
    dict(r=2, init_weights="bat"),
]


def matches(layer, name: str) -> bool:
    return getattr(layer, "miss_fn", None) == "bat"


@torch.no_grad()
def convert(layer, base, name: str) -> Bone:
    if layer.miss_fn != "bat":
        raise PeftConversionError(f"init_weights={layer.miss_fn!r} is MiSS's additive shard update, not the "
                                  "block-affine Bone rule; convert with method='miss'")
    module = Bone(base, r=layer.miss_r[name])
    module.D.copy_(layer.miss_block[name])  # (d_out/r, r, r): D_a for output block-row a
    return module
