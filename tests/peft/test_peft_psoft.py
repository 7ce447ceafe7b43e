"""PSOFT: where peft 0.21.2 departs from (or adds to) the paper, pinned down (the PSOFT page's discrepancies)."""

from __future__ import annotations

import pytest
import torch

peft = pytest.importorskip("peft")

from adapterspec.interop.equality import randomize_peft_, wrap  # noqa: E402
from adapterspec.interop.peft import from_peft  # noqa: E402
from adapterspec.methods.psoft import PSOFT  # noqa: E402


def _layer(**config):
    base = torch.nn.Linear(24, 16)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        base.weight.copy_(torch.randn(16, 24, generator=g) / 24**0.5)
        base.bias.copy_(torch.randn(16, generator=g) * 0.1)
    model, layer = wrap(base, peft.PsoftConfig(target_modules=["proj"], **config))
    model.double()
    randomize_peft_(model, torch.Generator().manual_seed(1))
    return model, layer


def test_psoft_alpha_does_not_change_the_layer():
    """peft's factors carry 1/s and the update is multiplied by s: psoft_alpha cancels, in outputs and gradients."""
    x = torch.randn(4, 24, dtype=torch.float64)
    outs, grads = [], []
    for alpha in (1, 8, 64):
        model, layer = _layer(r=6, psoft_alpha=alpha)
        y = layer(x)
        y.pow(2).sum().backward()
        outs.append(y.detach())
        grads.append(layer.psoft_R["default"].weight.grad.clone())
    for y, g in zip(outs[1:], grads[1:]):
        assert torch.allclose(y, outs[0], rtol=1e-6, atol=1e-6)  # peft's SVD runs in float32
        assert torch.allclose(g, grads[0], rtol=1e-4, atol=1e-6)
    assert (outs[0] - layer.get_base_layer()(x)).abs().max() > 1e-2


def test_peft_rotation_is_the_transposed_papers_cayley_map():
    """Paper (d × n layout): R_p = (I − Q)(I + Q)⁻¹. peft and the reference module use R_pᵀ = (I + Q)(I − Q)⁻¹ with the
    same Q, which is the paper's map in the (d_out, d_in) layout: no sign flip (unlike peft's OFT)."""
    _, layer = _layer(r=5, psoft_mag_a=False, psoft_mag_b=False)
    rot = layer.psoft_R["default"]
    ours = from_peft(layer)
    with torch.no_grad():
        Q = ours.symbols()["Q"]
        I = torch.eye(5, dtype=torch.float64)
        R_paper = (I - Q) @ torch.linalg.inv(I + Q)
        assert torch.allclose(rot.get_matrix(), R_paper.T, atol=1e-12)
        assert torch.allclose(ours.rotation(), R_paper.T, atol=1e-12)


def test_vector_a_is_alpha_next_to_A():
    """vector_a scales the A side (input side of R), vector_b the B side: M = diag(β) R diag(α)."""
    _, layer = _layer(r=4)
    rot = layer.psoft_R["default"]
    ours = from_peft(layer)
    with torch.no_grad():
        assert torch.equal(ours.alpha, rot.vector_a) and torch.equal(ours.beta, rot.vector_b)
        M = rot.vector_b[:, None] * ours.rotation() * rot.vector_a[None, :]
        assert torch.allclose(ours.core(), M, atol=1e-12)
        assert not torch.allclose(rot.vector_a, rot.vector_b)  # the test could tell them apart


def test_peft_default_is_exact_cayley_unlike_the_papers_experiments():
    """The paper's experiments use the Neumann series (Section 5); peft's default solves exactly."""
    config = peft.PsoftConfig(target_modules=["proj"])
    assert config.use_cayley_neumann is False and config.num_cayley_neumann_terms == 5
    _, exact = _layer(r=6)
    _, series = _layer(r=6, use_cayley_neumann=True)
    R_exact, R_series = exact.psoft_R["default"].get_matrix(), series.psoft_R["default"].get_matrix()
    I = torch.eye(6, dtype=torch.float64)
    assert from_peft(exact).k == 0 and from_peft(series).k == 3
    with torch.no_grad():
        exact_r, series_r = from_peft(exact).rotation(), from_peft(series).rotation()
        assert (exact_r.T @ exact_r - I).abs().max() < 1e-12
        assert (series_r.T @ series_r - I).abs().max() > 1e-8  # only approximately orthogonal
    assert R_exact.shape == R_series.shape


def test_lowrank_svd_init_converts_with_peft_factors():
    """psoft_svd='lowrank' uses randomised factors: the converter copies them, so the layer still matches, but the
    update then lives in the randomised subspace, not in W0's exact top-r one."""
    _, layer = _layer(r=6, psoft_svd="lowrank", psoft_svd_lowrank_niter=1)
    ours = from_peft(layer)
    x = torch.randn(3, 24, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(ours(x), layer(x), atol=1e-6)
        exact = PSOFT(torch.nn.Linear(24, 16, dtype=torch.float64), r=6)
        exact.base.weight.copy_(layer.get_base_layer().weight)
        exact.reset_parameters()
        gap = (ours.A.T @ ours.A - exact.A.T @ exact.A).abs().max()  # projectors onto the two subspaces
    assert gap > 1e-4
