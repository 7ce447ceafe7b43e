"""RandLoRA against peft 0.21.2: the deliberate differences (scaling, basis pairing) pinned, and the rank loss of
sparse bases measured on peft's own layer."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

peft = pytest.importorskip("peft")

from adapterspec.interop.equality import randomize_peft_, wrap  # noqa: E402
from adapterspec.interop.peft import from_peft  # noqa: E402
from adapterspec.methods.randlora import RandLoRA  # noqa: E402


def _layer(d_in: int, d_out: int, **kwargs):
    g = torch.Generator().manual_seed(0)
    model, layer = wrap(RandLoRA.example_base(d_in, d_out, g, torch.float32),
                        peft.RandLoraConfig(target_modules=["proj"], **kwargs))
    randomize_peft_(model.double().eval(), g)
    return layer


def test_peft_scale_is_sqrt_n_times_the_papers():
    """Same alpha and r: peft's α/r is exactly √n times the paper's α/(r√n) (Appendix C.4), n = ⌈d/r⌉."""
    base = nn.Linear(96, 40)
    paper = RandLoRA(copy.deepcopy(base), r=8, alpha=16, scaling="paper")
    ours_peft = RandLoRA(copy.deepcopy(base), r=8, alpha=16, scaling="peft")
    assert paper.n == 5 and ours_peft.s == pytest.approx(paper.s * math.sqrt(5), rel=1e-15)
    layer = _layer(96, 40, r=8, randlora_alpha=16)
    assert layer.scaling["default"] == ours_peft.s == 2.0


def test_same_init_as_peft_identity_and_gamma_one_over_d():
    layer = _layer(24, 40, r=5)  # randomised, but the init is read off a fresh layer below
    fresh = RandLoRA(nn.Linear(24, 40), r=5)
    _, p = wrap(nn.Linear(24, 40), peft.RandLoraConfig(target_modules=["proj"], r=5))
    assert not p.randlora_lambda["default"].any() and not fresh.Lambda.any()
    assert torch.all(p.randlora_gamma["default"] == 1 / 24) and torch.all(fresh.Gamma == 1 / 24)
    assert layer.num_bases == fresh.n == 5


def test_peft_pairs_basis_columns_rank_major():
    """peft multiplies column j·r + k of its flattened B stack with row j·r + k of its rank-major scaled A, i.e. with
    λ[k', j'], γ_j' for (k', j') = divmod(j·r + k, n). Copying B in storage order (the paper's pairing) is wrong."""
    layer = _layer(24, 40, r=4)
    x = torch.randn(3, 24, dtype=torch.float64)
    ours = from_peft(layer)
    torch.testing.assert_close(ours(x), layer(x), rtol=1e-12, atol=1e-12)
    naive = copy.deepcopy(ours)
    with torch.no_grad():
        naive.B.copy_(layer.randlora_B["default"][:40, : ours.n, :].permute(1, 0, 2))  # B_j = peft's B[:, j, :]
    assert (naive(x) - layer(x)).abs().max() > 1e-2


def test_very_sparse_bases_lose_rank_through_zero_columns_of_the_shared_A():
    """Each column of the single r-row A is all zero with probability (1 − 2/s)^r; ΔW then never reads that input.
    On peft's own layer (very_sparse: P(±1) = 1/(2√d) each), rank(ΔW) = d − #zero columns of A."""
    layer = _layer(256, 512, r=16, very_sparse=True)
    A = layer.randlora_A["default"][:, 0, :256]
    zero_cols = int((A == 0).all(dim=0).sum())
    assert zero_cols > 0
    rank = int(torch.linalg.matrix_rank(layer.get_delta_weight("default")))
    assert rank == 256 - zero_cols
    dense = _layer(256, 512, r=16)
    assert int(torch.linalg.matrix_rank(dense.get_delta_weight("default"))) == 256  # full rank, as claimed
