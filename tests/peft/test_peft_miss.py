"""MiSS against peft 0.21.2: the storage convention, the tiling rule (also for a width r does not divide), the mini
mode, and which MissLinear modes convert to which entry."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

peft = pytest.importorskip("peft")

from adapterspec.interop.equality import randomize_peft_, wrap  # noqa: E402
from adapterspec.interop.peft import PeftConversionError, converters, from_peft  # noqa: E402
from adapterspec.methods.miss import MiSS  # noqa: E402


def _layer(d_in: int, d_out: int, **kwargs):
    g = torch.Generator().manual_seed(0)
    model, layer = wrap(MiSS.example_base(d_in, d_out, g, torch.float64),
                        peft.MissConfig(target_modules=["proj"], **kwargs))
    randomize_peft_(model, g)
    return layer


@pytest.mark.parametrize("d_in, r", [(24, 8), (23, 5)])
def test_update_tiles_the_transposed_block_over_input_chunks(d_in, r):
    """peft's miss_block is Dᵀ (r, d_out); ΔW[:, j] = D[:, j mod r] for every j, including a zero-padded last chunk."""
    layer = _layer(d_in, 10, r=r)
    block = layer.miss_block["default"]
    assert block.shape == (r, 10)
    ours = from_peft(layer)
    assert torch.equal(ours.D, block.T)
    expected = block.T[:, torch.arange(d_in) % r]  # (d_out, d_in)
    torch.testing.assert_close(ours.delta_weight(), expected, rtol=0, atol=1e-14)
    assert int(torch.linalg.matrix_rank(ours.delta_weight())) == min(r, 10)
    x = torch.randn(3, d_in, dtype=torch.float64)
    torch.testing.assert_close(ours(x), layer(x), rtol=0, atol=1e-12)


def test_mini_reuses_rows_cyclically_and_equals_default_when_mini_r_is_d_out():
    layer = _layer(16, 12, r=4, init_weights="mini", mini_r=3)
    ours = from_peft(layer)
    assert ours.mini_r == 3 and ours.D.shape == (3, 4) and ours.num_trainable() == 12
    dW = ours.delta_weight()
    shard = ours.output_shard()  # (d_out, r): neuron o uses row o mod 3
    assert torch.equal(shard[0], shard[3]) and torch.equal(shard[1], shard[10])
    torch.testing.assert_close(dW, shard[:, torch.arange(16) % 4], rtol=0, atol=1e-14)
    assert int(torch.linalg.matrix_rank(dW)) == 3
    full = MiSS(copy.deepcopy(ours.base), r=4, mini_r=12)
    plain = MiSS(copy.deepcopy(ours.base), r=4)
    with torch.no_grad():
        full.D.normal_()
        plain.D.copy_(full.D)
    torch.testing.assert_close(full.delta_weight(), plain.delta_weight(), rtol=0, atol=0)


def test_peft_default_mini_r_of_one_gives_a_rank_one_update():
    """MissConfig.mini_r defaults to 1: init_weights="mini" alone moves every output neuron by the same row."""
    ours = from_peft(_layer(16, 12, r=4, init_weights="mini"))
    assert ours.mini_r == 1 and int(torch.linalg.matrix_rank(ours.delta_weight())) == 1


def test_zero_init_is_identity_and_bat_mode_goes_to_bone():
    base = nn.Linear(16, 12)
    assert not MiSS(copy.deepcopy(base), r=4).delta_weight().any()
    layer = _layer(16, 12, r=4, init_weights="bat")
    assert not converters()["miss"].matches(layer, "default")
    with pytest.raises(PeftConversionError, match="bone"):
        converters()["miss"].convert(layer, copy.deepcopy(layer.get_base_layer()), "default")


def test_invalid_hyperparameters_are_refused():
    with pytest.raises(ValueError, match="d_in"):
        MiSS(nn.Linear(8, 6), r=9)
    with pytest.raises(ValueError, match="divide d_out"):
        MiSS(nn.Linear(8, 6), r=2, mini_r=4)
