"""(IA)³ ⇄ peft 0.21.2's ``peft.tuners.ia3.layer.Linear``."""

from __future__ import annotations

import torch

from adapterspec.methods.ia3 import IA3

LAYER = "peft.tuners.ia3.layer.Linear"
CONFIG = "IA3Config"
BENCH = dict(feedforward_modules=[])
CASES = [
    dict(feedforward_modules=[]),  # scales the output (keys, values)
    dict(feedforward_modules=["proj"]),  # scales the input (FFN down projection)
]


def convert(layer, base, name: str) -> IA3:
    module = IA3(base, feedforward=layer.is_feedforward)
    with torch.no_grad():
        module.l.copy_(layer.ia3_l[name].flatten())  # peft: (1, d_in) feed-forward, (d_out, 1) otherwise
    return module
