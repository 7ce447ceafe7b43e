"""LoHa ⇄ peft 0.21.2's ``peft.tuners.loha.layer.Linear``.

peft's factors map one to one: ``hada_w1_a`` (out, r) is B1, ``hada_w1_b`` (r, in) is A1, ``hada_w2_a`` is B2 and
``hada_w2_b`` is A2. peft multiplies the update by ``torch.tensor(alpha / r)``, a float32 scalar whatever the model's
dtype; the conversion copies that rounded value, so that float64 outputs agree to the last digits. ``rank_dropout``
and ``module_dropout`` are training-time noise (off in eval) and are not carried over.
"""

from __future__ import annotations

import torch

from adapterspec.interop.peft import PeftConversionError
from adapterspec.methods.loha import LoHa

LAYER = "peft.tuners.loha.layer.Linear"
CONFIG = "LoHaConfig"
BENCH = dict(r=8, alpha=8)  # peft's defaults, for scripts/bench_peft.py
CASES = [
    dict(r=4, alpha=2),  # LyCORIS's LoHa defaults (dimension 4, alpha 2)
    dict(r=8, alpha=8),  # peft's defaults
    dict(r=3, alpha=1),  # alpha/r = 1/3: peft rounds the scale to float32
    dict(r=2, alpha=5, rank_dropout=0.2, module_dropout=0.1),  # dropouts are training-time noise: off in eval
    dict(r=7, alpha=4, init_weights=False),  # r² = 49 > min(d_in, d_out): full-rank capable; all four factors random
]


@torch.no_grad()
def convert(layer, base, name: str) -> LoHa:
    if name in layer.hada_t1:
        raise PeftConversionError("the CP/Tucker form (use_effective_conv2d on convolutions) is not supported; "
                                  "adapterspec wraps nn.Linear")
    module = LoHa(base, r=layer.r[name], alpha=layer.alpha[name])
    module.B1.copy_(layer.hada_w1_a[name])  # (d_out, r)
    module.A1.copy_(layer.hada_w1_b[name])  # (r, d_in)
    module.B2.copy_(layer.hada_w2_a[name])  # (d_out, r)
    module.A2.copy_(layer.hada_w2_b[name])  # (r, d_in)
    module.scaling = float(torch.tensor(layer.scaling[name]))  # alpha/r rounded through float32, as peft applies it
    return module
