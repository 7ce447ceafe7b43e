"""What the orthogonal-family methods can and cannot express, checked numerically (the statements on their pages).

Functions are prefixed by method (``test_hra_``, ``test_ether_``, ...) so that each can be selected with ``-k``.
Everything runs in float64 on small non-square layers, on random states (not only at init).
"""

from __future__ import annotations

import pytest
import torch

import adapterspec
from adapterspec.methods.ether import ETHER
from adapterspec.methods.hra import HRA

DT = torch.float64


def _layer(d_in=12, d_out=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return HRA.example_base(d_in, d_out, g, DT)


def _eye(d):
    return torch.eye(d, dtype=DT)


def _fro(M):
    return float(torch.linalg.matrix_norm(M.detach()))


def _random(module, seed):
    return adapterspec.randomize_(module, torch.Generator().manual_seed(seed), scale=3.0)


# -- HRA ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("apply_GS", [False, True])
@pytest.mark.parametrize("r", [1, 2, 3, 4, 5])
def test_hra_determinant_is_fixed_by_the_parity_of_r(r, apply_GS):
    """det(H_1 ⋯ H_r) = (−1)^r for every parameter value: a chain of fixed length stays in one component of O(d)."""
    for seed in range(5):
        H = _random(HRA(_layer(), r=r, apply_GS=apply_GS), seed).reflection().detach()
        assert torch.allclose(H.T @ H, _eye(12), atol=1e-12)
        assert torch.linalg.det(H).item() == pytest.approx((-1) ** r, abs=1e-10)


@pytest.mark.parametrize("r", [1, 3, 5])
def test_hra_odd_r_is_never_the_identity_and_one_reflection_is_the_closest(r):
    """Odd r: ‖H − I‖_F ≥ 2 on every state (a det −1 orthogonal matrix has trace ≤ d − 2, ‖H − I‖² = 2d − 2 tr H), and
    pairs plus one free vector reach exactly 2. Even r: the paired init is exactly I."""
    for seed in range(10):
        H = _random(HRA(_layer(), r=r), seed).reflection().detach()
        assert _fro(H - _eye(12)) >= 2 - 1e-9
    module = HRA(_layer(), r=r)
    with torch.no_grad():
        pairs = torch.randn(12, r // 2, dtype=DT).repeat_interleave(2, dim=1)
        module.V.copy_(torch.cat([pairs, torch.randn(12, 1, dtype=DT)], dim=1))
    assert _fro(module.reflection() - _eye(12)) == pytest.approx(2.0, abs=1e-12)
    even = HRA(_layer(), r=r + 1)  # the default init of an even chain
    assert torch.allclose(even.reflection(), _eye(12), atol=1e-13)


@pytest.mark.parametrize("apply_GS", [False, True])
@pytest.mark.parametrize("r", [1, 2, 3, 5])
def test_hra_update_has_rank_r_exactly(r, apply_GS):
    """ΔW = W0 (H − I) = W0 U Γ Uᵀ has rank ≤ r (Eq. 5), and r on a random state: the bound is tight."""
    module = _random(HRA(_layer(), r=r, apply_GS=apply_GS), 3)
    assert int(torch.linalg.matrix_rank(module.delta_weight().detach())) == r


@pytest.mark.parametrize("r", [1, 2, 4, 6])
def test_hra_low_rank_form_of_eq_3_and_4(r):
    """H_1 ⋯ H_r = I + U Γ Uᵀ with Γ_1 = −2 and Γ_r = [[Γ_{r−1}, −2 Γ_{r−1} U_{r−1}ᵀ u_r], [0, −2]] (upper triangular)."""
    module = _random(HRA(_layer(), r=r), 4)
    U = module.unit_vectors().detach()
    G = torch.tensor([[-2.0]], dtype=DT)
    for k in range(1, r):
        col = -2 * G @ U[:, :k].T @ U[:, k : k + 1]  # (k, 1)
        G = torch.cat([torch.cat([G, col], 1), torch.cat([torch.zeros(1, k, dtype=DT), -2 * torch.ones(1, 1, dtype=DT)], 1)])
    assert torch.allclose(_eye(12) + U @ G @ U.T, module.reflection().detach(), atol=1e-12)
    assert torch.equal(G, torch.triu(G))


def test_hra_gram_schmidt_variant_is_one_reflection_through_a_subspace():
    """λ = ∞: H = I − 2UUᵀ is symmetric and involutory, at the fixed distance 2√r from I, and depends only on span V
    (the order of Gram–Schmidt does not matter)."""
    for r in (1, 2, 4):
        module = _random(HRA(_layer(), r=r, apply_GS=True), 5)
        H = module.reflection().detach()
        assert torch.allclose(H, H.T, atol=1e-13) and torch.allclose(H @ H, _eye(12), atol=1e-12)
        assert _fro(H - _eye(12)) == pytest.approx(2 * r**0.5, abs=1e-10)
        with torch.no_grad():
            module.V.copy_(module.V.flip(1) @ torch.triu(torch.ones(r, r, dtype=DT)))  # same span, other basis
        assert torch.allclose(module.reflection(), H, atol=1e-12)


def _reflections_for(Q: torch.Tensor) -> list[torch.Tensor]:
    """Unit vectors u_1 … u_k with H_{u_1} ⋯ H_{u_k} = Q (Cartan–Dieudonné, constructive): reflect Q's columns onto
    the basis vectors one at a time."""
    d, us, M = Q.shape[0], [], Q.clone()
    for i in range(d):
        w = M[:, i] - _eye(d)[:, i]
        if w.norm() > 1e-9:
            u = w / w.norm()
            us.append(u)
            M = M - 2 * torch.outer(u, u) @ M  # H_u M: now column i is e_i
    assert torch.allclose(M, _eye(d), atol=1e-9)
    return us  # H_{u_k} ⋯ H_{u_1} Q = I, and each H is its own inverse: Q = H_{u_1} ⋯ H_{u_k}


def test_hra_d_minus_1_reflections_cover_one_half_of_O_d():
    """The paper (Section 3.2, Table 1): d − 1 reflections represent an arbitrary orthogonal matrix. Exactly the
    ones with det (−1)^{d−1}: those are reached (padding with pairs u, u), the others never (det of the chain)."""
    d = 6
    g = torch.Generator().manual_seed(7)
    for target_det in (1, -1):
        Q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=DT))
        if torch.linalg.det(Q) * target_det < 0:
            Q[:, 0] = -Q[:, 0]
        module = HRA(HRA.example_base(d, 4, g, DT), r=d - 1)
        us = _reflections_for(Q)
        reachable = (-1) ** len(us) == (-1) ** (d - 1)
        assert reachable == (target_det == (-1) ** (d - 1))
        if reachable:
            while len(us) < d - 1:
                us += [us[-1], us[-1]]  # H_u H_u = I
            with torch.no_grad():
                module.V.copy_(torch.stack(us, dim=1))
            assert torch.allclose(module.reflection(), Q, atol=1e-9)


# -- ETHER ------------------------------------------------------------------------------------------------------------
def test_ether_reflection_is_always_two_away_from_the_identity():
    """Eq. (2): ‖H_k − I‖_F = 2 for every unit normal, so ‖H − I‖_F = 2√n for n blocks; ETHER is never the identity,
    at init or after any step, and det H_k = −1 (no Cayley rotation of OFT equals it)."""
    for n in (1, 2, 4):
        for seed in range(5):
            module = ETHER(_layer(), n=n)
            if seed:
                _random(module, seed)
            H = module.blocks().detach()  # (n, b, b)
            dist = torch.linalg.matrix_norm(H - _eye(12 // n))
            assert torch.allclose(dist, torch.full_like(dist, 2.0), atol=1e-12)
            assert torch.allclose(torch.linalg.det(H), -torch.ones(n, dtype=DT), atol=1e-10)
    x = torch.randn(3, 12, dtype=DT)
    fresh = ETHER(_layer(), n=1)
    assert (fresh(x) - fresh.base(x)).abs().max() > 1e-3  # not the identity at init


def test_ether_update_size_is_fixed_by_W0_not_by_training():
    """ΔW = −2 W0 ûûᵀ, so ‖ΔW‖_F = 2‖W0 û‖ ≥ 2 σ_min(W0ᵀ-side): no state of ETHER is a small update unless W0 is
    nearly blind to some input direction; the smallest change flips the least-used input direction."""
    base = _layer(d_in=8, d_out=12)
    W0 = base.weight.detach()
    s_min = float(torch.linalg.svdvals(W0)[-1])
    for seed in range(10):
        module = _random(ETHER(base, n=1), seed)
        u = module.u.detach()[0] / module.u.detach()[0].norm()
        dW = module.delta_weight().detach()
        assert _fro(dW) == pytest.approx(2 * float((W0 @ u).norm()), rel=1e-10)
        assert _fro(dW) >= 2 * s_min - 1e-10
    with torch.no_grad():  # the minimum is reached at the least-used right singular vector
        module.u.copy_(torch.linalg.svd(W0).Vh[-1][None])
    assert _fro(module.delta_weight()) == pytest.approx(2 * s_min, rel=1e-10)


def test_ether_plus_is_bounded_by_sqrt2_and_not_orthogonal():
    """H⁺ = I − ûûᵀ + v̂v̂ᵀ: ‖H⁺ − I‖_F = √2 sin θ ≤ √2 (the paper's bound 2 is loose), eigenvalues 1 ± sin θ and 1,
    singular when û ⊥ v̂, orthogonal only when û = ±v̂ (then it is I)."""
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        u, v = torch.randn(2, 7, generator=g, dtype=DT)
        u, v = u / u.norm(), v / v.norm()
        Hp = _eye(7) - torch.outer(u, u) + torch.outer(v, v)
        sin = (1 - float(u @ v) ** 2) ** 0.5
        assert _fro(Hp - _eye(7)) == pytest.approx(2**0.5 * sin, rel=1e-10) and _fro(Hp - _eye(7)) < 2**0.5
        eig = torch.linalg.eigvalsh(Hp)
        expected = torch.tensor(sorted([1 - sin, 1 + sin] + [1.0] * 5), dtype=DT)
        assert torch.allclose(eig, expected, atol=1e-10)
        assert (Hp.T @ Hp - _eye(7)).abs().max() > 1e-3  # not orthogonal
    u = torch.zeros(7, dtype=DT); u[0] = 1
    v = torch.zeros(7, dtype=DT); v[1] = 1
    assert int(torch.linalg.matrix_rank(_eye(7) - torch.outer(u, u) + torch.outer(v, v))) == 6  # û ⊥ v̂: singular


def test_ether_plus_is_the_identity_at_init_and_keeps_the_orthogonal_complement():
    """v = −u at init gives H⁺ = I; on a random state, the part of every neuron orthogonal to span(û, v̂) is kept
    (one-sided ETHER+, one block), while norms and angles of neurons are not."""
    x = torch.randn(3, 12, dtype=DT)
    for two_sided in (False, True):
        module = ETHER(_layer(), n=2, plus=True, two_sided=two_sided)
        assert torch.allclose(module(x), module.base(x), atol=1e-13)
    module = _random(ETHER(_layer(), n=1, plus=True), 1)
    W0, W = module.base.weight.detach(), module.merged_weight().detach()
    u, v = (t.detach()[0] / t.detach()[0].norm() for t in (module.u, module.v))
    Q, _ = torch.linalg.qr(torch.stack([u, v], 1))
    P = _eye(12) - Q @ Q.T  # projector onto the complement of span(û, v̂)
    assert torch.allclose(W @ P, W0 @ P, atol=1e-12)
    assert (W @ W.T - W0 @ W0.T).abs().max() > 1e-3
    assert (W.T @ W - W0.T @ W0).abs().max() > 1e-3


@pytest.mark.parametrize("plus, two_sided, per_block", [(False, False, 1), (True, False, 2), (True, True, 4)])
@pytest.mark.parametrize("n", [1, 2])
def test_ether_update_rank_per_block(n, plus, two_sided, per_block):
    """rank ΔW ≤ n (ETHER), 2n (ETHER+ on one side), 4n (on both sides: (H̃ − I) W0 H + W0 (H − I)); tight on a
    random state of a layer large enough."""
    module = _random(ETHER(_layer(d_in=24, d_out=20), n=n, plus=plus, two_sided=two_sided), 2)
    assert int(torch.linalg.matrix_rank(module.delta_weight().detach())) == per_block * n


def test_ether_official_block_layout_is_not_block_diagonal():
    """The official code reshapes the (d_out, d_in) weight to (n, d_out, d_in/n) and multiplies each slab by H_k.
    For n > 1 that is not W0 diag(H_1 … H_n): rows of output group k get I_n ⊗ H_k. Norms of neurons are kept,
    their Gram matrix is not (ours keeps it)."""
    module = _random(ETHER(_layer(d_in=12, d_out=8), n=2), 6)
    W0, H = module.base.weight.detach(), module.blocks().detach()  # (8, 12), (2, 6, 6)
    n, d_out, d_in = 2, 8, 12
    official = torch.bmm(W0.reshape(n, d_out, d_in // n), H).reshape(d_out, d_in)
    groups = [W0[k * d_out // n:(k + 1) * d_out // n] @ torch.block_diag(*[H[k]] * n) for k in range(n)]
    assert torch.allclose(official, torch.cat(groups), atol=1e-12)
    ours = module.merged_weight().detach()
    assert (official - ours).abs().max() > 1e-2
    assert torch.allclose(official.norm(dim=1), W0.norm(dim=1), atol=1e-12)
    assert (official @ official.T - W0 @ W0.T).abs().max() > 1e-3
    assert torch.allclose(ours @ ours.T, W0 @ W0.T, atol=1e-12)
    single = _random(ETHER(_layer(d_in=12, d_out=8), n=1), 6)  # n = 1: the two layouts agree
    W0, H = single.base.weight.detach(), single.blocks().detach()
    assert torch.allclose(torch.bmm(W0.reshape(1, 8, 12), H).reshape(8, 12), single.merged_weight(), atol=1e-12)


def test_ether_hyperparameter_errors_are_actionable():
    with pytest.raises(ValueError, match="n=5 .* divisor of d_in=12"):
        ETHER(_layer(), n=5)
    with pytest.raises(ValueError, match="two_sided=True needs plus=True"):
        ETHER(_layer(), two_sided=True)
    with pytest.raises(ValueError, match="d_out=8"):
        ETHER(_layer(), n=3, plus=True, two_sided=True)
    with pytest.raises(ValueError, match="at most d_in=12 with apply_GS"):
        HRA(_layer(), r=13, apply_GS=True)


def test_hra_and_ether_capacity():
    """HRA's count is r · d_in (capacity "r"); ETHER's does not depend on its number of blocks n (capacity None)."""
    assert HRA.capacity == "r" and ETHER.capacity is None
    assert [HRA(_layer(), r=r).num_trainable() for r in (2, 4, 6)] == [24, 48, 72]
    for plus, two_sided, count in [(False, False, 12), (True, False, 24), (True, True, 2 * (12 + 8))]:
        assert {ETHER(_layer(), n=n, plus=plus, two_sided=two_sided).num_trainable() for n in (1, 2, 4)} == {count}
