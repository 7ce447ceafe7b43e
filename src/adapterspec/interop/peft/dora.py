"""DoRA ⇄ peft 0.21.2's ``peft.tuners.lora.layer.Linear`` with ``use_dora=True``."""

from __future__ import annotations

import torch

from adapterspec.interop.peft import lora
from adapterspec.methods.dora import DoRA

LAYER = lora.LAYER
CONFIG = lora.CONFIG
BENCH = dict(r=16, lora_alpha=32, use_dora=True)
CASES = [
    dict(r=4, lora_alpha=8, use_dora=True),
    dict(r=8, lora_alpha=4, use_dora=True),
    dict(r=2, lora_alpha=2, use_dora=True, use_rslora=True),
]


def matches(layer, name: str) -> bool:
    return layer.use_dora.get(name, False)


def convert(layer, base, name: str) -> DoRA:
    lora.check_options(layer, name)
    module = DoRA(base, r=layer.r[name], alpha=layer.lora_alpha[name])
    lora.copy_factors(module, layer, name)
    with torch.no_grad():
        module.m.copy_(layer.lora_magnitude_vector[name].weight)  # (d_out,)
    return module
