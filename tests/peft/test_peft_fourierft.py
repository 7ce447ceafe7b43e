"""FourierFT: where peft 0.21.2 departs from the paper, pinned down (the FourierFT page's discrepancies)."""

from __future__ import annotations

import math

import pytest
import torch

peft = pytest.importorskip("peft")

from adapterspec.interop.equality import wrap  # noqa: E402
from adapterspec.interop.peft import from_peft  # noqa: E402
from adapterspec.methods.fourierft import FourierFT  # noqa: E402

D_IN, D_OUT = 24, 40


def _layer(**config):
    base = FourierFT.example_base(D_IN, D_OUT, torch.Generator().manual_seed(0), torch.float64)
    return wrap(base, peft.FourierFTConfig(target_modules=["proj"], **config))[0].double().base_model.model.proj


def test_peft_defaults_differ_from_the_papers_and_do_not_start_at_identity():
    cfg = peft.FourierFTConfig(target_modules=["proj"])
    assert (cfg.n_frequency, cfg.scaling, cfg.random_loc_seed, cfg.init_weights) == (1000, 150.0, 777, False)
    ours = FourierFT(torch.nn.Linear(64, 64))
    assert (ours.n, ours.alpha) == (1000, 300.0)  # the paper's setting for E2E, LLaMA and ViT (Tables 10-12)
    layer = _layer(n_frequency=30)  # init_weights=False: c ~ N(0, 1), as in the paper
    assert layer.get_delta_weight("default").abs().max() > 1e-3
    assert torch.equal(_layer(n_frequency=30, init_weights=True).get_delta_weight("default"),
                       torch.zeros(D_OUT, D_IN, dtype=torch.float64))


def test_same_seed_same_entries_as_peft():
    layer = _layer(n_frequency=50, random_loc_seed=2024)
    ours = FourierFT(torch.nn.Linear(D_IN, D_OUT), n=50, seed=2024)
    assert torch.equal(ours.E, layer.indices["default"])  # (2, n): row = output frequency, column = input frequency


def test_peft_uses_the_normalised_inverse_dft_not_eq3():
    """Eq. 3 has no 1/(d1 d2); peft's ΔW is α Re(Σ F e^{+i…}) / (d_out d_in), with F laid out (d_out, d_in)."""
    layer = _layer(n_frequency=20, scaling=7.0)
    j, k = layer.indices["default"]
    c = layer.fourierft_spectrum["default"].detach()
    p = torch.arange(D_OUT, dtype=torch.float64)[:, None, None]
    q = torch.arange(D_IN, dtype=torch.float64)[None, :, None]
    S = (c * torch.exp(2j * math.pi * (p * j / D_OUT + q * k / D_IN))).sum(-1)  # Eq. 3 literally
    eq4 = 7.0 * S.real  # Eq. 4
    dW = layer.get_delta_weight("default")
    assert torch.allclose(dW * D_OUT * D_IN, eq4, rtol=1e-5, atol=1e-5 * float(eq4.abs().max()))


def test_peft_computes_float64_adapters_in_float32():
    layer = _layer(n_frequency=100, scaling=300.0)
    exact = from_peft(layer)
    assert exact.precision == "peft"
    x = torch.randn(6, D_IN, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y_peft = layer(x)
    assert torch.allclose(exact(x), y_peft, rtol=0, atol=1e-13)
    exact.precision = "exact"
    rel = float((exact(x) - y_peft).detach().abs().max() / y_peft.detach().abs().max())
    assert 1e-10 < rel < 1e-5  # float32 rounding inside peft, not a different formula


def test_every_update_is_even_under_index_negation():
    """Real coefficients and Re(·) keep only cosines: ΔW[−p, −q] = ΔW[p, q] (indices mod d), for peft and for us, so
    even the full spectrum (n = d_out d_in) reaches only about half of all matrices."""
    layer = _layer(n_frequency=D_OUT * D_IN, scaling=1.0)
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        layer.fourierft_spectrum["default"].normal_(generator=g)
    dW = layer.get_delta_weight("default").detach()
    mirrored = torch.roll(torch.flip(dW, [0, 1]), (1, 1), (0, 1))  # [p, q] ↦ [−p mod d_out, −q mod d_in]
    assert torch.allclose(mirrored, dW, atol=1e-6 * float(dW.abs().max()))
    ours = FourierFT(torch.nn.Linear(D_IN, D_OUT, dtype=torch.float64), n=D_OUT * D_IN, alpha=1.0)
    J = torch.autograd.functional.jacobian(lambda c: (ours.alpha * torch.fft.ifft2(
        torch.zeros(D_OUT, D_IN, dtype=torch.float64).index_put((ours.E[0], ours.E[1]), c)).real).flatten(),
        ours.c.detach())  # (d_out d_in, n): the linear map c ↦ ΔW
    # one dimension per mirror pair {(j, k), (−j, −k)}, plus one per self-mirrored entry (j, k ∈ {0, d/2}: 4 of them)
    assert int(torch.linalg.matrix_rank(J)) == (D_OUT * D_IN - 4) // 2 + 4


def test_efficient_forward_equals_the_dense_update():
    ours = FourierFT(torch.nn.Linear(D_IN, D_OUT, dtype=torch.float64), n=300, alpha=50.0).double()
    x = torch.randn(3, 4, D_IN, dtype=torch.float64)
    dense = torch.nn.functional.linear(x, ours.adapted_weight(ours.base.weight), ours.base.bias)
    assert torch.allclose(ours(x), dense, rtol=0, atol=1e-12)
