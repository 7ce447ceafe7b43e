"""VeRA ⇄ peft 0.21.2's ``peft.tuners.vera.layer.Linear``.

peft draws one pair ``vera_A (r, max_in)``, ``vera_B (max_out, r)`` for the whole model, sized to the largest adapted
layer, and each layer uses the slices ``vera_A[:, :d_in]``, ``vera_B[:d_out, :]``. The conversion copies those slices,
so it is exact whatever the other layers' shapes. The layer does not record ``projection_prng_key``: the converted
module keeps ``seed=0``, and its ``reset_parameters()`` would redraw the pair from that seed (for a model whose adapted
layers all have one shape, ``VeRA(base, r, seed=projection_prng_key)`` draws exactly peft's pair).
"""

from __future__ import annotations

import torch

from adapterspec.methods.vera import VeRA

LAYER = "peft.tuners.vera.layer.Linear"
CONFIG = "VeraConfig"
BENCH = dict(r=256)  # peft's default and the paper's usual rank, for scripts/bench_peft.py
CASES = [
    dict(r=4),
    dict(r=8, d_initial=0.5, projection_prng_key=3),
    dict(r=64),  # r above both layer sizes
    dict(r=16, vera_dropout=0.1),  # dropout is training-time noise: off in eval
]


@torch.no_grad()
def convert(layer, base, name: str) -> VeRA:
    module = VeRA(base, r=layer.r[name])
    module.A.copy_(layer.vera_A[name][:, : module.d_in])  # (r, d_in): peft's shared pair, sliced to this layer
    module.B.copy_(layer.vera_B[name][: module.d_out, :])  # (d_out, r)
    module.b.copy_(layer.vera_lambda_b[name])  # (d_out,)
    module.d.copy_(layer.vera_lambda_d[name])  # (r,)
    return module
