"""Poly (Polytropon / MHR) against peft 0.21.2: per-task merging (peft's layer has none), the routing rule in eval and
in training, the init, and the task ids."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

peft = pytest.importorskip("peft")

from adapterspec.interop.equality import randomize_peft_, wrap  # noqa: E402
from adapterspec.interop.peft import from_peft  # noqa: E402
from adapterspec.methods.poly import Poly  # noqa: E402

D64 = torch.float64


def _pair(seed=0, **config):
    config = {"r": 2, "n_skills": 3, "n_splits": 2, "n_tasks": 3, **config}
    g = torch.Generator().manual_seed(seed)
    base = nn.Linear(24, 40)
    model, layer = wrap(base, peft.PolyConfig(target_modules=["proj"], **config))
    model = model.to(D64).eval()
    randomize_peft_(model, g)
    x = torch.randn(3, 5, 24, generator=g, dtype=D64)
    return layer, from_peft(layer).eval(), x


@pytest.mark.parametrize("task", [0, 1, 2])
def test_merged_for_one_task_equals_peft_on_that_task(task):
    """peft's Poly layer cannot merge; ours merges the routed LoRA of one task, and that merged layer computes what peft
    computes for a batch of that task."""
    layer, ours, x = _pair()
    ours.task = task
    with pytest.raises(NotImplementedError):
        layer.merge()
    ids = torch.full((3,), task)
    want = layer(x, task_ids=ids)
    torch.testing.assert_close(ours(x), want, rtol=1e-12, atol=1e-12)
    ours.merge()
    torch.testing.assert_close(ours(x), want, rtol=1e-12, atol=1e-12)
    with pytest.raises(RuntimeError, match="unmerge"):
        ours(x, task_ids=ids)
    ours.unmerge()
    torch.testing.assert_close(ours(x, task_ids=ids), want, rtol=1e-12, atol=1e-12)


def test_task_ids_matter_so_the_mixed_batch_comparison_can_fail():
    layer, ours, x = _pair()
    ids = torch.tensor([0, 1, 2])
    torch.testing.assert_close(ours(x, task_ids=ids), layer(x, task_ids=ids), rtol=1e-12, atol=1e-12)
    wrong = ours(x, task_ids=ids.flip(0))
    assert (wrong - layer(x, task_ids=ids)).abs().max() > 1e-4
    with pytest.raises(ValueError, match="task_ids should not be None"):
        layer(x)  # peft needs the ids; ours falls back to its `task`
    torch.testing.assert_close(ours(x), layer(x, task_ids=torch.zeros(3, dtype=torch.long)))


def test_eval_routing_is_sigmoid_normalised_and_differs_from_peft_only_by_its_epsilon():
    """peft divides σ(Z) by Σσ(Z) + 1e-12; ours by Σσ(Z): the weights agree to ~1e-12 relative, and sum to 1."""
    layer, ours, _ = _pair()
    router = layer.poly_router["default"]
    ids = torch.tensor([0, 1, 2])
    theirs = router(task_ids=ids, input_ids=None)  # (3, h, S)
    mine = ours.routing(ids)
    torch.testing.assert_close(mine.sum(-1), torch.ones(3, 2, dtype=D64), rtol=0, atol=1e-15)
    assert float((mine - theirs).detach().abs().max()) < 1e-11
    z = torch.sigmoid(ours.Z[ids])
    torch.testing.assert_close(theirs, z / (z.sum(-1, keepdim=True) + 1e-12), rtol=0, atol=1e-15)


def test_training_mode_samples_a_relaxed_bernoulli_in_peft_but_not_in_ours():
    """In train mode peft's router draws RelaxedBernoulli(temperature 1, logits Z) samples: two calls differ. Ours always
    computes the evaluation rule (the relaxation is training noise, like dropout)."""
    layer, ours, x = _pair()
    ids = torch.tensor([0, 1, 2])
    layer.train()
    ours.train()
    a, b = layer(x, task_ids=ids), layer(x, task_ids=ids)
    assert (a - b).abs().max() > 1e-6
    torch.testing.assert_close(ours(x, task_ids=ids), ours(x, task_ids=ids), rtol=0, atol=0)
    w = layer.poly_router["default"](task_ids=ids, input_ids=None)
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 2, dtype=D64))  # samples are normalised too


def test_init_matches_peft_in_distribution():
    """Both: B = 0 (identity), A uniform within 1/√(d_in/h) (Kaiming-uniform of each head's block), Z within ±1e-3."""
    base = nn.Linear(24, 40)
    _, layer = wrap(copy.deepcopy(base), peft.PolyConfig(target_modules=["proj"], r=4, n_skills=3, n_splits=2,
                                                          n_tasks=2))
    ours = Poly(copy.deepcopy(base), r=4, n_skills=3, n_splits=2, n_tasks=2)
    bound = 1 / (24 / 2) ** 0.5
    for A in (layer.poly_lora_A["default"], ours.A):
        assert float(A.abs().max()) <= bound and float(A.abs().max()) > 0.9 * bound
    assert not layer.poly_lora_B["default"].any() and not ours.B.any()
    for Z in (layer.poly_router["default"].module_logits, ours.Z):
        assert float(Z.abs().max()) <= 1e-3
    x = torch.randn(2, 5, 24)
    torch.testing.assert_close(ours(x), base(x))


def test_converted_count_and_formula():
    layer, ours, _ = _pair(r=4, n_skills=3, n_splits=4, n_tasks=5)
    peft_count = sum(p.numel() for n, p in layer.named_parameters() if "poly_" in n)
    assert ours.num_trainable() == peft_count == 3 * 4 * (24 + 40) + 5 * 4 * 3


def test_bad_hyperparameters_are_actionable():
    with pytest.raises(ValueError, match="n_splits must divide d_in and d_out"):
        Poly(nn.Linear(24, 40), n_splits=16)
    with pytest.raises(ValueError, match="task must be a task id"):
        Poly(nn.Linear(24, 40), n_tasks=2, task=2)
    with pytest.raises(ValueError, match="task_ids must lie in"):
        Poly(nn.Linear(24, 40), n_tasks=2)(torch.randn(2, 24), task_ids=torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="n_skills must be a positive integer"):
        Poly(nn.Linear(24, 40), n_skills=0)
