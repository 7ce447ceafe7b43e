"""PSOFT ⇄ peft 0.21.2's ``peft.tuners.psoft.layer.Linear``.

peft keeps the pretrained weight in the base layer and adds ``s · B (M − I) A`` with ``M = diag(vector_b) R
diag(vector_a)`` and ``s = psoft_alpha / r``; its factors already carry ``1/s`` (``B = U diag(S/s)``, or ``√(S/s)`` on
both sides for ``ab_svd_init="pissa_init"``), so ``s`` cancels and ``psoft_alpha`` does not change the layer. That is
the paper's ``W_res + B M A`` written around ``W0``: the conversion takes peft's own factors (so the randomised
``psoft_svd="lowrank"`` init converts too), sets ``B ← s · B`` and ``W_res = W0 − B A``.

peft's rotation is ``(I + Q)(I − Q)⁻¹`` (a solve) or its series ``I + 2Q + … + Q^(n-1) = (I + Q)(I + Q + … +
Q^(n-2))`` for ``num_cayley_neumann_terms = n``, the same count as peft's OFT: our ``k = n − 2`` (``n = 3`` is the
same as ``n = 4``). ``vector_a`` is our ``α`` (the ``A`` side), ``vector_b`` our ``β``.
"""

from __future__ import annotations

import torch

from adapterspec.interop.peft import PeftConversionError
from adapterspec.methods.psoft import PSOFT

LAYER = "peft.tuners.psoft.layer.Linear"
CONFIG = "PsoftConfig"
SHAPES = [(24, 40), (40, 24)]
BENCH = dict(r=32, psoft_alpha=32)  # peft's defaults
CASES = [
    dict(r=8, psoft_alpha=8),  # peft's defaults: exact Cayley, both vectors, asymmetric split
    dict(r=6, psoft_alpha=24, psoft_mag_a=False, psoft_mag_b=False),  # strict PSOFT (Eq. 7); alpha cancels
    dict(r=5, psoft_alpha=5, psoft_mag_b=False, ab_svd_init="pissa_init"),  # symmetric split (Eq. 3)
    dict(r=8, psoft_alpha=8, psoft_orth=False),  # free R (the paper's PiSSA+LoRA-XS ablation, γ = 0)
    dict(r=8, psoft_alpha=16, use_cayley_neumann=True),  # five-term series, as in the paper's experiments
    dict(r=7, psoft_alpha=7, use_cayley_neumann=True, num_cayley_neumann_terms=7, cayley_neumann_eps=0.5),
    dict(r=8, psoft_alpha=8, psoft_svd="lowrank", psoft_svd_lowrank_niter=2),  # randomised SVD init
]


def neumann_k(terms: int) -> int:
    """Our ``k`` for peft's ``num_cayley_neumann_terms`` (the expanded series' number of terms)."""
    if terms < 3:
        raise PeftConversionError(f"num_cayley_neumann_terms={terms}: peft's 1- and 2-term series (I, I + 2Q) are not "
                                  "of the form (I + Q)(I + Q + … + Q^k); use at least 3 terms")
    return max(terms - 2, 2)


@torch.no_grad()
def convert(layer, base, name: str) -> PSOFT:
    rot = layer.psoft_R[name]
    k = neumann_k(rot.num_cayley_neumann_terms) if rot.orth and rot.use_cayley_neumann else 0
    eps = float(rot.cayley_neumann_eps or 0.0) if k else 0.0
    W0 = base.weight.detach().clone()  # our init splits base.weight: keep the pretrained weight first
    module = PSOFT(base, r=layer.r[name], mag_a=rot.mag_a, mag_b=rot.mag_b,
                   symmetric=layer.ab_svd_init[name] == "pissa_init", orth=rot.orth, k=k, eps=eps)
    A, B = layer._get_psoft_ab_cache_buffers(name)  # (r, d_in), (d_out, r), carrying 1/s
    module.A.copy_(A.to(W0.dtype))
    module.B.copy_(layer.scaling[name] * B.to(W0.dtype))
    module.base.weight.copy_(W0 - module.B @ module.A)  # W_res, with peft's own factors
    module.q.copy_(rot.weight.detach().flatten())
    for ours, theirs in ((module.alpha, rot.vector_a), (module.beta, rot.vector_b)):
        if ours is not None:
            ours.copy_(theirs.detach())
    return module
