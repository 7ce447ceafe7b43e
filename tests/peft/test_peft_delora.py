"""DeLoRA against peft 0.21.2: where the paper's start differs from peft's (equality: tests/test_peft_equality.py)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

peft = pytest.importorskip("peft")

from adapterspec.interop.equality import wrap  # noqa: E402
from adapterspec.methods.delora import DeLoRA  # noqa: E402


def test_peft_start_is_b_zero_paper_start_is_a_cancelled_copy():
    base = nn.Linear(32, 24)
    cfg = peft.DeloraConfig(target_modules=["proj"], r=4)
    _, layer = wrap(copy.deepcopy(base), cfg)
    assert torch.count_nonzero(layer.delora_B["default"]) == 0  # peft: B = 0, no frozen copy
    torch.testing.assert_close(layer.delora_w_norm["default"], base.weight.detach().norm(dim=0))  # per input feature
    base64 = copy.deepcopy(base).double()  # float64: ΔW = W' − W0 is read off without float32 cancellation noise
    paper = DeLoRA(copy.deepcopy(base64), r=4)
    assert torch.count_nonzero(paper.B) == paper.B.numel()  # paper: B random, the initial update is subtracted
    x = torch.randn(5, 32, dtype=torch.float64)
    assert torch.equal(paper(x), base64(x))  # the two terms cancel exactly: identity at init
    assert torch.count_nonzero(paper.delta_weight()) == 0
    with torch.no_grad():
        paper.A.add_(0.1 * torch.randn_like(paper.A))
        paper.B.add_(0.1 * torch.randn_like(paper.B))  # (moving A alone keeps ΔW in B's column space: rank r)
    assert int(torch.linalg.matrix_rank(paper.delta_weight().detach())) == 2 * 4  # learned minus frozen copy


def test_peft_update_jumps_to_full_strength_after_one_step():
    """With B = 0 and norms floored at 1e-4, the first optimizer step gives every component its full strength λ/r."""
    torch.manual_seed(0)
    base = nn.Linear(256, 256)
    ratios = {}
    for init in ("peft", "paper"):
        module = DeLoRA(copy.deepcopy(base), r=8, lambda0=15.0, init=init)
        opt = torch.optim.AdamW(module.trainable_parameters().values(), lr=1e-3)
        x, target = torch.randn(32, 256), torch.randn(32, 256)
        ((module(x) - target) ** 2).mean().backward()
        opt.step()
        bound = 15.0 * float(module.w_norm.max())  # |λ| max_j ‖W0[:, j]‖ bounds the learned term
        ratios[init] = float(module.delta_weight().detach().norm()) / bound
    assert ratios["peft"] > 0.2 and ratios["paper"] < 0.1 * ratios["peft"]


def test_defaults_match_peft():
    cfg = peft.DeloraConfig()
    ours = DeLoRA(nn.Linear(16, 8))
    assert (cfg.r, cfg.delora_lambda) == (ours.r, ours.lambda0)
    assert ours.num_trainable() == ours.r * (16 + 8) + 1
