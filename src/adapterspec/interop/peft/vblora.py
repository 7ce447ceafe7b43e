"""VB-LoRA ⇄ peft 0.21.2's ``peft.tuners.vblora.layer.Linear``.

peft keeps one vector bank for the whole model (``vblora_vector_bank``, a ParameterDict every layer refers to) and
per-layer logits; the converted module gets a copy of that bank and this layer's logits. Logits loaded from a
``save_only_topk_weights`` checkpoint (``log(weight)`` on the top k, ``-inf`` elsewhere) convert as they are.
"""

from __future__ import annotations

import torch

from adapterspec.methods.vblora import VBLoRA

LAYER = "peft.tuners.vblora.layer.Linear"
CONFIG = "VBLoRAConfig"
SHAPES = [(24, 40), (40, 24)]  # (d_in, d_out); every vector_length below divides both
CASES = [
    dict(r=4, num_vectors=16, vector_length=8),  # peft's default top-2 mixing
    dict(r=2, num_vectors=10, vector_length=4, topk=3, init_vector_bank_bound=0.1),
    dict(r=3, num_vectors=6, vector_length=8, topk=1, init_logits_std=0.01),  # a bare bank vector per piece
]
BENCH = dict()  # the speed benchmark runs peft's defaults: r=4, num_vectors=256, vector_length=256, topk=2


@torch.no_grad()
def convert(layer, base, name: str) -> VBLoRA:
    bank = layer.vblora_vector_bank[name]  # (h, b), shared by every VB-LoRA layer of the peft model
    module = VBLoRA(base, r=layer.r[name], h=bank.shape[0], b=bank.shape[1], k=layer.topk[name])
    module.vector_bank.copy_(bank)
    module.logits_A.copy_(layer.vblora_logits_A[name])  # (r, d_in/b, h)
    module.logits_B.copy_(layer.vblora_logits_B[name])  # (d_out/b, r, h)
    return module
