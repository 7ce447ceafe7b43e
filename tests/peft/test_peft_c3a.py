"""C3A: where peft 0.21.2 departs from the paper, and the structural claims of the C3A page, pinned down."""

from __future__ import annotations

import copy

import pytest
import torch

peft = pytest.importorskip("peft")

from adapterspec import ops  # noqa: E402
from adapterspec.interop.equality import wrap  # noqa: E402
from adapterspec.methods.c3a import C3A  # noqa: E402

D_IN, D_OUT = 24, 40


def _layer(dtype=torch.float64, **config):
    base = C3A.example_base(D_IN, D_OUT, torch.Generator().manual_seed(0), torch.float32)
    return wrap(base, peft.C3AConfig(target_modules=["proj"], **config))[0].to(dtype).base_model.model.proj


def _ours(layer, **options):
    """Our module with the peft layer's kernel (what the converter does)."""
    kernel = layer.c3a_kernel["default"]
    module = C3A(copy.deepcopy(layer.get_base_layer()), b=layer.block_size["default"], init="zeros", **options)
    with torch.no_grad():
        module.delta_w.copy_(kernel)
    return module


def test_defaults_do_not_start_at_the_identity():
    cfg = peft.C3AConfig(target_modules=["proj"])
    assert (cfg.block_size, cfg.init_weights) == (256, "xavier_uniform")
    bound = (6 / (D_IN + D_OUT)) ** 0.5  # Xavier with the whole layer's fans
    for init in ("xavier_uniform", False):  # False is Xavier too
        k = _layer(block_size=8, init_weights=init).c3a_kernel["default"]
        assert k.abs().max() > 0.5 * bound and k.abs().max() <= bound
    assert torch.equal(_layer(block_size=8, init_weights=True).c3a_kernel["default"].abs().sum(), torch.tensor(0.0,
                       dtype=torch.float64))  # True is the zero (identity) start
    ours = C3A(torch.nn.Linear(D_IN, D_OUT))
    assert ours.b == 8 and ours.init == "xavier_uniform" and ours.delta_w.abs().max() > 0  # gcd(24, 40)


def test_peft_blocks_are_the_papers_first_row_circulants_divided_by_d_in():
    layer = _layer(block_size=4)
    kernel = layer.c3a_kernel["default"].detach()  # (m, n, b)
    C = ops.circulant(kernel).transpose(-1, -2)  # first ROW Δw_ij, each row shifted right (Section 3.2)
    paper = C.permute(0, 2, 1, 3).reshape(D_OUT, D_IN)
    assert torch.allclose(layer.get_delta_weight("default") * D_IN, paper, rtol=0, atol=1e-6)
    not_transposed = ops.circulant(kernel).permute(0, 2, 1, 3).reshape(D_OUT, D_IN)  # ops.circulant: first column
    assert (layer.get_delta_weight("default") * D_IN - not_transposed).abs().max() > 1e-2
    exact = _ours(layer, scaling="paper")
    assert torch.allclose(exact.delta_weight(), paper, rtol=0, atol=1e-15)
    assert torch.allclose(_ours(layer, scaling="peft").delta_weight() * D_IN, paper, rtol=0, atol=1e-13)


def test_peft_computes_in_float32_and_its_own_merge_moves_float64_outputs():
    layer = _layer(block_size=4, init_weights="gaussian")
    x = torch.randn(2, 5, D_IN, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(1))
    y_peft = layer(x)
    same = _ours(layer, scaling="peft", precision="peft")
    assert torch.equal(same(x), y_peft)  # bit for bit
    exact = _ours(layer, scaling="peft")
    rel = float((exact(x) - y_peft).detach().abs().max() / y_peft.detach().abs().max())
    assert 1e-10 < rel < 1e-5  # float32 rounding inside peft, not a different formula
    W_same = same.merged_weight().detach().clone()
    layer.merge()
    assert torch.equal(layer.get_base_layer().weight, W_same)  # merged weights: bit for bit
    drift = float((layer(x) - y_peft).detach().abs().max() / y_peft.detach().abs().max())
    assert 1e-10 < drift < 1e-5  # peft's merged float64 layer ≠ its unmerged float32 path


def test_rank_is_the_sum_over_frequencies():
    """(I ⊗ F⁻¹) C_blk (I ⊗ F) has diagonal blocks diag(F Δw_ij): rank ΔW = Σ_k rank Λ_k, (Λ_k)_ij = (F Δw_ij)_k."""
    torch.manual_seed(3)
    module = C3A(torch.nn.Linear(D_IN, D_OUT, dtype=torch.float64), b=4).double()
    dW = module.delta_weight().detach()
    Lam = torch.fft.fft(module.delta_w.detach())  # (m, n, b): Λ_k = Lam[..., k]
    ranks = [int(torch.linalg.matrix_rank(Lam[..., k])) for k in range(module.b)]
    assert int(torch.linalg.matrix_rank(dW)) == sum(ranks) == min(D_IN, D_OUT)  # full rank from d_in·d_out/b numbers
    single = C3A(torch.nn.Linear(64, 64, dtype=torch.float64)).double()  # b = 64: one kernel, 64 numbers
    assert single.num_trainable() == 64 and int(torch.linalg.matrix_rank(single.delta_weight())) == 64
    with torch.no_grad():
        single.delta_w.sub_(single.delta_w.mean(-1, keepdim=True))  # zero-sum kernel: constant frequency vanishes
    assert int(torch.linalg.matrix_rank(single.delta_weight())) == 63


def test_efficient_forward_equals_the_dense_update():
    for b in (1, 2, 8):
        module = C3A(torch.nn.Linear(D_IN, D_OUT, dtype=torch.float64), b=b).double()
        x = torch.randn(3, 4, D_IN, dtype=torch.float64)
        dense = torch.nn.functional.linear(x, module.adapted_weight(module.base.weight), module.base.bias)
        assert torch.allclose(module(x), dense, rtol=0, atol=1e-13)
