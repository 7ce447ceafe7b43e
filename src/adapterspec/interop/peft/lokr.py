"""LoKr ⇄ peft 0.21.2's ``peft.tuners.lokr.layer.Linear``.

peft's blocks map one to one: ``lokr_w1`` is C (or ``lokr_w1_a @ lokr_w1_b`` = C1 C2 with ``decompose_both``) and
``lokr_w2`` is the full large block D (or ``lokr_w2_a @ lokr_w2_b`` = B A). The block sizes are read off peft's tensors
and passed as ``u_p``, ``u_q``: peft's ``factorization`` differs from the paper's Eq. (5) when ``decompose_factor``
divides a dimension and exceeds its square root, and copying the shapes makes the conversion exact either way. The
scale is peft's ``alpha / r`` (applied even when no block is factored). ``rank_dropout`` and ``module_dropout`` are
training-time noise (off in eval) and are not carried over.
"""

from __future__ import annotations

import torch

from adapterspec.interop.peft import PeftConversionError
from adapterspec.methods.lokr import LoKr

LAYER = "peft.tuners.lokr.layer.Linear"
CONFIG = "LoKrConfig"
SHAPES = [(24, 40), (40, 24), (64, 48)]  # (d_in, d_out); 64 x 48 has square-root splits with a 8 x 8 large block
CASES = [
    dict(r=8, alpha=8),  # peft's defaults: balanced split, large block full (2r ≥ its sides)
    dict(r=1, alpha=3),  # large block factored at rank 1
    dict(r=2, alpha=4, decompose_factor=2),  # small block 2 × 2 (Eq. 5 with f = 2)
    dict(r=2, alpha=4, decompose_factor=8),  # f divides 24, 40, 48 or 64 and exceeds √: peft's split, not Eq. (5)
    dict(r=1, alpha=2, decompose_both=True, init_weights="lycoris"),  # small block factored; LyCORIS init
    # training-time noise, off in eval:
    dict(r=3, alpha=5, rank_dropout=0.3, module_dropout=0.2, rank_dropout_scale=True),
]


@torch.no_grad()
def convert(layer, base, name: str) -> LoKr:
    if name in layer.lokr_t2:
        raise PeftConversionError("the Tucker form of the large block (use_effective_conv2d) is not supported; "
                                  "adapterspec wraps nn.Linear")
    full_left, full_right = name in layer.lokr_w1, name in layer.lokr_w2
    C1, C2 = (None, None) if full_left else (layer.lokr_w1_a[name], layer.lokr_w1_b[name])
    u_p, u_q = layer.lokr_w1[name].shape if full_left else (C1.shape[0], C2.shape[1])
    module = LoKr(base, r=layer.r[name], alpha=layer.alpha[name], decompose_both=not full_left,
                  u_p=int(u_p), u_q=int(u_q))
    if (module.full_left, module.full_right) != (full_left, full_right):
        raise PeftConversionError(f"peft's block structure (full left {full_left}, full right {full_right}) is not "
                                  f"the one LoKr derives for r={module.r}; cannot convert")
    if full_left:
        module.C.copy_(layer.lokr_w1[name])  # (u_p, u_q)
    else:
        module.C1.copy_(C1)  # (u_p, r)
        module.C2.copy_(C2)  # (r, u_q)
    if full_right:
        module.D.copy_(layer.lokr_w2[name])  # (v_p, v_q)
    else:
        module.B.copy_(layer.lokr_w2_a[name])  # (v_p, r)
        module.A.copy_(layer.lokr_w2_b[name])  # (r, v_q)
    module.scaling = layer.scaling[name]  # alpha / r; peft's set_scale can change it later
    return module
