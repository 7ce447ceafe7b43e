"""(IA)³ ⇄ peft 0.21.2's ``peft.tuners.ia3.layer.Linear``."""

from __future__ import annotations

import torch

from adapterspec.interop.peft import PeftConversionError
from adapterspec.methods.ia3 import IA3

LAYER = "peft.tuners.ia3.layer.Linear"
BENCH = dict(feedforward_modules=[])
CASES = [
    dict(feedforward_modules=[]),  # scales the output (keys, values)
    dict(feedforward_modules=["proj"]),  # scales the input (FFN down projection)
]


def peft_config(**kwargs):
    from peft import IA3Config
    return IA3Config(**kwargs)


def convert(layer, base, name: str) -> IA3:
    if getattr(layer, "fan_in_fan_out", False):
        raise PeftConversionError("fan_in_fan_out (Conv1D layers) is not supported; adapterspec wraps nn.Linear")
    module = IA3(base, feedforward=layer.is_feedforward)
    with torch.no_grad():
        module.l.copy_(layer.ia3_l[name].flatten())  # peft: (1, d_in) feed-forward, (d_out, 1) otherwise
    return module
