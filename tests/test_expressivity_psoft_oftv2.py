"""What PSOFT and OFTv2 can express, stated exactly and checked numerically (the caveats on their pages).

PSOFT: ΔW lies in W0's top-r singular subspaces; without its vectors it is OFT with the rotation confined to the
principal right singular subspace (neuron Gram matrix and spectrum kept); its reachable set has dimension
r(r-1)/2 + 2r - 1; its init reproduces W0 up to float64 rounding.
OFTv2: with k Neumann powers, R_k = Cayley(Q)(I - Q^(k+1)), so R_k's singular values are |1 - (iθ)^(k+1)| and
‖R_k - R‖₂ = ‖Q‖₂^(k+1); k = 0 is OFT; input- and weight-centric forwards are the same function.
"""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call, jacrev

from adapterspec import ops, randomize_
from adapterspec.adapter import Adapter
from adapterspec.methods.oft import OFT
from adapterspec.methods.oftv2 import OFTv2
from adapterspec.methods.psoft import PSOFT

D = torch.float64


def _base(d_in=20, d_out=14, seed=0):
    return Adapter.example_base(d_in, d_out, torch.Generator().manual_seed(seed), D)


def _random(module, seed=1):
    return randomize_(module, torch.Generator().manual_seed(seed))


class _WeightOf(torch.nn.Module):
    """W' as a function of the adapter's parameters (for torch.func)."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self):
        return self.m.adapted_weight(self.m.base.weight)


def _jacobian_rank(module) -> int:
    """Rank of d vec(W') / d(trainable parameters) at the module's current state."""
    params = {f"m.{n}": p.detach().clone() for n, p in module.trainable_parameters().items()}
    J = jacrev(lambda p: functional_call(_WeightOf(module), p, args=()))(params)
    J = torch.cat([j.reshape(-1, params[n].numel()) for n, j in J.items()], dim=1)
    return int(torch.linalg.matrix_rank(J))


# -- PSOFT ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("symmetric", [False, True])
def test_psoft_init_reproduces_W0_to_float64_rounding(symmetric):
    base = _base()
    W0 = base.weight.detach().clone()
    m = PSOFT(base, r=5, symmetric=symmetric)
    err = (m.merged_weight() - W0).abs().max()
    assert err < 50 * torch.finfo(D).eps * W0.abs().max()  # a split W0 = W_res + BA, re-added: rounding only
    assert (m.base.weight - W0).abs().max() > 0.1  # base.weight really holds the residual


@pytest.mark.parametrize("options", [{}, dict(symmetric=True), dict(orth=False), dict(k=3), dict(k=5, eps=0.3),
                                     dict(mag_a=False, mag_b=False)])
def test_psoft_update_stays_in_the_top_r_singular_subspaces(options):
    base = _base()
    W0 = base.weight.detach().clone()
    r = 4
    m = _random(PSOFT(base, r=r, **options))
    dW = m.merged_weight().detach() - W0
    U, S, Vh = torch.linalg.svd(W0)
    P_out, P_in = U[:, :r] @ U[:, :r].T, Vh[:r].T @ Vh[:r]
    assert (dW - P_out @ dW).abs().max() < 1e-12 and (dW - dW @ P_in).abs().max() < 1e-12
    assert dW.abs().max() > 1e-2 and torch.linalg.matrix_rank(dW) <= r
    # one dimension fewer is not enough: the update really uses all r directions
    assert (dW - U[:, : r - 1] @ U[:, : r - 1].T @ dW).abs().max() > 1e-6


def test_strict_psoft_is_oft_confined_to_the_principal_right_subspace():
    """α = β = 1: W' = W0 Gᵀ with G = I − V_rV_rᵀ + V_r Rᵀ V_rᵀ orthogonal, so W'W'ᵀ = W0W0ᵀ, the singular values and
    left singular vectors are kept, and the top-r right singular vectors turn within their span (Theorem 4.1)."""
    base = _base()
    W0 = base.weight.detach().clone()
    r = 5
    m = _random(PSOFT(base, r=r, mag_a=False, mag_b=False))
    W = m.merged_weight().detach()
    S = torch.linalg.svdvals(W0)
    V_r, R = m.A.T, m.rotation().detach()  # A = V_rᵀ with the module's (canonical) signs
    assert (V_r.T @ V_r - torch.eye(r, dtype=D)).abs().max() < 1e-12
    G = torch.eye(20, dtype=D) - V_r @ V_r.T + V_r @ R.T @ V_r.T
    assert (G.T @ G - torch.eye(20, dtype=D)).abs().max() < 1e-12
    assert (W - W0 @ G.T).abs().max() < 1e-12
    assert (W @ W.T - W0 @ W0.T).abs().max() < 1e-12
    assert (torch.linalg.svdvals(W) - S).abs().max() < 1e-12
    assert (W.T @ W - W0.T @ W0).abs().max() > 1e-3  # the input side does move
    # the symmetric split (Eq. 3) breaks the geometry even with α = β = 1
    sym = _random(PSOFT(_base(), r=r, mag_a=False, mag_b=False, symmetric=True))
    Ws = sym.merged_weight().detach()
    assert (Ws @ Ws.T - W0 @ W0.T).abs().max() > 1e-3
    # and the vectors break it too (the method as trained: Eq. 8)
    full = _random(PSOFT(_base(), r=r))
    Wf = full.merged_weight().detach()
    assert (Wf @ Wf.T - W0 @ W0.T).abs().max() > 1e-3


def test_uniform_vectors_scale_only_the_principal_part():
    """α = λ₁1, β = λ₂1: the principal part's angles are kept and its norms scale by λ₁λ₂ (the paper's special case),
    but the residual does not scale, so the angles between whole neurons do change."""
    base = _base()
    W0 = base.weight.detach().clone()
    m = _random(PSOFT(base, r=4))
    with torch.no_grad():
        m.alpha.fill_(1.5)
        m.beta.fill_(0.8)
    W_pri = (m.merged_weight() - m.base.weight).detach()  # B diag(β) R diag(α) A
    U, S, Vh = torch.linalg.svd(W0)
    P0 = U[:, :4] @ torch.diag(S[:4]) @ Vh[:4]
    assert (W_pri @ W_pri.T - 1.2**2 * P0 @ P0.T).abs().max() < 1e-12
    W = m.merged_weight().detach()
    cos = lambda M: (M @ M.T) / (M.norm(dim=1)[:, None] * M.norm(dim=1)[None, :])  # noqa: E731
    assert (cos(W) - cos(W0)).abs().max() > 1e-3


@pytest.mark.parametrize("options, dim", [
    ({}, 4 * 3 // 2 + 2 * 4 - 1),  # α → cα, β → β/c is one redundant direction
    (dict(mag_a=False, mag_b=False), 4 * 3 // 2),
    (dict(mag_b=False), 4 * 3 // 2 + 4),
    (dict(orth=False, mag_a=False, mag_b=False), 16),  # a free r × r core: every principal-subspace update
])
def test_psoft_reachable_set_dimension(options, dim):
    m = _random(PSOFT(_base(), r=4, **options))
    assert _jacobian_rank(m) == dim
    assert m.num_trainable() >= dim


# -- OFTv2 -----------------------------------------------------------------------------------------------------------------
def _oftv2(k, b=6, scale=None, seed=1):
    m = _random(OFTv2(_base(24, 16), b=b, k=k), seed)
    if scale is not None:  # every block's skew generator rescaled to spectral norm `scale`
        with torch.no_grad():
            Q = ops.skew(m.q, b)
            m.q.mul_((scale / torch.linalg.matrix_norm(Q, ord=2))[:, None])
    return m


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_neumann_blocks_have_singular_values_one_minus_itheta_power(k):
    """R_k = Cayley(Q)(I − Q^(k+1)) exactly; with eigenvalues ±iθ of Q, R_k's singular values are |1 − (iθ)^(k+1)|."""
    m = _oftv2(k, scale=0.9)
    Q = ops.skew(m.q.detach(), m.b)
    R_k = m.blocks().detach()
    I = torch.eye(m.b, dtype=D)
    assert (R_k - ops.cayley(Q) @ (I - torch.linalg.matrix_power(Q, k + 1))).abs().max() < 1e-12
    theta = torch.linalg.eigvals(Q).imag  # (n, b)
    expected = (1 - (1j * theta) ** (k + 1)).abs().sort(dim=-1).values
    got = torch.linalg.svdvals(R_k).sort(dim=-1).values
    assert (got - expected).abs().max() < 1e-12
    assert (got - 1).abs().max() > 1e-3  # not orthogonal


@pytest.mark.parametrize("k, scale", [(3, 0.3), (3, 0.9), (5, 0.6), (1, 0.5)])
def test_neumann_gap_to_the_cayley_map_is_exactly_norm_Q_to_the_k_plus_1(k, scale):
    m = _oftv2(k, scale=scale)
    Q = ops.skew(m.q.detach(), m.b)
    gap = torch.linalg.matrix_norm(m.blocks().detach() - ops.cayley(Q), ord=2)
    assert (gap - scale ** (k + 1)).abs().max() < 1e-12


def test_default_series_is_singular_at_theta_one():
    """k = 3 (five terms): |1 − θ⁴| vanishes at θ = 1, so a block with ‖Q‖₂ = 1 collapses a direction."""
    m = _oftv2(3, scale=1.0)
    smallest = torch.linalg.svdvals(m.blocks().detach()).min(dim=-1).values
    assert smallest.max() < 1e-12
    odd = _oftv2(2, scale=1.0)  # k + 1 odd: |1 ± iθ³| ≥ 1, never singular
    assert torch.linalg.svdvals(odd.blocks().detach()).min() >= 1 - 1e-12


def test_k0_is_oft_and_orthogonal():
    base = _base(24, 16)
    v2 = _random(OFTv2(base, b=6, k=0))
    v1 = OFT(_base(24, 16), r=4)
    with torch.no_grad():
        v1.q.copy_(v2.q)
    x = torch.randn(5, 24, dtype=D)
    with torch.no_grad():
        assert (v1(x) - v2(x)).abs().max() < 1e-12
        W = v2.merged_weight()
        W0 = v2.base.weight
        assert (W @ W.T - W0 @ W0.T).abs().max() < 1e-12
    R = v2.blocks().detach()
    assert (R.mT @ R - torch.eye(6, dtype=D)).abs().max() < 1e-12


@pytest.mark.parametrize("k", [0, 3])
def test_input_centric_and_weight_centric_are_the_same_function(k):
    m = _oftv2(k)
    x = torch.randn(7, 24, dtype=D)
    with torch.no_grad():
        y_in = m(x)  # rotate x, then W0
        y_w = Adapter.forward(m, x)  # form W0 Rᵀ, then multiply
        assert (y_in - y_w).abs().max() < 1e-12 and (y_in - m.base(x)).abs().max() > 1e-2


@pytest.mark.parametrize("k", [0, 3])
def test_oftv2_parameters_are_locally_identifiable(k):
    """q ↦ W' has full Jacobian rank d_in (b − 1)/2: no redundant parameter, exact map or series."""
    m = _oftv2(k, b=4)
    assert _jacobian_rank(m) == m.num_trainable() == 24 * 3 // 2
