"""AdaLoRA: where peft 0.21.2 departs from the paper, pinned down (the AdaLoRA page's discrepancies), and the rank
schedule of the reference module run side by side with peft's ``RankAllocator`` on the same synthetic gradients."""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn

peft = pytest.importorskip("peft")

from adapterspec.interop.equality import wrap  # noqa: E402
from adapterspec.interop.peft import from_peft  # noqa: E402
from adapterspec.methods.adalora import AdaLoRA, allocate, budget, prune  # noqa: E402

F64 = torch.float64


def _layer(**config):
    config = {"total_step": 10, **config}
    model, layer = wrap(nn.Linear(24, 16, dtype=F64), peft.AdaLoraConfig(target_modules=["proj"], **config))
    model.double()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in (layer.lora_A["default"], layer.lora_B["default"], layer.lora_E["default"]):
            p.copy_(torch.randn(p.shape, generator=g, dtype=F64) * 0.5)
    return model, layer


def test_peft_scales_by_alpha_over_r_plus_1e5():
    """peft's update is lora_alpha / (init_r + 1e-5) · PΛQ; the paper's α/r is off by a relative 1e-5 / r."""
    _, layer = _layer(init_r=4, lora_alpha=8)
    ours = from_peft(layer)
    x = torch.randn(5, 24, dtype=F64)
    paper = AdaLoRA(nn.Linear(24, 16, dtype=F64), r=4, alpha=8.0)
    paper.base.load_state_dict(layer.get_base_layer().state_dict())
    with torch.no_grad():
        for mine, theirs in ((paper.P, ours.P), (paper.Lambda, ours.Lambda), (paper.Q, ours.Q)):
            mine.copy_(theirs)
        y_peft, y_ours, y_paper = layer(x), ours(x), paper(x)
    base = layer.get_base_layer()(x)
    assert ours.scaling == pytest.approx(8 / (4 + 1e-5), rel=1e-15) and paper.scaling == 2.0
    assert torch.allclose(y_ours, y_peft, rtol=0, atol=1e-13)
    rel = float((y_paper - y_peft).abs().max() / (y_peft - base).abs().max())
    assert rel == pytest.approx(1e-5 / 4, rel=1e-3)  # a real difference, seen by the float64 equality check


def test_peft_uses_r_when_lora_alpha_is_not_positive():
    _, layer = _layer(init_r=3, lora_alpha=0)
    assert layer.scaling["default"] == 3.0
    assert from_peft(layer).scaling == pytest.approx(3 / (3 + 1e-5), rel=1e-15)


def test_pruned_triplets_are_zeros_of_lambda_and_convert():
    """peft prunes by zeroing lora_E; the converted module has the same zeros and the same output, and the rank of
    its update drops to the number of triplets kept."""
    model, layer = _layer(init_r=6, target_r=2)
    with torch.no_grad():
        layer.lora_E["default"][[1, 4]] = 0.0
    ours = from_peft(layer)
    assert torch.equal(ours.Lambda == 0, torch.tensor([False, True, False, False, True, False]))
    x = torch.randn(3, 24, dtype=F64)
    with torch.no_grad():
        assert torch.allclose(ours(x), layer(x), rtol=0, atol=1e-13)
        assert int(torch.linalg.matrix_rank(ours.delta_weight())) == 4


def test_orthogonality_penalty_differs_from_eq4():
    """Eq. (4) is a sum of squared Frobenius norms; peft adds orth_reg_weight × the mean, over all lora_A and lora_B
    matrices, of the unsquared norms (with one layer: two matrices)."""

    class WithLoss(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(24, 16, dtype=F64)

        def forward(self, x):
            self.proj(x)
            return types.SimpleNamespace(loss=torch.zeros((), dtype=F64))

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = peft.get_peft_model(WithLoss(), peft.AdaLoraConfig(target_modules=["proj"], init_r=4, total_step=10,
                                                                    orth_reg_weight=0.3))
    model.double()
    layer = model.base_model.model.proj
    with torch.no_grad():
        for p in (layer.lora_A["default"], layer.lora_B["default"]):
            p.mul_(20.0)  # far from orthonormal, so that the two forms differ clearly
    penalty = float(model.base_model(torch.randn(2, 24, dtype=F64)).loss.detach())  # AdaLoraModel.forward
    ours = from_peft(layer)
    I = torch.eye(4, dtype=F64)
    P, Q = ours.P.detach(), ours.Q.detach()
    frob = [torch.linalg.matrix_norm(P.T @ P - I), torch.linalg.matrix_norm(Q @ Q.T - I)]
    assert penalty == pytest.approx(0.3 * float(sum(frob)) / 2, rel=1e-12)
    eq4 = float(ours.orthogonality_regularizer())
    assert eq4 == pytest.approx(float(sum(f**2 for f in frob)), rel=1e-12)
    assert abs(0.3 * eq4 - penalty) > 0.1 * penalty


def test_ties_with_the_threshold_are_pruned_as_in_peft():
    """Eq. (6) keeps the b top scores; peft (and `prune`) prune every score ≤ the (n − b)-th smallest, so a tie can
    keep fewer than b."""
    Lambda, S = torch.ones(4, dtype=F64), torch.tensor([1.0, 1.0, 2.0, 3.0], dtype=F64)
    assert prune(Lambda, S, 3).tolist() == [0.0, 0.0, 1.0, 1.0]
    threshold = torch.kthvalue(S, k=4 - 3)[0]  # what RankAllocator.mask_to_budget computes
    assert (S > threshold).tolist() == [False, False, True, True]


class ThreeLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(12, 10), nn.Linear(10, 14), nn.Linear(14, 8)

    def forward(self, x):
        return self.c(self.b(self.a(x)))


@pytest.mark.parametrize("tinit, tfinal, deltaT", [(2, 3, 1), (3, 4, 2), (0, 0, 3)])
def test_schedule_matches_peft_rank_allocator(tinit, tfinal, deltaT):
    """The same synthetic training run (each step every adapter tensor drifts and gets a random gradient) through
    peft's AdaLoraModel.update_and_allocate and through `allocate`: the same budget b(t) at every step, the same
    importance averages, and the same λ_i zeroed, through warm-up, the cubic decrease and the frozen final phase."""
    T, init_r, target_r, beta1, beta2 = 16, 4, 2, 0.85, 0.7
    config = peft.AdaLoraConfig(target_modules=["a", "b", "c"], init_r=init_r, target_r=target_r, tinit=tinit,
                                tfinal=tfinal, deltaT=deltaT, total_step=T, beta1=beta1, beta2=beta2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = peft.get_peft_model(ThreeLayers(), config).double()
    peft_layers = [model.base_model.model.a, model.base_model.model.b, model.base_model.model.c]
    ours = [from_peft(layer) for layer in peft_layers]
    allocator = model.base_model.rankallocator
    g = torch.Generator().manual_seed(1)
    pruned_some, n = False, len(ours)
    for t in range(1, T + 1):
        for layer, mine in zip(peft_layers, ours):
            for theirs, own, view in ((layer.lora_B["default"], mine.P, lambda v: v),
                                      (layer.lora_E["default"], mine.Lambda, lambda v: v.view(-1)),
                                      (layer.lora_A["default"], mine.Q, lambda v: v)):
                with torch.no_grad():  # an optimizer step, then the gradient: the same for both
                    theirs.add_(0.1 * torch.randn(theirs.shape, generator=g, dtype=F64))
                    own.copy_(view(theirs))
                theirs.grad = torch.randn(theirs.shape, generator=g, dtype=F64)
                own.grad = view(theirs.grad).clone()
        model.base_model.update_and_allocate(t)
        b = allocate(ours, t, b_T=target_r * n, t_i=tinit, t_f=tfinal, T=T, delta_T=deltaT, beta1=beta1, beta2=beta2)
        assert b == allocator.budget_schedule(t)[0], t
        if t < T - tfinal:  # peft resets its averages at T − t_f
            for layer, mine in zip(peft_layers, ours):
                keys = [k for k in allocator.exp_avg_ipt if k.startswith(_prefix(model, layer))]
                assert len(keys) == 3  # lora_A, lora_B, lora_E
                for key in keys:
                    own = {"lora_A": "Q", "lora_B": "P", "lora_E": "Lambda"}[key.split(".")[-2]]
                    assert torch.allclose(allocator.exp_avg_ipt[key].reshape(-1), mine.I_bar[own].reshape(-1),
                                          rtol=1e-12, atol=0)
                    assert torch.allclose(allocator.exp_avg_unc[key].reshape(-1), mine.U_bar[own].reshape(-1),
                                          rtol=1e-12, atol=0)
        for layer, mine in zip(peft_layers, ours):
            assert torch.equal(layer.lora_E["default"].view(-1), mine.Lambda.detach()), t
        pruned_some |= any(bool((mine.Lambda == 0).any()) for mine in ours)
    kept = sum(int((mine.Lambda != 0).sum()) for mine in ours)
    assert pruned_some and kept == target_r * n  # the final budget, reached and held


def _prefix(model, layer) -> str:
    return next(name for name, module in model.base_model.model.named_modules() if module is layer) + "."


def test_budget_curve_equals_peft_at_every_step():
    """Eq. (12) with peft's rounding, against RankAllocator.budget_schedule on a realistic schedule (the one of the
    peft benchmark run: 5,000 steps, t_i = 200, t_f = 500, 56 matrices of init_r 64 down to target_r 32)."""
    config = peft.AdaLoraConfig(target_modules=["a"], init_r=64, target_r=32, tinit=200, tfinal=500, total_step=5000)
    with torch.random.fork_rng(devices=[]):
        model = peft.get_peft_model(ThreeLayers(), config)
    allocator = model.base_model.rankallocator
    allocator.init_bgt, allocator.target_bgt = 56 * 64, 56 * 32
    for t in range(0, 5001, 7):
        assert budget(t, 56 * 64, 56 * 32, 200, 500, 5000) == allocator.budget_schedule(t)[0], t
