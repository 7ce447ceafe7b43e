"""Bone against peft 0.21.2, whose only implementation of it is MissLinear in ``init_weights="bat"`` mode: the layer
is converted to Bone, its update is the authors' original block-affine rule, and it is MiSS's update plus a
W0-dependent term on the same parameters."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

peft = pytest.importorskip("peft")

from adapterspec.interop.equality import randomize_peft_, wrap  # noqa: E402
from adapterspec.interop.peft import from_peft  # noqa: E402
from adapterspec.methods.bone import Bone  # noqa: E402
from adapterspec.methods.miss import MiSS  # noqa: E402


def _layer(d_in: int, d_out: int, **kwargs):
    g = torch.Generator().manual_seed(0)
    model, layer = wrap(Bone.example_base(d_in, d_out, g, torch.float64),
                        peft.MissConfig(target_modules=["proj"], **kwargs))
    randomize_peft_(model, g)
    return layer


def test_bat_layers_convert_to_bone_and_the_others_to_miss():
    assert type(from_peft(_layer(16, 12, r=4, init_weights="bat"))) is Bone
    assert type(from_peft(_layer(16, 12, r=4))) is MiSS
    assert type(from_peft(_layer(16, 12, r=4, init_weights="mini", mini_r=3))) is MiSS


def test_update_is_the_authors_block_affine_rule():
    """The original code (JL-er/Bone, RWKV-PEFT/src/rwkvLinear.py) reshapes a (d_out, r) parameter to (d_out/r, r, r)
    and adds rearrange(W, '(a r1) (b r2) -> b a r1 r2') @ bone + bone; peft's bat block is that reshaped parameter."""
    layer = _layer(24, 16, r=4, init_weights="bat")
    ours = from_peft(layer)
    W0, D = layer.get_base_layer().weight, layer.miss_block["default"]
    blocks = W0.reshape(4, 4, 6, 4).permute(2, 0, 1, 3)  # (b, a, r1, r2)
    original = (blocks @ D + D).permute(1, 2, 0, 3).reshape(16, 24)
    torch.testing.assert_close(ours.delta_weight(), original, rtol=0, atol=1e-13)
    x = torch.randn(3, 24, dtype=torch.float64)
    torch.testing.assert_close(ours(x), layer(x), rtol=0, atol=1e-12)


def test_bone_is_miss_plus_a_weight_dependent_term_and_is_not_rank_limited():
    base = nn.Linear(24, 16, dtype=torch.float64)
    bone = Bone(copy.deepcopy(base), r=4)
    miss = MiSS(copy.deepcopy(base), r=4)
    with torch.no_grad():
        bone.D.normal_()
        miss.D.copy_(bone.D.reshape(16, 4))  # same numbers, MiSS's (d_out, r) layout
    W0 = base.weight
    guide = torch.zeros_like(W0)
    for a in range(4):
        for b in range(6):
            guide[4 * a:4 * a + 4, 4 * b:4 * b + 4] = W0[4 * a:4 * a + 4, 4 * b:4 * b + 4] @ bone.D[a]
    torch.testing.assert_close(bone.delta_weight(), miss.delta_weight() + guide, rtol=0, atol=1e-13)
    assert int(torch.linalg.matrix_rank(bone.delta_weight())) == 16 > int(torch.linalg.matrix_rank(miss.delta_weight()))


def test_blocks_must_tile_the_weight():
    with pytest.raises(ValueError, match="divide"):
        Bone(nn.Linear(16, 12), r=8)
