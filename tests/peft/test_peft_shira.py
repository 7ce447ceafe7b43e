"""SHiRA: where peft 0.21.2 departs from the paper, pinned down (the SHiRA page's discrepancies)."""

from __future__ import annotations

import pytest
import torch

peft = pytest.importorskip("peft")

from adapterspec.interop.equality import wrap  # noqa: E402
from adapterspec.interop.peft import from_peft  # noqa: E402
from adapterspec.interop.peft import peft_config  # noqa: E402
from adapterspec.methods.shira import SHiRA  # noqa: E402

D_IN, D_OUT = 24, 40


def _layer(seed=0, **config):
    """peft's layer on a base drawn from ``seed``, with the global generator at ``seed`` while peft builds it."""
    base = SHiRA.example_base(D_IN, D_OUT, torch.Generator().manual_seed(seed), torch.float64)
    return wrap(base, peft_config("shira", target_modules=["proj"], **config), seed)[0].double().base_model.model.proj


def test_unseeded_peft_mask_is_always_the_same():
    """random_seed=None means torch.Generator() unseeded, which starts from a fixed seed: not a fresh mask per run."""
    a, b = _layer(seed=0, r=2), _layer(seed=1, r=2)
    assert torch.equal(a.shira_indices["default"], b.shira_indices["default"])
    ours = SHiRA(torch.nn.Linear(D_IN, D_OUT), r=2, seed=torch.Generator().initial_seed())  # 67280421310721
    assert torch.equal(ours.indices, a.shira_indices["default"].long())


def test_same_seed_same_mask_exact_count_row_major():
    layer = _layer(r=3, random_seed=42)
    idx = layer.shira_indices["default"].long()
    k = 3 * (D_IN + D_OUT)
    assert idx.shape == (2, k)  # exactly r (d_in + d_out) entries, not a Bernoulli draw
    flat = idx[0] * D_IN + idx[1]
    assert torch.equal(flat, flat.sort().values) and flat.unique().numel() == k  # distinct, row-major
    assert torch.equal(SHiRA(torch.nn.Linear(D_IN, D_OUT), r=3, seed=42).indices, idx)


def test_density_of_peft_sizing_depends_on_shape():
    r = 32
    density = {(d_out, d_in): r * (d_in + d_out) / (d_in * d_out) for d_out, d_in in [(4096, 4096), (1024, 3072)]}
    assert density[(4096, 4096)] == pytest.approx(0.0156, abs=1e-4)  # inside the paper's 1-2 %
    assert density[(1024, 3072)] == pytest.approx(0.0417, abs=1e-4)  # Llama-3.2-3B v_proj: 4 %


def test_weight_magnitude_mask_matches_peft_with_a_custom_mask_fn():
    layer = _layer(r=4, mask_type="weight_magnitude")
    ours = SHiRA(layer.get_base_layer(), r=4, mask_type="weight_magnitude")
    assert torch.equal(ours.indices, layer.shira_indices["default"].long())


def test_zero_init_unit_scale_and_set_scale_is_alpha():
    layer = _layer(r=2, random_seed=1)
    x = torch.randn(5, D_IN, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert layer.scaling["default"] == 1.0
    assert torch.equal(layer(x), layer.get_base_layer()(x))  # S = 0 at init
    with torch.no_grad():
        layer.shira_weight["default"].normal_()
    layer.set_scale("default", 0.3)
    ours = from_peft(layer)
    assert ours.alpha == 0.3
    assert torch.allclose(ours(x), layer(x), rtol=0, atol=1e-13)


def test_sparse_update_with_a_lora_budget_is_not_low_rank():
    """k = r (d_in + d_out) entries, the count of a rank-r LoRA, yet the update has (generically) full rank."""
    torch.manual_seed(0)
    ours = SHiRA(torch.nn.Linear(D_IN, D_OUT, dtype=torch.float64), r=2, seed=3)
    with torch.no_grad():
        ours.s.normal_()
    assert ours.num_trainable() == 2 * (D_IN + D_OUT)
    assert int(torch.linalg.matrix_rank(ours.delta_weight().detach())) == min(D_IN, D_OUT) > 2
