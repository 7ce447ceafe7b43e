"""DeLoRA ⇄ peft 0.21.2's ``peft.tuners.delora.layer.DeloraLinear``.

peft starts from ``B = 0`` with the factor norms floored at ``1e-4`` and subtracts no frozen copy of the initial update,
so the converted module uses ``init="peft"`` (the paper's frozen-copy start is ``init="paper"``, not what peft
computes). peft's per-input-feature weight norms are copied from its buffer, not recomputed: peft took them in the
dtype the layer had when the adapter was created.
"""

from __future__ import annotations

import torch

from adapterspec.methods.delora import DeLoRA

LAYER = "peft.tuners.delora.layer.DeloraLinear"
CONFIG = "DeloraConfig"
CASES = [
    dict(r=4),  # peft's default strength, lambda = 15
    dict(r=8, delora_lambda=3),
    dict(r=2, delora_lambda=20, init_weights=False),  # both factors random: peft does not start at the identity
    dict(r=3, module_dropout=0.2),  # input dropout on the adapter branch: off in eval
]
BENCH = dict()  # the speed benchmark runs peft's defaults: r = 8, lambda = 15


@torch.no_grad()
def convert(layer, base, name: str) -> DeLoRA:
    lam = layer.delora_lambda[name]  # (1,), trainable
    module = DeLoRA(base, r=layer.r[name], lambda0=float(lam), init="peft", eps=1e-4)
    module.A.copy_(layer.delora_A[name])  # (r, d_in)
    module.B.copy_(layer.delora_B[name])  # (d_out, r)
    module.lambda_.copy_(lam)
    module.w_norm.copy_(layer.delora_w_norm[name])  # (d_in,) ‖W0[:, j]‖ as peft stored it
    module.A0.copy_(module.A)  # unused with init="peft" (no frozen copy is subtracted)
    module.B0.copy_(module.B)
    return module
