"""BOFT: where peft 0.21.2 departs from the paper, pinned down (the BOFT page's discrepancies)."""

from __future__ import annotations

import pytest
import torch

peft = pytest.importorskip("peft")

from peft.tuners.boft import layer as boft_layer  # noqa: E402

from adapterspec.interop.equality import wrap  # noqa: E402
from adapterspec.interop.peft import from_peft  # noqa: E402
from adapterspec.interop.peft.boft import TorchBlockDiag, peft_config  # noqa: E402
from adapterspec.methods.boft import BOFT  # noqa: E402

DT = torch.float64


def _boft_layer(scale: float = 0.3, **config):
    model, layer = wrap(torch.nn.Linear(32, 12, dtype=DT), peft_config(target_modules=["proj"], **config))
    model.double().eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        A = layer.boft_R["default"]
        A.copy_(torch.randn(A.shape, generator=g, dtype=DT) * scale)
    return layer


def _paper_boft(layer, sign: float) -> BOFT:
    """The paper's BOFT (no scale) with Q = sign · (A − Aᵀ)/2 from peft's stored A."""
    A = layer.boft_R["default"].detach()
    m, _, b, _ = A.shape
    module = BOFT(torch.nn.Linear(32, 12, dtype=DT), b=b, m=m, full_skew=True)
    module.base.load_state_dict(layer.get_base_layer().state_dict())
    with torch.no_grad():
        module.q.copy_(sign * A.flatten(-2))
    return module


def test_peft_cayley_is_the_papers_map_of_minus_S():
    layer = _boft_layer(boft_block_size=4, boft_n_butterfly_factor=2)  # boft_s is still 1: only the rotation
    x = torch.randn(5, 32, dtype=DT)
    with torch.no_grad():
        y_peft = layer(x)
        assert torch.allclose(_paper_boft(layer, -1.0)(x), y_peft, atol=1e-12)  # (I − S)(I + S)⁻¹ = cayley(−S)
        assert (_paper_boft(layer, 1.0)(x) - y_peft).abs().max() > 1e-2  # the paper's sign: the inverse rotation


def test_peft_scale_changes_neuron_norms_but_not_angles():
    layer = _boft_layer(boft_block_size=4, boft_n_butterfly_factor=3)
    with torch.no_grad():
        layer.boft_s["default"].copy_(1 + 0.5 * torch.rand(12, 1, generator=torch.Generator().manual_seed(1)))
    ours = from_peft(layer)
    W0, W = ours.base.weight, ours.merged_weight().detach()
    assert (W @ W.T - W0 @ W0.T).abs().max() > 1e-2  # neuron Gram matrix not kept
    cos = lambda M: (M / M.norm(dim=1, keepdim=True)) @ (M / M.norm(dim=1, keepdim=True)).T  # noqa: E731
    assert torch.allclose(cos(W), cos(W0), atol=1e-12)  # angles between neurons kept
    paper = _paper_boft(layer, -1.0)  # the same rotation without s keeps the neuron Gram matrix
    Wp = paper.merged_weight().detach()
    assert torch.allclose(Wp @ Wp.T, W0 @ W0.T, atol=1e-12)
    assert (Wp.T @ Wp - W0.T @ W0).abs().max() > 1e-2  # an input-side rotation does not keep W'ᵀW'


def test_peft_parameter_count_doubles_the_papers():
    layer = _boft_layer(boft_block_size=8, boft_n_butterfly_factor=2)
    count = sum(p.numel() for p in layer.parameters() if p.requires_grad)
    assert count == 2 * 32 * 8 + 12  # m · d · b + d_out
    assert BOFT(torch.nn.Linear(32, 12), b=8, m=2).num_trainable() == 2 * 32 * 7 // 2  # ½(b − 1) d m


def test_without_the_cuda_kernel_peft_silently_keeps_one_factor(monkeypatch):
    """What peft does on a machine where ``fbd_cuda`` cannot be built (every CPU-only machine): warn, then m = 1."""
    monkeypatch.setattr(boft_layer, "get_fbd_cuda", lambda: None)  # the branch taken when the build fails
    model, layer = wrap(torch.nn.Linear(32, 12), peft.BOFTConfig(target_modules=["proj"], boft_block_size=4,
                                                                  boft_n_butterfly_factor=3))
    assert layer.boft_R["default"].shape[0] == 1  # asked for 3 factors, got OFT
    assert from_peft(layer).m == 1


def test_peft_pure_torch_branch_cannot_build_several_factors():
    layer = _boft_layer(boft_block_size=4, boft_n_butterfly_factor=2)
    layer.fbd_cuda_available = False  # peft's non-CUDA code path, on a layer that has two factors
    with pytest.raises(RuntimeError):
        layer(torch.randn(2, 32, dtype=DT))


def test_torch_stand_in_computes_what_the_kernel_computes():
    x = torch.randn(3, 5, 4, 4, dtype=DT, requires_grad=True)
    (out,) = TorchBlockDiag.forward(x)
    expected = torch.stack([torch.block_diag(*x[n]) for n in range(3)])
    assert torch.equal(out, expected)
    g = torch.randn_like(out)
    (grad,) = TorchBlockDiag.backward(g, x)
    (auto,) = torch.autograd.grad(expected, x, g)
    assert torch.equal(grad, auto)


def test_peft_multiplicative_dropout_only_acts_in_training():
    layer = _boft_layer(boft_block_size=4, boft_n_butterfly_factor=2, boft_dropout=0.5)
    x = torch.randn(4, 32, dtype=DT)
    ours = from_peft(layer)
    with torch.no_grad():
        assert torch.allclose(layer(x), ours(x), atol=1e-12)  # eval: no dropout
        layer.train()
        torch.manual_seed(0)
        assert (layer(x) - ours(x)).abs().max() > 1e-6  # training: some blocks set to I
