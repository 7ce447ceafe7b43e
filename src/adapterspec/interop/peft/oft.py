"""OFT ⇄ peft 0.21.2's ``peft.tuners.oft.layer.Linear``.

peft's rotation differs from the paper's in two ways, and the conversion accounts for both:

* ``use_cayley_neumann=True`` (peft's default) replaces the Cayley map by a truncated series. With ``n`` terms peft
  computes ``I + 2Q + … + 2Q^(m-1) + Q^m = (I + Q)(I + Q + … + Q^(m-1))`` with ``m = max(n - 1, 3)`` (so 3 and 4 terms
  give the same series); our ``neumann_order=m`` is that series.
* with ``use_cayley_neumann=False`` peft solves for ``(I - Q)(I + Q)⁻¹``, the paper's map of ``-Q``: we negate ``q``.

With ``coft=True`` peft projects each skew block onto a Frobenius ball (radius ``eps/√blocks``) at every forward,
writing the result into its parameter; the conversion applies the same projection, so the result is what peft's
forward computes.
"""

from __future__ import annotations

import torch

from adapterspec.interop.peft import PeftConversionError
from adapterspec.methods.oft import OFT

LAYER = "peft.tuners.oft.layer.Linear"
CONFIG = "OFTConfig"
SHAPES = [(24, 40), (48, 20)]
BENCH = dict(r=0, oft_block_size=32)  # peft's defaults: 32 blocks of 32, Neumann series
CASES = [
    dict(r=4, oft_block_size=0),  # peft's default Neumann series (5 terms)
    dict(r=0, oft_block_size=8, use_cayley_neumann=False),  # exact Cayley: peft's sign convention
    dict(r=2, oft_block_size=0, num_cayley_neumann_terms=7),
    dict(r=3, oft_block_size=0, use_cayley_neumann=False, coft=True, eps=0.05),
]


def neumann_order(terms: int) -> int:
    """Our ``neumann_order`` for peft's ``num_cayley_neumann_terms``."""
    if terms < 3:
        raise PeftConversionError(f"num_cayley_neumann_terms={terms}: peft's 1- and 2-term series (I, I + 2Q) are not "
                                  "a truncation of the Cayley map; not supported")
    return max(terms - 1, 3)


@torch.no_grad()
def convert(layer, base, name: str) -> OFT:
    rot = layer.oft_R[name]
    if rot.block_share:
        raise PeftConversionError("block_share=True (one block reused r times) is not implemented by the reference OFT")
    order = neumann_order(rot.num_cayley_neumann_terms) if rot.use_cayley_neumann else 0
    module = OFT(base, r=rot.r, neumann_order=order)
    q = rot.weight.detach().clone()  # (r, b(b-1)/2), the strict upper triangle of each Q block, row-major
    if rot.coft:
        radius = float(rot.eps / torch.tensor(rot.r).sqrt())  # eps/√r, rounded through float32 as peft does
        norm = (2 * q.pow(2).sum(dim=1, keepdim=True)).sqrt()  # ‖Q_i‖_F: each entry appears twice, ±
        q = torch.where(norm <= radius, q, radius * q / norm)
    module.q.copy_(q if order else -q)
    return module
