"""Pinned behaviour of peft 0.21.2's LN tuning layer that the LN tuning entry relies on."""

from __future__ import annotations

import pytest
import torch
from torch import nn

peft = pytest.importorskip("peft")

from adapterspec.interop.equality import randomize_peft_, wrap  # noqa: E402
from adapterspec.interop.peft import PeftConversionError, from_peft  # noqa: E402
from adapterspec.methods.ln_tuning import LNTuning  # noqa: E402


def _wrap(module: nn.Module, config=None) -> tuple[nn.Module, nn.Module]:
    """(peft model, tuner layer), under get_peft_model's defaults (autocast_adapter_dtype=True)."""
    return wrap(module, config or peft.LNTuningConfig(target_modules=["proj"]))


def _trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_peft_trains_a_full_copy_of_any_target_so_we_refuse_non_layernorms():
    """On an nn.Linear, peft's 'LN tuning' is full fine-tuning of that Linear; on an RMSNorm it tunes the gain only.
    Both are refused by the converter, which only converts nn.LayerNorm."""
    linear, layer = _wrap(nn.Linear(8, 6))
    assert _trainable(linear) == 8 * 6 + 6
    with pytest.raises(PeftConversionError, match="full fine-tuning"):
        from_peft(layer)
    assert isinstance(PeftConversionError("x"), ValueError)
    rms, layer = _wrap(nn.RMSNorm(8))
    assert _trainable(rms) == 8  # no shift β in an RMSNorm
    with pytest.raises(PeftConversionError, match="RMSNorm"):
        from_peft(layer)


def test_bias_free_layernorm_tunes_the_gain_only():
    g = torch.Generator().manual_seed(0)
    model, layer = _wrap(nn.LayerNorm(12, bias=False, dtype=torch.float64))
    randomize_peft_(model.eval(), g)  # the tuned gain, away from 1
    ours = from_peft(layer)
    assert ours.beta is None and ours.num_trainable() == _trainable(model) == 12
    x = torch.randn(3, 12, generator=g, dtype=torch.float64)
    torch.testing.assert_close(ours(x), layer(x), rtol=0, atol=1e-14)


def test_peft_does_not_upcast_the_tuned_copy_and_small_steps_vanish_in_bfloat16():
    """LNTuningModel._cast_adapter_dtype is a no-op: in a bf16 model the trainable gain stays bf16 (LoRA's factors
    are upcast to float32). An AdamW step of 1e-4 then cannot move a gain of 0.5, whose bf16 spacing is 2**-8."""
    ln = _wrap(nn.LayerNorm(8, dtype=torch.bfloat16))[1]  # autocast_adapter_dtype=True (peft's default)
    assert ln.ln_tuning_layers["default"].weight.dtype == torch.bfloat16
    lora = _wrap(nn.Linear(8, 8, dtype=torch.bfloat16), peft.LoraConfig(r=2, target_modules=["proj"]))[1]
    assert lora.lora_A["default"].weight.dtype == torch.float32

    gamma = nn.Parameter(torch.full((8,), 0.5, dtype=torch.bfloat16))
    opt = torch.optim.AdamW([gamma], lr=1e-4, weight_decay=0.1)
    for _ in range(50):
        gamma.grad = torch.ones_like(gamma)
        opt.step()
    assert torch.equal(gamma.detach(), torch.full((8,), 0.5, dtype=torch.bfloat16))  # 50 steps, no change at all


def test_merge_writes_the_tuned_gain_and_shift_into_the_norm():
    g = torch.Generator().manual_seed(0)
    module = LNTuning(LNTuning.example_base(10, 10, g, torch.float64))
    with torch.no_grad():
        module.gamma.mul_(1.5)
        module.beta.add_(0.3)
    x = torch.randn(4, 10, generator=g, dtype=torch.float64)
    y = module(x)
    module.merge()
    assert torch.equal(module.base.weight, module.gamma) and torch.equal(module.base.bias, module.beta)
    torch.testing.assert_close(module(x), y, rtol=0, atol=1e-14)


def test_example_base_is_square_only():
    with pytest.raises(ValueError, match="square"):
        LNTuning.example_base(8, 6, torch.Generator().manual_seed(0), torch.float64)
