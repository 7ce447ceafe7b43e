"""Pinned differences between the LoKr reference module (LyCORIS's Eq. 4-5) and peft 0.21.2's LoKr layer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

peft = pytest.importorskip("peft")

from peft.tuners.lokr.layer import factorization  # noqa: E402

from adapterspec.interop.equality import wrap  # noqa: E402
from adapterspec.interop.peft import from_peft  # noqa: E402
from adapterspec.methods.lokr import LoKr, kron_split  # noqa: E402


def _peft_layer(d_in=24, d_out=40, **config):
    return wrap(nn.Linear(d_in, d_out), peft.LoKrConfig(target_modules=["proj"], **config))[1].eval()


def test_factorization_agrees_with_eq5_except_when_factor_divides_and_exceeds_sqrt():
    for p in range(1, 400):
        for f in [-1, *range(1, 40)]:
            ours = kron_split(p, f)
            theirs = factorization(p, f)
            if f > 0 and p % f == 0 and f * f > p:
                assert theirs == (f, p // f) and ours != f  # peft: the "small" block is the larger one
            else:
                assert theirs == (ours, p // ours)
    assert factorization(64, 16) == (16, 4) and kron_split(64, 16) == 8
    assert [factorization(d) for d in (4096, 3072, 11008, 127)] == [(64, 64), (48, 64), (86, 128), (1, 127)]


def test_converter_follows_peft_split_when_it_differs_from_eq5():
    layer = _peft_layer(d_in=24, d_out=40, r=2, decompose_factor=8)  # 8 divides 24 and 40 and exceeds both roots
    ours = from_peft(layer)
    assert (ours.u_p, ours.u_q) == (8, 8) != (kron_split(40, 8), kron_split(24, 8)) == (5, 4)


def test_init_which_block_is_zero():
    default, lycoris = _peft_layer(r=1), _peft_layer(r=1, init_weights="lycoris")
    assert torch.count_nonzero(default.lokr_w1["default"]) == 0  # C
    assert all(torch.count_nonzero(getattr(default, n)["default"]) > 0 for n in ("lokr_w2_a", "lokr_w2_b"))
    assert torch.count_nonzero(lycoris.lokr_w2_b["default"]) == 0  # A
    assert torch.count_nonzero(lycoris.lokr_w1["default"]) > 0
    ours_c, ours_r = LoKr(nn.Linear(24, 40), r=1), LoKr(nn.Linear(24, 40), r=1, zero_block="R")
    assert torch.count_nonzero(ours_c.C) == 0 and torch.count_nonzero(ours_r.A) == 0


def test_only_C_gets_a_gradient_at_peft_init():
    ours = LoKr(nn.Linear(24, 40, dtype=torch.float64), r=1)
    ours(torch.randn(5, 24, dtype=torch.float64)).pow(2).sum().backward()
    assert ours.C.grad.abs().max() > 0
    assert float(ours.B.grad.abs().max()) == 0.0 and float(ours.A.grad.abs().max()) == 0.0


def test_peft_scales_by_alpha_over_r_even_with_no_factored_block():
    # Both blocks full (2r ≥ every side): r is not a rank here, yet peft divides by it; the LyCORIS repository uses 1.
    layer = _peft_layer(r=8, alpha=2)
    assert "default" in layer.lokr_w1 and "default" in layer.lokr_w2
    assert layer.scaling["default"] == 2 / 8
    assert from_peft(layer).scaling == 2 / 8


def test_rank_is_multiplicative():
    g = torch.Generator().manual_seed(0)
    C = torch.randn(4, 2, generator=g, dtype=torch.float64) @ torch.randn(2, 5, generator=g, dtype=torch.float64)
    R = torch.randn(6, 3, generator=g, dtype=torch.float64) @ torch.randn(3, 8, generator=g, dtype=torch.float64)
    assert int(torch.linalg.matrix_rank(torch.kron(C, R))) == 2 * 3
