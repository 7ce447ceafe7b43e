"""Pinned differences between the LoHa reference module and peft 0.21.2's LoHa layer."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

peft = pytest.importorskip("peft")

from adapterspec.interop.equality import randomize_peft_, wrap  # noqa: E402
from adapterspec.interop.peft import from_peft  # noqa: E402
from adapterspec.methods.loha import LoHa  # noqa: E402


def _peft(**config):
    """A float64 peft LoHa model on a seeded 24 → 40 base, and its layer."""
    base = LoHa.example_base(24, 40, torch.Generator().manual_seed(0), torch.float32)
    model, layer = wrap(base, peft.LoHaConfig(target_modules=["proj"], **config))
    return model.double().eval(), layer


def test_peft_zeroes_A2_only():
    _, layer = _peft(r=4, alpha=2)
    assert torch.count_nonzero(layer.hada_w2_b["default"]) == 0  # A2
    for name in ("hada_w1_a", "hada_w1_b", "hada_w2_a"):  # B1, A1, B2
        assert torch.count_nonzero(getattr(layer, name)["default"]) > 0
    ours = LoHa(nn.Linear(24, 40), r=4, alpha=2)
    assert torch.count_nonzero(ours.A2) == 0 and all(torch.count_nonzero(p) > 0 for p in (ours.B1, ours.A1, ours.B2))


def test_only_A2_gets_a_gradient_at_init():
    ours = LoHa(nn.Linear(24, 40, dtype=torch.float64), r=3, alpha=3)
    ours(torch.randn(5, 24, dtype=torch.float64)).pow(2).sum().backward()
    assert ours.A2.grad.abs().max() > 0
    assert all(float(p.grad.abs().max()) == 0.0 for p in (ours.B1, ours.A1, ours.B2))


def test_defaults_differ_lycoris_vs_peft():
    # Our defaults are LyCORIS's (dimension 4, alpha 2 → scale 0.5); peft's are r=8, alpha=8 → scale 1.
    ours = LoHa(nn.Linear(24, 40))
    cfg = peft.LoHaConfig()
    assert (ours.r, ours.alpha, ours.scaling) == (4, 2.0, 0.5)
    assert (cfg.r, cfg.alpha) == (8, 8)


def test_peft_rounds_the_scale_to_float32():
    model, layer = _peft(r=3, alpha=1)
    g = torch.Generator().manual_seed(0)
    randomize_peft_(model, g)
    ours = from_peft(layer)
    assert ours.scaling == float(torch.tensor(1 / 3)) != 1 / 3  # float32-rounded, as peft applies it
    x = torch.randn(4, 24, generator=g, dtype=torch.float64)
    exact = copy.deepcopy(ours)
    exact.scaling = 1 / 3
    with torch.no_grad():
        y, y_ours = layer(x), ours(x)
        assert float((y_ours - y).abs().max() / y.abs().max()) < 1e-12
        delta = (exact(x) - y_ours).abs().max() / (y_ours - layer.get_base_layer()(x)).abs().max()
    assert 1e-9 < float(delta) < 1e-7  # the exact scale differs from peft's by the float32 rounding (~3e-8 relative)
