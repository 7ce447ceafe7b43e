"""LoRA ⇄ peft 0.21.2's ``peft.tuners.lora.layer.Linear`` (without DoRA)."""

from __future__ import annotations

import torch

from adapterspec.interop.peft import PeftConversionError
from adapterspec.methods.lora import LoRA

LAYER = "peft.tuners.lora.layer.Linear"
CONFIG = "LoraConfig"
BENCH = dict(r=16, lora_alpha=32)  # the speed benchmark's config (scripts/bench_peft.py)
CASES = [
    dict(r=4, lora_alpha=8),
    dict(r=8, lora_alpha=16, use_rslora=True),
    dict(r=1, lora_alpha=3, lora_dropout=0.1),  # dropout is training-time noise: off in eval
]


def matches(layer, name: str) -> bool:
    return not layer.use_dora.get(name, False)


def check_options(layer, name: str) -> None:
    """Options of peft's LoRA layer that the reference modules do not implement."""
    if layer.lora_bias.get(name, False):
        raise PeftConversionError("lora_bias=True (a trainable bias on B) is not part of LoRA; not supported")


def convert(layer, base, name: str) -> LoRA:
    check_options(layer, name)
    module = LoRA(base, r=layer.r[name], alpha=layer.lora_alpha[name], use_rslora=layer.use_rslora[name])
    copy_factors(module, layer, name)
    return module


@torch.no_grad()
def copy_factors(module: LoRA, layer, name: str) -> None:
    """A, B and the scale from peft's ``lora_A``/``lora_B`` (``nn.Linear``s: A is ``(r, d_in)``, B ``(d_out, r)``)."""
    module.A.copy_(layer.lora_A[name].weight)  # (r, d_in)
    module.B.copy_(layer.lora_B[name].weight)  # (d_out, r)
    module.scaling = layer.scaling[name]  # alpha/r or alpha/√r; peft's set_scale can change it later
