"""RoAd ⇄ peft 0.21.2's ``peft.tuners.road.layer.Linear``.

peft stores the angles and magnitudes flat, in its own order; the conversion reshapes them into one value per block
(``road_1``), per block row (``road_2``) or per block entry (``road_4``):

* ``road_1``: ``(d_out/2,)``, index ``i`` is pair ``i`` already (group ``k``, position ``j`` ↦ ``k·g/2 + j``);
* ``road_2``: ``(d_out,)``, one value per output coordinate, i.e. per row of its block: row 0 of pair ``i`` is
  coordinate ``p_i``, row 1 is ``q_i``;
* ``road_4``: ``(2·d_out,)`` read as ``(d_out/g, 2, g)``: ``[k, 0, m]`` is the cosine (diagonal) term and ``[k, 1, m]``
  the sine (off-diagonal) term of coordinate ``k·g + m``.

peft rotates the whole output ``W0 x + b`` (bias included) and merges ``W ← R W``, ``b ← R b``, as our module does.
"""

from __future__ import annotations

import torch

from adapterspec.interop.peft import PeftConversionError
from adapterspec.methods.road import RoAd

LAYER = "peft.tuners.road.layer.Linear"
CONFIG = "RoadConfig"
CASES = [
    dict(variant="road_1", group_size=8),
    dict(variant="road_2", group_size=4),
    dict(variant="road_4", group_size=8),
    dict(variant="road_1", group_size=2),  # the paper's adjacent pairs
    dict(variant="road_4", group_size=2, init_weights=False),  # peft's random (non-identity) init
]
BENCH = dict(variant="road_1", group_size=64)  # peft's defaults


def _pairs(flat: torch.Tensor, g: int) -> torch.Tensor:
    """``(d_out,)`` per output coordinate → ``(d_out/2, 2)``: ``[i, 0]`` at ``p_i``, ``[i, 1]`` at ``q_i``."""
    return flat.reshape(-1, 2, g // 2).transpose(1, 2).reshape(-1, 2)  # (d_out/2, 2)


def _entries(flat: torch.Tensor, g: int) -> torch.Tensor:
    """peft's road_4 layout ``(2·d_out,)`` → ``(d_out/2, 2, 2)`` indexed ``[pair, row, column]`` of ``R_i``."""
    cos_term, sin_term = flat.reshape(-1, 2, g).unbind(1)  # (d_out/g, g) each: diagonal / off-diagonal per coordinate
    diag = _pairs(cos_term.flatten(), g)  # (d_out/2, 2): [i, 0] = R_i[0,0], [i, 1] = R_i[1,1]
    off = _pairs(sin_term.flatten(), g)  # (d_out/2, 2): [i, 0] = R_i[0,1], [i, 1] = R_i[1,0]
    return torch.stack((torch.stack((diag[:, 0], off[:, 0]), -1), torch.stack((off[:, 1], diag[:, 1]), -1)), 1)


@torch.no_grad()
def convert(layer, base, name: str) -> RoAd:
    variant, g = layer.variant[name], layer.group_size[name]
    if variant not in ("road_1", "road_2", "road_4"):
        raise PeftConversionError(f"unknown RoAd variant {variant!r}")
    module = RoAd(base, variant=int(variant[-1]), group_size=g)
    reshape = {"road_1": lambda t: t, "road_2": lambda t: _pairs(t, g), "road_4": lambda t: _entries(t, g)}[variant]
    module.theta.copy_(reshape(layer.road_theta[name].detach()))
    module.alpha.copy_(reshape(layer.road_alpha[name].detach()))
    return module
