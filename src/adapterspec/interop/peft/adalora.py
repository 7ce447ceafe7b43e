"""AdaLoRA ⇄ peft 0.21.2's ``peft.tuners.adalora.layer.SVDLinear``.

peft keeps the paper's $P$ as ``lora_B`` $(d_{out}, r)$, $\\Lambda$ as ``lora_E`` $(r, 1)$ and $Q$ as ``lora_A``
$(r, d_{in})$, and scales the update by ``scaling / (ranknum + 1e-5)``, where ``scaling`` is ``lora_alpha`` (``r`` when
``lora_alpha`` ≤ 0) and ``ranknum`` the initial rank ``init_r``, which pruning never lowers. The conversion copies
that scale (the paper's $\\alpha / r$ differs from it by a relative $10^{-5}/r$, visible in float64). Pruned triplets
are zeros in ``lora_E`` and come over as zeros in $\\Lambda$.

Only the layer is converted. The rank schedule (peft's ``RankAllocator``: the importance averages, the budget, the
masks) and the orthogonality penalty live in ``AdaLoraModel``; the reference module has them as `allocate` and
``orthogonality_regularizer``, compared with peft's in ``tests/peft/test_peft_adalora.py``.
"""

from __future__ import annotations

import torch

from adapterspec.interop.peft import PeftConversionError
from adapterspec.methods.adalora import AdaLoRA

LAYER = "peft.tuners.adalora.layer.SVDLinear"
CONFIG = "AdaLoraConfig"
BENCH = dict(init_r=16, target_r=8, lora_alpha=32, total_step=1000)
CASES = [
    dict(init_r=4, target_r=2, lora_alpha=8, total_step=10),
    dict(init_r=12, target_r=8, lora_alpha=32, total_step=100, tinit=10, tfinal=20, deltaT=5),  # schedule: no effect
    dict(init_r=1, target_r=1, lora_alpha=32, total_step=10),  # rank one
    dict(init_r=6, target_r=3, lora_alpha=16, lora_dropout=0.1, total_step=10),  # dropout: off in eval
]


@torch.no_grad()
def convert(layer, base, name: str) -> AdaLoRA:
    r = layer.r[name]
    if r < 1:
        raise PeftConversionError(f"init_r={r}: an AdaLoRA layer without triplets is not supported")
    if layer.fan_in_fan_out:
        raise PeftConversionError("fan_in_fan_out=True (a Conv1D base layer) is not supported")
    module = AdaLoRA(base, r=r, alpha=float(layer.lora_alpha[name]))
    module.P.copy_(layer.lora_B[name])  # (d_out, r)
    module.Lambda.copy_(layer.lora_E[name].view(-1))  # (r,)
    module.Q.copy_(layer.lora_A[name])  # (r, d_in)
    # peft's scale, its denominator rounded in the layer's dtype as peft computes it
    module.scaling = layer.scaling[name] / float(layer.ranknum[name] + 1e-5)
    return module
