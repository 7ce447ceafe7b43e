"""OFTv2 ⇄ peft 0.21.2's ``peft.tuners.oft.layer.Linear`` (the same layer class OFT converts).

peft's OFT layer *is* the OFTv2 implementation: since the paper's authors contributed it, its forward rotates the
input block by block (``OFTRotationModule.forward``) and its default rotation is the Cayley–Neumann series. Both
catalog entries therefore convert the same layer and compute the same function for the same config; ``from_peft``
picks OFT unless asked for this one, ``from_peft(layer, method="oftv2")``.

* peft's ``num_cayley_neumann_terms=n`` counts the terms of the expanded series ``I + 2Q + … + 2Q^(n-2) + Q^(n-1)
  = (I + Q)(I + Q + … + Q^(n-2))``: our ``k = n - 2``. A quirk of peft's loop makes ``n = 3`` the same as ``n = 4``
  (``k = 2``); ``n = 1, 2`` (``I`` and ``I + 2Q``) are not of the paper's form and are refused.
* with ``use_cayley_neumann=False`` peft solves for ``(I - Q)(I + Q)⁻¹``, the paper's map of ``-Q``: we negate ``q``.
* COFT's projection and ``block_share`` belong to OFT v1 (the ``oft`` converter handles COFT); they are refused here.
"""

from __future__ import annotations

import torch

from adapterspec.interop.peft import PeftConversionError, oft
from adapterspec.methods.oftv2 import OFTv2

LAYER = oft.LAYER
CONFIG = oft.CONFIG
EXPLICIT = True  # the layer alone does not say which paper it follows; from_peft's default stays OFT
SHAPES = [(24, 40), (48, 20)]
BENCH = dict(r=0, oft_block_size=32)  # peft's defaults, the paper's b = 32 and five Neumann terms
CASES = [
    dict(r=0, oft_block_size=8),  # peft's defaults apart from the block size: five terms (k = 3)
    dict(r=0, oft_block_size=4, num_cayley_neumann_terms=7),  # k = 5
    dict(r=0, oft_block_size=12, num_cayley_neumann_terms=3),  # peft's quirk: k = 2, same as four terms
    dict(r=0, oft_block_size=6, use_cayley_neumann=False),  # exact Cayley map, peft's sign convention
]


def matches(layer, name: str) -> bool:
    rot = layer.oft_R[name]
    return not (rot.coft or rot.block_share)


def neumann_k(terms: int) -> int:
    """Our ``k`` (powers of ``Q`` in the series of ``(I - Q)⁻¹``) for peft's ``num_cayley_neumann_terms``."""
    if terms < 3:
        raise PeftConversionError(f"num_cayley_neumann_terms={terms}: peft's 1- and 2-term series (I, I + 2Q) are not "
                                  "of the paper's form (I + Q)(I + Q + … + Q^k); use at least 3 terms")
    return max(terms - 2, 2)


@torch.no_grad()
def convert(layer, base, name: str) -> OFTv2:
    rot = layer.oft_R[name]
    if not matches(layer, name):
        raise PeftConversionError("coft=True and block_share=True are OFT v1 options; convert with method='oft' (COFT) "
                                  "or use neither")
    k = neumann_k(rot.num_cayley_neumann_terms) if rot.use_cayley_neumann else 0
    module = OFTv2(base, b=rot.block_size, k=k)
    q = rot.weight.detach()  # (n, b(b-1)/2), the strict upper triangle of each Q block, row-major
    module.q.copy_(q if k else -q)
    return module
