"""PiSSA and (IA)³: peft 0.21.2 against the reference, where they differ or might be assumed to."""

from __future__ import annotations

import copy

import pytest
import torch

peft = pytest.importorskip("peft")

from adapterspec.interop.equality import wrap  # noqa: E402
from adapterspec.interop.peft import from_peft  # noqa: E402
from adapterspec.methods.ia3 import IA3  # noqa: E402
from adapterspec.methods.pissa import PiSSA  # noqa: E402


def _base(d_in=24, d_out=40):
    base = torch.nn.Linear(d_in, d_out)
    with torch.no_grad():  # the same weight whatever ran before (float32 singular vectors need clear gaps)
        base.weight.copy_(torch.randn(d_out, d_in, generator=torch.Generator().manual_seed(0)))
    return base


@pytest.mark.parametrize("alpha", [4, 16])
def test_pissa_init_matches_peft_up_to_singular_vector_signs(alpha):
    """Same split W = W_res + s·BA as peft (including peft's division of S by the scale s = α/r); our SVD fixes the
    sign of each singular pair, peft's does not, so A and B agree up to a sign per component and BA exactly."""
    base = _base()
    W = base.weight.detach().clone()
    ours = PiSSA(copy.deepcopy(base), r=4, alpha=alpha)
    _, layer = wrap(base, peft.LoraConfig(r=4, lora_alpha=alpha, target_modules=["proj"], init_lora_weights="pissa"))
    A, B = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    assert torch.allclose(ours.base.weight, layer.get_base_layer().weight, atol=1e-5)  # W_res
    assert torch.allclose(ours.B @ ours.A, B @ A, atol=1e-5)
    signs = torch.sign((ours.A * A).sum(dim=1))  # (r,) ±1 per singular pair
    assert torch.allclose(ours.A, signs[:, None] * A, atol=1e-5) and torch.allclose(ours.B, B * signs, atol=1e-5)
    assert torch.allclose(ours.merged_weight(), W, atol=1e-5)  # identity at init


def test_pissa_fast_svd_is_an_approximation():
    """peft's `pissa_niter_k` uses a randomised SVD: on a weight with a decaying spectrum (as pretrained weights have)
    its principal part is close to, but not equal to, the exact one; on a flat spectrum it can be far off."""
    base = _base()
    g = torch.Generator().manual_seed(0)
    U, _ = torch.linalg.qr(torch.randn(40, 24, generator=g))
    V, _ = torch.linalg.qr(torch.randn(24, 24, generator=g))
    with torch.no_grad():
        base.weight.copy_(U @ torch.diag(0.6 ** torch.arange(24.0)) @ V.T)
    exact = PiSSA(copy.deepcopy(base), r=4, alpha=4)
    # the randomised SVD draws from the global generator, which wrap() seeds
    config = peft.LoraConfig(r=4, lora_alpha=4, target_modules=["proj"], init_lora_weights="pissa_niter_4")
    _, layer = wrap(base, config)
    fast = from_peft(layer, method="pissa")
    gap = (fast.B @ fast.A - exact.B @ exact.A).abs().max() / (exact.B @ exact.A).abs().max()
    assert 1e-7 < gap < 0.05


def test_ia3_unmerge_in_peft_is_approximate_ours_is_exact():
    """peft unmerges by dividing by l + 1e-8; adapterspec restores the kept frozen weight bit for bit."""
    _, layer = wrap(_base(), peft.IA3Config(target_modules=["proj"], feedforward_modules=[]))
    with torch.no_grad():
        layer.ia3_l["default"].uniform_(0.5, 1.5)
    W0 = layer.get_base_layer().weight.detach().clone()
    ours = from_peft(layer)
    layer.merge()
    with pytest.warns(UserWarning, match="inaccurate"):  # peft says so itself
        layer.unmerge()
    ours.merge()
    ours.unmerge()
    assert not torch.equal(layer.get_base_layer().weight, W0)
    assert torch.equal(ours.base.weight, W0)
    assert isinstance(ours, IA3)
