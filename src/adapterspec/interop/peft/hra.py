"""HRA ⇄ peft 0.21.2's ``peft.tuners.hra.layer.HRALinear``.

peft stores the unnormalised reflection vectors as ``hra_u`` ``(d_in, r)``, our ``V``; its layer computes the same
$W' = W_0 H_1 \\cdots H_r$ (or $W_0 (I - 2UU^\\top)$ with ``apply_GS``), so the conversion copies ``hra_u`` as it is.
Where the two differ is the initialisation with ``apply_GS=True`` (see the page): conversion copies peft's state, so
the comparison holds whatever the init was.
"""

from __future__ import annotations

import torch

from adapterspec.methods.hra import HRA

LAYER = "peft.tuners.hra.layer.HRALinear"
CONFIG = "HRAConfig"
SHAPES = [(24, 40), (40, 24)]
BENCH = dict(r=8)  # peft's default
CASES = [
    dict(r=8),  # peft's default: even r, paired init
    dict(r=5),  # odd r: not the identity at init
    dict(r=4, apply_GS=True),  # the strictly orthogonal HRA (λ = ∞)
    dict(r=3, apply_GS=True),
]


@torch.no_grad()
def convert(layer, base, name: str) -> HRA:
    module = HRA(base, r=layer.hra_r[name], apply_GS=bool(layer.hra_apply_GS[name]))
    module.V.copy_(layer.hra_u[name].detach())  # (d_in, r)
    return module
