"""VB-LoRA against peft 0.21.2: where paper, peft and reference differ (equality: tests/test_peft_equality.py)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

peft = pytest.importorskip("peft")

from adapterspec.interop.equality import wrap  # noqa: E402
from adapterspec.methods.vblora import VBLoRA  # noqa: E402


def _cfg(target_modules=("proj",)):
    return peft.VBLoRAConfig(target_modules=list(target_modules), r=2, num_vectors=5, vector_length=4)


def test_same_seed_same_init_as_peft():
    """Bank, then logits_A, then logits_B from the global generator, as peft draws them for one targeted layer."""
    base = nn.Linear(16, 8)
    _, layer = wrap(copy.deepcopy(base), _cfg(), seed=3)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        ours = VBLoRA(copy.deepcopy(base), r=2, h=5, b=4, k=2)
    assert torch.equal(layer.vblora_vector_bank["default"], ours.vector_bank)
    assert torch.equal(layer.vblora_logits_A["default"], ours.logits_A)
    assert torch.equal(layer.vblora_logits_B["default"], ours.logits_B)


def test_bank_shared_per_model_logits_per_layer():
    """peft counts one bank for the model; each of our single-layer modules holds its own."""
    pm, two = wrap(nn.Sequential(nn.Linear(16, 8), nn.Linear(8, 24)), _cfg(["proj.0", "proj.1"]))
    assert two[0].vblora_vector_bank is two[1].vblora_vector_bank
    n_peft = sum(p.numel() for p in pm.parameters() if p.requires_grad)
    ours = [VBLoRA(nn.Linear(16, 8), r=2, h=5, b=4), VBLoRA(nn.Linear(8, 24), r=2, h=5, b=4)]
    bank = 5 * 4
    assert n_peft == sum(m.num_trainable() for m in ours) - bank  # h·b once + h·r·(d_in + d_out)/b per layer


def test_defaults_paper_vs_peft():
    cfg = peft.VBLoRAConfig()
    ours = VBLoRA(nn.Linear(512, 256))
    # peft's defaults are the module's: r=4, h=256, b=256, k=2, bank U(±0.02), logits std 0.1 (the paper's
    # "N(0, 0.01)" read as a variance)
    assert (cfg.r, cfg.num_vectors, cfg.vector_length, cfg.topk) == (ours.r, ours.h, ours.b, ours.k)
    assert (cfg.init_vector_bank_bound, cfg.init_logits_std) == (ours.init_bank_bound, ours.init_logits_std)
    # VB-LoRA is not the identity at init: the bank is non-zero, so BA is a small random rank-r matrix
    A, B = (f.detach().double() for f in ours.factors())
    assert 0 < float((B @ A).abs().max()) < 1e-2
    assert int(torch.linalg.matrix_rank(B @ A)) == ours.r  # (W0 + BA) − W0 in float32 would add rounding noise


def test_peft_stores_indices_as_int16_at_the_default_bank_size():
    """The paper counts uint8 indices for h ≤ 256; peft switches to int16 at h = 256 (num_vectors < 2**8 for uint8)."""
    for h, dtype in ((255, torch.uint8), (256, torch.int16)):
        cfg = peft.VBLoRAConfig(target_modules=["proj"], r=2, num_vectors=h, vector_length=4,
                                save_only_topk_weights=True)
        pm, _ = wrap(nn.Linear(16, 8), cfg)
        sd = peft.get_peft_model_state_dict(pm)
        (key,) = [k for k in sd if k.endswith("vblora_logits_A_topk_indices")]
        assert sd[key].dtype == dtype
