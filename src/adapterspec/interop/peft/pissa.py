"""PiSSA ⇄ peft 0.21.2's ``peft.tuners.lora.layer.Linear`` initialised with ``init_lora_weights="pissa"``.

After its init a PiSSA layer *is* a LoRA layer whose frozen weight is the residual ``W_res``; nothing in the layer
records the init, so PiSSA is only chosen by name: ``from_peft(layer, method="pissa")``.
"""

from __future__ import annotations

import torch

from adapterspec.interop.peft import lora
from adapterspec.methods.pissa import PiSSA

LAYER = lora.LAYER
CONFIG = lora.CONFIG
EXPLICIT = True
BENCH = dict(r=16, lora_alpha=16, init_lora_weights="pissa")
CASES = [
    dict(r=4, lora_alpha=4, init_lora_weights="pissa"),
    dict(r=8, lora_alpha=16, init_lora_weights="pissa"),
    dict(r=4, lora_alpha=4, init_lora_weights="pissa_niter_4"),  # peft's fast (randomised) SVD
]


def matches(layer, name: str) -> bool:
    return lora.matches(layer, name)


def convert(layer, base, name: str) -> PiSSA:
    lora.check_options(layer, name)
    W_res = base.weight.detach().clone()  # peft has already split W; PiSSA's init would split W_res again
    module = PiSSA(base, r=layer.r[name], alpha=layer.lora_alpha[name])
    lora.copy_factors(module, layer, name)
    with torch.no_grad():
        module.base.weight.copy_(W_res)
    return module
