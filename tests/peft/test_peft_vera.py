"""VeRA against peft 0.21.2: where our module and peft's layer agree by construction, and the one place they differ
(the shared pair sized to the largest layer)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

peft = pytest.importorskip("peft")

from adapterspec.interop.equality import randomize_peft_, wrap  # noqa: E402
from adapterspec.interop.peft import from_peft  # noqa: E402
from adapterspec.methods.vera import VeRA  # noqa: E402


@pytest.mark.parametrize("key", [0, 5])
def test_seeded_pair_is_peft_pair_for_one_shape(key):
    """Same seed, same shapes: our own draw is bit for bit peft's shared pair, and both start at the identity with
    d = 0.1 (the paper's experiments and peft's default)."""
    lin = nn.Linear(24, 40)
    _, layer = wrap(copy.deepcopy(lin), peft.VeraConfig(r=8, target_modules=["proj"], projection_prng_key=key))
    ours = VeRA(copy.deepcopy(lin), r=8, seed=key)
    assert torch.equal(ours.A, layer.vera_A["default"][:, :24])
    assert torch.equal(ours.B, layer.vera_B["default"][:40])
    assert torch.equal(ours.d, layer.vera_lambda_d["default"]) and ours.d[0].item() == pytest.approx(0.1)
    assert torch.equal(ours.b, layer.vera_lambda_b["default"]) and not ours.b.any()


def test_mixed_shapes_share_a_pair_sized_to_the_largest_layer():
    """peft draws one (r, max_in) / (max_out, r) pair and slices it: the narrow layer's A has the Kaiming bound of
    the widest input, √(6/max_in), not its own √(6/d_in). The converter copies the slice, so it stays exact."""
    narrow, wide = nn.Linear(16, 64), nn.Linear(64, 16)
    model, two = wrap(nn.Sequential(narrow, wide), peft.VeraConfig(r=32, target_modules=["proj.0", "proj.1"]))
    model.double().eval()
    la, lb = two[0], two[1]
    A_full = la.vera_A["default"]
    assert A_full.shape == (32, 64) and lb.vera_A["default"] is A_full  # one pair, shared
    assert float(A_full[:, :16].abs().max()) <= (6 / 64) ** 0.5 < (6 / 16) ** 0.5
    own = VeRA(copy.deepcopy(narrow), r=32, seed=0)
    assert float(own.A.abs().max()) > (6 / 64) ** 0.5  # our own draw for this layer alone uses d_in = 16
    g = torch.Generator().manual_seed(0)
    randomize_peft_(model, g)
    x = torch.randn(3, 16, generator=g, dtype=torch.float64)
    ours_a, ours_b = from_peft(la), from_peft(lb)
    torch.testing.assert_close(ours_b(ours_a(x)), model(x), rtol=1e-12, atol=1e-12)
    assert ours_a.num_trainable() == 64 + 32 and ours_b.num_trainable() == 16 + 32
