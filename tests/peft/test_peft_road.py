"""RoAd: where peft 0.21.2 departs from the paper, and the structural claims of the RoAd page, pinned down."""

from __future__ import annotations

import copy

import pytest
import torch

peft = pytest.importorskip("peft")

from adapterspec.interop.equality import randomize_peft_, wrap  # noqa: E402
from adapterspec.interop.peft import from_peft  # noqa: E402
from adapterspec.methods.road import RoAd  # noqa: E402

D_IN, D_OUT = 24, 40


def _layer(**config):
    """The peft layer with its trainable θ and α moved away from the identity (θ = 0, α = 1)."""
    g = torch.Generator().manual_seed(0)
    base = RoAd.example_base(D_IN, D_OUT, g, torch.float64)
    model, layer = wrap(base, peft.RoadConfig(target_modules=["proj"], **config))
    randomize_peft_(model.double(), g)
    return layer


def test_defaults():
    cfg = peft.RoadConfig(target_modules=["proj"])
    assert (cfg.variant, cfg.group_size, cfg.init_weights) == ("road_1", 64, True)
    ours = RoAd(torch.nn.Linear(8, 64))
    assert (ours.variant, ours.group_size) == (1, 2)  # RoAd_1 with the paper's adjacent pairs
    assert torch.equal(ours.rotation(), torch.eye(64))  # alpha = 1, theta = 0


def test_group_size_2_is_the_papers_adjacent_pairing():
    """Eq. 4: z = (α cos θ) ⊗ h + (α sin θ) ⊗ (−h2, h1, −h4, h3, …), each (α_i, θ_i) repeated over its pair."""
    layer = _layer(variant="road_1", group_size=2)
    theta, alpha = layer.road_theta["default"].detach(), layer.road_alpha["default"].detach()
    x = torch.randn(7, D_IN, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    h = layer.get_base_layer()(x)  # bias included
    h_hat = torch.stack((-h[:, 1::2], h[:, 0::2]), dim=-1).flatten(-2)
    R1 = (alpha * theta.cos()).repeat_interleave(2)
    R2 = (alpha * theta.sin()).repeat_interleave(2)
    assert torch.allclose(layer(x), R1 * h + R2 * h_hat, rtol=0, atol=1e-13)


@pytest.mark.parametrize("g", [4, 8, 40])
def test_peft_half_split_is_the_paper_layout_up_to_a_permutation(g):
    """peft pairs j with j + g/2 inside each group of g: R_peft = P R_paper Pᵀ for a fixed permutation P."""
    ours_g = from_peft(_layer(variant="road_4", group_size=g))
    paper = RoAd(copy.deepcopy(ours_g.base), variant=4, group_size=2).double()
    with torch.no_grad():
        paper.theta.copy_(ours_g.theta)
        paper.alpha.copy_(ours_g.alpha)
    n = D_OUT // 2
    i = torch.arange(n)
    p = (i // (g // 2)) * g + i % (g // 2)
    order = torch.stack((p, p + g // 2), 1).flatten()  # paper coordinate 2i ↦ p_i, 2i+1 ↦ q_i
    P = torch.eye(D_OUT, dtype=torch.float64)[order].T  # P e_{2i} = e_{p_i}
    assert torch.allclose(ours_g.rotation(), P @ paper.rotation() @ P.T, rtol=0, atol=1e-15)


def test_bias_is_rotated_and_peft_unmerge_is_not_exact():
    layer = _layer(variant="road_2", group_size=8)
    ours = from_peft(layer)
    W0, b0 = layer.get_base_layer().weight.detach().clone(), layer.get_base_layer().bias.detach().clone()
    R = ours.rotation().detach()
    x = torch.randn(5, D_IN, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(layer(x), (x @ W0.T + b0) @ R.T, rtol=0, atol=1e-13)  # R (W0 x + b)
    layer.merge()
    assert torch.allclose(layer.get_base_layer().bias, R @ b0, rtol=0, atol=1e-13)
    layer.unmerge()  # through a float32 inverse of R
    err = float((layer.get_base_layer().weight - W0).abs().max())
    assert 1e-12 < err < 1e-5
    ours.merge()
    ours.unmerge()
    assert torch.equal(ours.base.weight, W0) and torch.equal(ours.base.bias, b0)


def test_road2_reaches_every_2x2_block_and_road4_adds_nothing():
    """Each RoAd_2 block row is (α cos θ, ∓α sin θ): polar coordinates of an arbitrary vector."""
    torch.manual_seed(1)
    M = torch.randn(D_OUT // 2, 2, 2, dtype=torch.float64)  # arbitrary target blocks
    road2 = RoAd(torch.nn.Linear(D_IN, D_OUT, dtype=torch.float64), variant=2).double()
    with torch.no_grad():
        # row 0 = α (cos θ, −sin θ); row 1 = α (sin θ, cos θ)
        road2.alpha.copy_(torch.linalg.vector_norm(M, dim=-1))
        road2.theta[:, 0] = torch.atan2(-M[:, 0, 1], M[:, 0, 0])
        road2.theta[:, 1] = torch.atan2(M[:, 1, 0], M[:, 1, 1])
    assert torch.allclose(road2.rotation(), torch.block_diag(*M), rtol=0, atol=1e-13)


def test_update_is_full_rank():
    module = RoAd(torch.nn.Linear(D_IN, D_OUT, dtype=torch.float64)).double()
    with torch.no_grad():
        module.theta.uniform_(0.1, 0.5)  # α = 1: a pure rotation, R − I invertible (det 2 − 2 cos θ per block)
    assert int(torch.linalg.matrix_rank(module.delta_weight())) == min(D_IN, D_OUT)
    R = module.rotation()
    assert torch.allclose(R @ R.T, torch.eye(D_OUT, dtype=torch.float64), atol=1e-14)  # orthogonal at α = 1
