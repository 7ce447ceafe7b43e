"""What the SVD-aligned methods can and cannot reach, checked numerically (float64, randomized states).

SVFT: ΔW = U M Vᵀ with M on a fixed pattern Ω. Plain only rescales singular values; every pattern keeps ΔW inside
W0's column and row spaces; the reachable set is an affine space of dimension |Ω|.
SSVD: only the top-k right singular vectors turn (G_k) and the top-k singular values shift; W0's left singular vectors
are kept; the first-order G_k is orthogonal only to second order; an unconstrained G_k reaches any top-k block.
AntiPaSTO: SSVD-strict at each α, with R(−α) = R(α)ᵀ exactly, ΔW(α) + ΔW(−α) = O(α²), and a soft clamp that bounds
the rotation angle only for r = 2.
"""

from __future__ import annotations

import pytest
import torch

import adapterspec

DT = torch.float64


def layer(slug: str, d_in: int, d_out: int, base_seed: int = 0, **hp):
    base = adapterspec.adapter_class(slug).example_base(d_in, d_out, torch.Generator().manual_seed(base_seed), DT)
    W0 = base.weight.detach().clone()
    return adapterspec.create(slug, base, **hp), W0


def randomized(module, seed: int = 1):
    return adapterspec.randomize_(module, torch.Generator().manual_seed(seed))


def full_svd(W0):
    U, S, Vh = torch.linalg.svd(W0, full_matrices=True)
    return U, S, Vh.T  # U (d_out, d_out), V (d_in, d_in)


# -- SVFT -----------------------------------------------------------------------------------------------------------
def svft_mask(module) -> torch.Tensor:
    mask = torch.zeros(module.n, module.n, dtype=torch.bool)
    mask[module.indices[0], module.indices[1]] = True
    return mask


@pytest.mark.parametrize("pattern, d, shape", [("plain", 0, (16, 12)), ("banded", 2, (16, 12)),
                                               ("banded", 3, (12, 20)), ("random", 2, (16, 12)),
                                               ("top_k", 2, (10, 10))])
def test_svft_update_has_the_pattern_of_M_in_the_singular_basis(pattern, d, shape):
    """Uᵀ ΔW V equals M: exactly zero off Ω, the trained coefficients on it."""
    module, W0 = layer("svft", *shape, pattern=pattern, d=d)
    randomized(module)
    n = min(shape)
    U, S, Vh = torch.linalg.svd(W0, full_matrices=False)
    # the module's U, V are W0's singular vectors up to one sign per pair
    signs = torch.sign((U * module.U).sum(0))
    assert torch.allclose(module.U, U * signs, atol=1e-12) and torch.allclose(module.Vh, Vh * signs[:, None], atol=1e-12)
    with torch.no_grad():
        C = module.U.T @ module.delta_weight() @ module.Vh.T  # (n, n)
    mask = svft_mask(module)
    assert C[~mask].abs().max() < 1e-13
    torch.testing.assert_close(C, module.coefficients().detach(), rtol=0, atol=1e-13)
    assert int(mask.sum()) == module.k == module.num_trainable()
    assert module.k == n * (2 * d + 1) - d * (d + 1)


def test_svft_plain_only_rescales_singular_values():
    """Lemma (a): with M diagonal, W' = U diag(S + m) Vᵀ: the same singular vectors, singular values |S_i + m_i|."""
    module, W0 = layer("svft", 16, 12, pattern="plain")
    randomized(module)
    with torch.no_grad():
        W = module.merged_weight()
        C = module.U.T @ W @ module.Vh.T  # (n, n) W' in W0's singular basis
    torch.testing.assert_close(C, torch.diag(module.S + module.m.detach()), rtol=0, atol=1e-13)
    expected = (module.S + module.m.detach()).abs().sort(descending=True).values
    torch.testing.assert_close(torch.linalg.svdvals(W), expected, rtol=0, atol=1e-12)
    # a coupling u_1 v_2ᵀ is out of reach: its projection onto the reachable directions is zero
    target = torch.outer(module.U[:, 0], module.Vh[1])
    assert (module.U.T @ target @ module.Vh.T)[svft_mask(module)].abs().max() < 1e-14


def test_svft_band_couples_neighbouring_singular_directions_only():
    """Banded d=1 reaches u_i v_{i±1}ᵀ, not u_1 v_3ᵀ; the nearest point of the reachable set to any target is the
    target's coefficients on Ω (an orthogonal projection, since the u_i v_jᵀ are orthonormal)."""
    module, W0 = layer("svft", 12, 12, pattern="banded", d=1)
    mask = svft_mask(module)
    assert mask[0, 1] and mask[1, 0] and not mask[0, 2]
    g = torch.Generator().manual_seed(5)
    target = torch.randn(12, 12, generator=g, dtype=DT)  # a ΔW to approximate
    C = module.U.T @ target @ module.Vh.T
    best = module.U @ (C * mask) @ module.Vh  # reachable
    residual = target - best
    # residual ⟂ every reachable direction u_i v_jᵀ, (i, j) ∈ Ω
    assert (module.U.T @ residual @ module.Vh.T)[mask].abs().max() < 1e-12
    assert residual.norm() > 0.5 * target.norm()  # a band of 34 of 144 coefficients misses most of a random ΔW


def test_svft_cannot_leave_the_column_space_of_a_tall_W0_even_with_dense_M():
    """Lemma (b) assumes the full SVD; with the thin SVD (the official code's choice) a tall layer's update stays in
    W0's column space, so a target writing an orthogonal output direction is unreachable."""
    module, W0 = layer("svft", 8, 14, pattern="banded", d=7)  # n = 8, d = n - 1: M dense, |Ω| = n²
    assert module.k == 64
    U_full, _, V_full = full_svd(W0)
    w = U_full[:, -1]  # an output direction W0 never writes (⟂ its column space)
    target = torch.outer(w, V_full[:, 0])  # ΔW* = w v_1ᵀ
    C = module.U.T @ target @ module.Vh.T
    assert C.abs().max() < 1e-13  # its best reachable approximation is 0: nothing of it is reachable
    randomized(module)
    with torch.no_grad():
        dW = module.delta_weight()
    assert (w @ dW).abs().max() < 1e-13


def test_svft_dense_M_reaches_any_update_of_a_square_full_rank_W0():
    """Lemma (b) holds for square, full-rank W0: with d = n - 1, M = Uᵀ ΔW* V reproduces any target."""
    module, W0 = layer("svft", 10, 10, pattern="banded", d=9)
    target = torch.randn(10, 10, generator=torch.Generator().manual_seed(9), dtype=DT)
    with torch.no_grad():
        C = module.U.T @ target @ module.Vh.T
        module.m.copy_(C[module.indices[0], module.indices[1]])
        torch.testing.assert_close(module.delta_weight(), target, rtol=0, atol=1e-12)


def test_svft_rank_grows_with_the_pattern_not_with_the_parameter_count_alone():
    """Lemma (c): rank(ΔW) ≤ min(|Ω|, n); Plain with n coefficients already gives a full-rank update, where a LoRA
    with the same count (r(d_in + d_out) ≥ n) has rank r = 1 at most."""
    module, _ = layer("svft", 32, 24, pattern="plain")
    randomized(module)
    with torch.no_grad():
        assert int(torch.linalg.matrix_rank(module.delta_weight())) == 24  # 24 parameters, rank 24
    lora, _ = layer("lora", 32, 24, r=1)  # 56 parameters, rank 1
    randomized(lora)
    with torch.no_grad():
        assert int(torch.linalg.matrix_rank(lora.delta_weight())) == 1


def test_svft_top_k_keeps_the_most_aligned_pairs():
    module, _ = layer("svft", 10, 10, pattern="top_k", d=1)
    score = (module.U.T @ module.Vh.T).abs()  # |u_iᵀ v_j|
    mask = svft_mask(module)
    assert score[mask].min() >= score[~mask].max()
    assert int(mask.sum()) == 10 * 3 - 2


def test_svft_random_pattern_is_distinct_and_reproducible():
    a, _ = layer("svft", 16, 12, pattern="random", d=2, seed=3)
    b, _ = layer("svft", 16, 12, pattern="random", d=2, seed=3)
    c, _ = layer("svft", 16, 12, pattern="random", d=2, seed=4)
    assert torch.equal(a.indices, b.indices) and not torch.equal(a.indices, c.indices)
    assert len(set(map(tuple, a.indices.T.tolist()))) == a.k  # k distinct positions, one parameter each


@pytest.mark.parametrize("hp, match", [(dict(pattern="plain", d=1), "d must be 0"),
                                       (dict(pattern="banded", d=12), "d must be between"),
                                       (dict(pattern="top_k", d=1), "needs d_in = d_out"),
                                       (dict(pattern="diag"), "pattern must be one of")])
def test_svft_bad_hyperparameters_are_named(hp, match):
    with pytest.raises(ValueError, match=match):
        layer("svft", 16, 12, **hp)


# -- SSVD -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(16, 12), (12, 20)])
@pytest.mark.parametrize("constraint", ["cayley", "neumann", "none"])
def test_ssvd_keeps_every_left_singular_vector(shape, constraint):
    """Only the right singular vectors turn: W'W'ᵀ = U diag(σ'²) Uᵀ stays diagonal in W0's left singular basis, with
    the top-k singular values shifted to |σ_i + Δσ_i| (exactly so when G_k is orthogonal) and the rest unchanged."""
    k = 4
    module, W0 = layer("ssvd", *shape, k=k, constraint=constraint)
    randomized(module)
    U, S, V = full_svd(W0)
    with torch.no_grad():
        W = module.merged_weight()
        gram = U.T @ W @ W.T @ U  # (d_out, d_out)
        G = module.G()
    off = gram - torch.diag(torch.diagonal(gram))
    if constraint == "cayley":
        assert off.abs().max() < 1e-12
        s_new = (module.S + module.dSigma.detach()).abs()
        torch.testing.assert_close(torch.diagonal(gram)[:k], s_new**2, rtol=0, atol=1e-12)
    else:  # G_k not orthogonal: U stays the output basis of the top block, but the gains mix
        torch.testing.assert_close(module.U.T @ W @ W.T @ module.U,  # module's signs for U_k, G_k
                                   torch.diag(module.S + module.dSigma.detach()) @ G @ G.T
                                   @ torch.diag(module.S + module.dSigma.detach()), rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.diagonal(gram)[k:min(shape)], S[k:] ** 2, rtol=0, atol=1e-12)


def test_ssvd_is_a_singular_value_shift_then_an_input_side_rotation_inside_span_V_k():
    """W' = (W0 + U_k ΔΣ_k V_kᵀ) Rᵀ with R orthogonal, R = I on the orthogonal complement of span(V_k)."""
    module, W0 = layer("ssvd", 16, 12, k=4)
    randomized(module)
    with torch.no_grad():
        R = module.rotation()
        scaled = W0 + module.U @ torch.diag(module.dSigma) @ module.Vh
        torch.testing.assert_close(module.merged_weight(), scaled @ R.T, rtol=0, atol=1e-13)
        torch.testing.assert_close(R.T @ R, torch.eye(16, dtype=DT), rtol=0, atol=1e-13)
        _, _, V = full_svd(W0)
        rest = V[:, 4:]  # right singular directions outside the top 4 (and W0's null space)
        torch.testing.assert_close(R @ rest, rest, rtol=0, atol=1e-13)
        assert torch.linalg.det(module.G()) > 0  # the Cayley map gives rotations only, never a reflection


def test_ssvd_cannot_turn_an_output_direction_and_none_reaches_any_top_block():
    """The strict top-k block B = U_kᵀ W' V_k is diag(σ')·G_k: BBᵀ diagonal. A target that rotates the output basis
    (B = Σ_k + ε E_12) has BBᵀ non-diagonal, so no strict SSVD state reaches it; the unconstrained G_k does."""
    k = 3
    module, W0 = layer("ssvd", 12, 12, k=k, constraint="none")
    target_B = torch.diag(module.S).clone()
    target_B[0, 1] = 0.3  # output direction u_1 also reads v_2
    BBt = target_B @ target_B.T
    assert (BBt - torch.diag(torch.diagonal(BBt))).abs().max() > 0.1  # not of the strict form
    with torch.no_grad():
        module.G_free.copy_(torch.linalg.solve(torch.diag(module.S), target_B))  # ΔΣ = 0, G_k = Σ_k⁻¹ B
        B = module.U.T @ module.merged_weight() @ module.Vh.T
    torch.testing.assert_close(B, target_B, rtol=0, atol=1e-12)
    assert module.num_trainable() == k * k + k


def test_ssvd_neumann_rotation_is_orthogonal_only_to_second_order():
    """Eq. 13: G_k = I − 2K, so G_kᵀG_k = I − 4K² (K skew): the error is exactly 4‖KᵀK‖, second order in K."""
    module, _ = layer("ssvd", 16, 12, k=5, constraint="neumann")
    for scale in (1e-2, 1e-1):
        with torch.no_grad():
            module.q.copy_(scale * torch.randn(module.q.shape, generator=torch.Generator().manual_seed(0), dtype=DT))
            G, K = module.G(), module.symbols()["K"]
        torch.testing.assert_close(G.T @ G - torch.eye(5, dtype=DT), -4 * K @ K, rtol=0, atol=1e-14)
    assert module.num_trainable() == 5 * 6 // 2


def test_ssvd_parameter_counts():
    for constraint, expected in (("cayley", 10 * 11 // 2), ("neumann", 10 * 11 // 2), ("none", 10 * 10 + 10)):
        module, _ = layer("ssvd", 16, 12, k=10, constraint=constraint)
        assert module.num_trainable() == expected


@pytest.mark.parametrize("hp, match", [(dict(k=0), "k must be between 1 and"), (dict(k=13), "k must be between"),
                                       (dict(constraint="exact"), "constraint must be one of")])
def test_ssvd_bad_hyperparameters_are_named(hp, match):
    with pytest.raises(ValueError, match=match):
        layer("ssvd", 16, 12, **hp)


# -- AntiPaSTO ------------------------------------------------------------------------------------------------------
def delta_at(module, alpha):
    module.alpha = alpha
    with torch.no_grad():
        return module.delta_weight()


def test_antipasto_poles_are_exact_inverses_and_zero_is_the_base_model():
    """R(−α) = R(α)ᵀ = R(α)⁻¹ exactly (Cayley), and W'(0) = W0 in any state."""
    module, W0 = layer("antipasto", 16, 12, r=5)
    randomized(module)
    with torch.no_grad():
        Rp, Rm = module.R_r(1.0), module.R_r(-1.0)
    torch.testing.assert_close(Rm, Rp.T, rtol=0, atol=1e-14)
    torch.testing.assert_close(Rp @ Rm, torch.eye(5, dtype=DT), rtol=0, atol=1e-14)
    assert delta_at(module, 0.0).abs().max() == 0


def test_antipasto_steering_is_antiparallel_to_first_order():
    """ΔW(α) + ΔW(−α) = O(α²) while ΔW(α) = O(α): halving α halves the relative asymmetry."""
    module, _ = layer("antipasto", 16, 12, r=4)
    randomized(module)
    ratios = []
    for alpha in (0.2, 0.1, 0.05):
        plus, minus = delta_at(module, alpha), delta_at(module, -alpha)
        ratios.append(float((plus + minus).norm() / plus.norm()))
    assert ratios[0] < 0.05
    assert abs(ratios[1] / ratios[0] - 0.5) < 0.05 and abs(ratios[2] / ratios[1] - 0.5) < 0.05


def test_antipasto_keeps_left_singular_vectors_and_equals_strict_ssvd():
    """At a fixed α, AntiPaSTO on the top r triplets is SSVD (strict) with K = (α/2)·A_c and ΔΣ = α·ΔS."""
    import math

    r, alpha = 4, -0.7
    ap, W0 = layer("antipasto", 16, 12, r=r, alpha=alpha)
    ss, _ = layer("ssvd", 16, 12, k=r)
    randomized(ap)
    with torch.no_grad():
        A = ap.symbols()["A"]
        A_c = ap.a_limit * torch.tanh(A / ap.a_limit)
        K = alpha / 2 * A_c
        rows, cols = torch.triu_indices(r, r, offset=1)
        ss.q.copy_(K[rows, cols])
        ss.dSigma.copy_(alpha * ap.dS)
        torch.testing.assert_close(ap.merged_weight(), ss.merged_weight(), rtol=0, atol=1e-13)
        W = ap.merged_weight()
        gram = ap.U.T @ W @ W.T @ ap.U
    torch.testing.assert_close(gram, torch.diag((ap.S + alpha * ap.dS.detach()) ** 2), rtol=0, atol=1e-12)
    assert ap.a_limit == pytest.approx(2 * math.tan(math.pi / 6))


def rotation_angles(R):
    return torch.linalg.eigvals(R).angle().abs()


def test_antipasto_soft_clamp_bounds_the_angle_only_for_a_single_plane():
    """Eq. 8 bounds each entry of A by a = 2 tan(θmax/2), which bounds the rotation angle for r = 2; for r > 2 the
    spectral norm of A_c, and with it the angle, can go far beyond θmax."""
    import math

    for r in (2, 8):
        module, _ = layer("antipasto", 16, 12, r=r)  # θmax = π/3
        with torch.no_grad():
            module.q.fill_(100.0)  # every entry saturates the clamp
            angle = float(rotation_angles(module.R_r()).max())
        if r == 2:
            assert angle <= math.pi / 3 + 1e-9
        else:
            assert angle > 2 * math.pi / 3  # more than twice θmax


def test_antipasto_select_dims_moves_the_subspace_and_keeps_identity():
    module, W0 = layer("antipasto", 16, 12, r=3)
    X = torch.randn(64, 16, generator=torch.Generator().manual_seed(2), dtype=DT)
    scores = module.wanda_scores(X)
    assert scores.shape == (12,)
    module.select_dims(torch.arange(12, dtype=DT))  # the three smallest singular triplets
    _, S, _ = torch.linalg.svd(W0)
    torch.testing.assert_close(module.S, S[-3:], rtol=0, atol=1e-12)
    x = torch.randn(4, 16, dtype=DT)
    torch.testing.assert_close(module(x), torch.nn.functional.linear(x, W0, module.base.bias), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="one entry per singular triplet"):
        module.select_dims(torch.arange(5))


@pytest.mark.parametrize("hp, match", [(dict(r=0), "r must be between 1 and"), (dict(theta_max=4.0), "theta_max")])
def test_antipasto_bad_hyperparameters_are_named(hp, match):
    with pytest.raises(ValueError, match=match):
        layer("antipasto", 16, 12, **hp)
