"""C3A ⇄ peft 0.21.2's ``peft.tuners.c3a.layer.C3ALinear``.

peft's kernel ``c3a_kernel`` has our layout ``(d_out/b, d_in/b, b)`` and the paper's first-row circulant blocks, so it
is copied as is. Two peft choices are reproduced by options of the module: the update is divided by ``d_in``
(``scaling="peft"``), and the convolution runs in float32 whatever the layer's dtype (``precision="peft"``).
"""

from __future__ import annotations

import torch

from adapterspec.interop.peft import PeftConversionError
from adapterspec.methods.c3a import C3A

LAYER = "peft.tuners.c3a.layer.C3ALinear"
CONFIG = "C3AConfig"
CASES = [
    dict(block_size=8),  # peft's default Xavier init
    dict(block_size=4, init_weights="kaiming_uniform"),
    dict(block_size=2, init_weights=True),  # zero init: an identity start
    dict(block_size=1, init_weights="gaussian"),  # b = 1: every entry of ΔW is its own kernel
]
BENCH = dict(block_size=256)  # peft's default


@torch.no_grad()
def convert(layer, base, name: str) -> C3A:
    kernel = layer.c3a_kernel[name]  # (d_out/b, d_in/b, b)
    b = layer.block_size[name]
    if kernel.shape != (layer.out_features // b, layer.in_features // b, b):
        raise PeftConversionError(f"c3a_kernel has shape {tuple(kernel.shape)}, expected "
                                  f"{(layer.out_features // b, layer.in_features // b, b)}")
    module = C3A(base, b=b, init="zeros", scaling="peft", precision="peft")
    module.delta_w.copy_(kernel)
    return module
