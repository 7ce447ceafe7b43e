"""CLOVER's claims that the generic verifier does not cover, checked numerically in float64.

What CLOVER can change in a head, and what it cannot:

* each head's Q-K bilinear form $\\tilde W_Q^\\top \\tilde W_K$ (and V-O map $\\tilde W_V^\\top W_O^\\top$) can become
  exactly the matrices $U M V^\\top$ with $M$ any $r\\times r$ matrix, $U, V$ the frozen singular vectors at init: its
  column and row spaces never leave those of the pretrained product (the svd-aligned claim), and every such matrix
  is reached; a form with any component outside them is not;
* with ``diagonal`` only the singular values move: the singular vectors themselves stay fixed;
* the head's internal basis is a gauge freedom ($Q \\to QG$, $K \\to KG^{-\\top}$ leaves $QK^\\top$ unchanged):
  CLOVER's factors are the same for every such re-factorisation of the pretrained head;
* pruning to $r < h$ keeps the best rank-$r$ approximation of each product (Eckart–Young), never worse than dropping
  raw head dimensions;
* the update to ``k_proj`` is full rank across heads and rank $\\le r$ within each head; ``q_proj`` and ``o_proj``
  never move after init;
* the count $2Hh^2 = 2Dh$ equals LoRA of rank $h/4$ on the four projections (our arithmetic), and Appendix A.2's
  per-layer totals for LLaMA-2-7B are equal (1,753,088).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import adapterspec
from adapterspec.methods.clover import CLOVER
from adapterspec.tiny import TinyConfig, TinyTransformer, PrefixKV, example_attention

D64 = torch.float64


def _base(d_model=16, n_heads=4, seed=0, bias=True):
    return example_attention(d_model, n_heads, torch.Generator().manual_seed(seed), D64, bias=bias)


def _x(d_model=16, n=3, T=6, seed=1):
    return torch.randn(n, T, d_model, generator=torch.Generator().manual_seed(seed), dtype=D64)


def _tilde(proj: nn.Linear, i: int, h: int) -> torch.Tensor:
    """Head ``i``'s rows of ``[W | b]`` (``[W]`` without bias), ``(h, D+1)``."""
    W = proj.weight[i * h:(i + 1) * h]
    return torch.cat([W, proj.bias[i * h:(i + 1) * h, None]], 1) if proj.bias is not None else W


def _products(attn) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per head, the Q-K form ``W̃_qᵀ W̃_k`` and the V-O map ``W̃_vᵀ W_oᵀ`` of a plain attention block."""
    h = attn.head_dim
    qk = [_tilde(attn.q_proj, i, h).T @ _tilde(attn.k_proj, i, h) for i in range(attn.n_heads)]
    vo = [_tilde(attn.v_proj, i, h).T @ attn.o_proj.weight[:, i * h:(i + 1) * h].T for i in range(attn.n_heads)]
    return qk, vo


def _merged_block(module: CLOVER):
    """A copy of the base block holding the merged weights (the module itself is left unmerged)."""
    import copy

    block = copy.deepcopy(module.base)
    with torch.no_grad():
        for path, value in module.adapted_weights().items():
            block.get_parameter(path).copy_(value)
    return block


def _randomized(module: CLOVER, seed=2) -> CLOVER:
    return adapterspec.randomize_(module, torch.Generator().manual_seed(seed))


# -- init -------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bias", [True, False])
def test_identity_at_init_with_and_without_biases(bias):
    base, x = _base(bias=bias), _x()
    y0 = base(x)
    with torch.no_grad():
        torch.testing.assert_close(CLOVER(base)(x), y0, rtol=0, atol=1e-13)
        torch.testing.assert_close(CLOVER(base, diagonal=True)(x), y0, rtol=0, atol=1e-13)
        assert (CLOVER(base, r=2)(x) - y0).abs().max() > 1e-2  # pruning a random head changes it
    # without biases the factors are the paper's, in R^D
    assert CLOVER(base).U_qk.shape == (4, 16 + bias, 4)


def test_clover_wraps_a_block_of_the_tiny_transformer():
    model = TinyTransformer(TinyConfig(d_model=16, n_heads=4, seed=3, dtype=D64))
    tokens = torch.randint(16, (2, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model(tokens)
        model.blocks[1].attn = CLOVER(model.blocks[1].attn)  # the block calls attn(h, prefix)
        torch.testing.assert_close(model(tokens), before, rtol=0, atol=1e-12)


def test_prefix_keys_run_on_the_merged_weights():
    module = _randomized(CLOVER(_base()))
    x = _x()
    k, v = (torch.randn(4, 3, 4, generator=torch.Generator().manual_seed(s), dtype=D64) for s in (5, 6))
    with torch.no_grad():
        torch.testing.assert_close(module(x, PrefixKV(k, v)), _merged_block(module)(x, PrefixKV(k, v)))
        assert (module(x, PrefixKV(k, v)) - module(x)).abs().max() > 1e-3


# -- orthogonality of the frozen factors (not square: checked here rather than by properties.orthogonal) --------------
def _orthonormal_columns(M: torch.Tensor) -> float:
    """max|MᵀM − I| over a stack of ``(n, k)`` matrices."""
    eye = torch.eye(M.shape[-1], dtype=M.dtype)
    return float((M.mT @ M - eye).abs().max().detach())


@pytest.mark.parametrize("r", [None, 2])
def test_the_frozen_factors_and_the_merged_heads_are_orthonormal(r):
    module = _randomized(CLOVER(_base(), r=r))
    for name in ("U_qk", "V_qk", "U_vo", "V_vo"):
        assert _orthonormal_columns(getattr(module, name)) < 1e-12, name
    # after merging, each head's query rows [W_q | b_q] and output columns of W_o are orthonormal, in any state
    block, h, k = _merged_block(module), 4, module.r
    for i in range(4):
        assert _orthonormal_columns(_tilde(block.q_proj, i, h)[:k].T) < 1e-12
        assert _orthonormal_columns(block.o_proj.weight[:, i * h:i * h + k]) < 1e-12
        assert not _tilde(block.q_proj, i, h)[k:].any()  # pruned rows are zero
    # the check can fail: the pretrained heads are not orthonormal, nor are the trained key rows
    base = _base()
    assert _orthonormal_columns(_tilde(base.q_proj, 0, h).T) > 0.1
    assert _orthonormal_columns(_tilde(block.k_proj, 0, h)[:k].T) > 0.1


# -- svd-aligned: what training can and cannot change in a head -----------------------------------------------------
@pytest.mark.parametrize("diagonal", [False, True])
def test_each_head_stays_in_the_span_of_its_initial_singular_vectors(diagonal):
    base = _base()
    module = CLOVER(base, diagonal=diagonal)
    U_qk, V_qk, U_vo, V_vo = (getattr(module, n).clone() for n in ("U_qk", "V_qk", "U_vo", "V_vo"))
    qk0, vo0 = _products(base)
    qk, vo = _products(_merged_block(_randomized(module)))
    for i in range(4):
        for M, M0, U, V in ((qk[i], qk0[i], U_qk[i], V_qk[i]), (vo[i], vo0[i], U_vo[i], V_vo[i])):
            assert (M - M0).abs().max() > 1e-2  # training moved the head's product ...
            P_U, P_V = U @ U.T, V @ V.T
            # ... but only inside span(U) on the left and span(V) on the right
            torch.testing.assert_close(P_U @ M @ P_V, M, rtol=0, atol=1e-12)
            core = U.T @ M @ V  # (r, r): the product in CLOVER's coordinates
            off = core - torch.diag(torch.diagonal(core))
            if diagonal:  # only the singular values moved: the singular vectors are still U and V
                assert off.abs().max() < 1e-12
            else:  # the full core mixes the directions
                assert off.abs().max() > 1e-2


def test_the_span_check_catches_an_update_that_leaves_the_subspace():
    """The same test on LoRA, trained on the query projection: the Q-K product then leaves span(U_qk)."""
    base = _base()
    U = CLOVER(base).U_qk[0]  # (D+1, r)
    lora = _randomized(adapterspec.create("lora", base.q_proj, r=2))
    with torch.no_grad():
        Wq = torch.cat([lora.merged_weight()[:4], base.q_proj.bias[:4, None]], 1)  # head 0
        M = Wq.T @ _tilde(base.k_proj, 0, 4)
    assert ((torch.eye(17, dtype=D64) - U @ U.T) @ M).abs().max() > 1e-2


def test_every_form_u_m_vt_is_reached_and_nothing_outside_it():
    module = CLOVER(_base())
    g = torch.Generator().manual_seed(4)
    U, V = module.U_qk[1], module.V_qk[1]  # head 1, (17, 4) each
    with torch.no_grad():
        target = torch.randn(4, 4, generator=g, dtype=D64)
        module.S_qk[1] = target
        torch.testing.assert_close(_products(_merged_block(module))[0][1], U @ target @ V.T, rtol=0, atol=1e-12)
        # a generic rank-4 form: the best CLOVER can do is its projection U Uᵀ T V Vᵀ (set S = Uᵀ T V) ...
        T = torch.randn(17, 4, generator=g, dtype=D64) @ torch.randn(4, 17, generator=g, dtype=D64)
        module.S_qk[1] = U.T @ T @ V
        reached = _products(_merged_block(module))[0][1]
        best = (reached - T).norm()
        # ... which leaves the out-of-span part: by Pythagoras no S does better
        torch.testing.assert_close(best, (T - U @ U.T @ T @ V @ V.T).norm())
        assert best > 0.5 * T.norm()
        for _ in range(5):
            module.S_qk[1] = U.T @ T @ V + 0.1 * torch.randn(4, 4, generator=g, dtype=D64)
            assert (_products(_merged_block(module))[0][1] - T).norm() > best


# -- the gauge freedom CLOVER removes ---------------------------------------------------------------------------------------
def test_a_change_of_basis_inside_a_head_changes_the_weights_not_the_block_nor_clover():
    base, x = _base(), _x()
    regauged = _base()
    g = torch.Generator().manual_seed(8)
    with torch.no_grad():
        for i in range(4):
            rows = slice(i * 4, (i + 1) * 4)
            G = torch.randn(4, 4, generator=g, dtype=D64) + 2 * torch.eye(4, dtype=D64)  # invertible
            R = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=D64)).Q  # orthogonal: Q → QR, K → KR
            # queries q G, keys k G⁻ᵀ: q kᵀ unchanged
            for p, M in ((regauged.q_proj, G.T), (regauged.k_proj, torch.linalg.inv(G))):
                p.weight[rows], p.bias[rows] = M @ p.weight[rows], M @ p.bias[rows]
            # values v R, output columns W_o R: v W_oᵀ unchanged
            p = regauged.v_proj
            p.weight[rows], p.bias[rows] = R.T @ p.weight[rows], R.T @ p.bias[rows]
            regauged.o_proj.weight[:, rows] = regauged.o_proj.weight[:, rows] @ R
        assert (regauged.q_proj.weight - base.q_proj.weight).abs().max() > 0.1
        torch.testing.assert_close(regauged(x), base(x), rtol=0, atol=1e-12)
    a, b = CLOVER(base), CLOVER(regauged)
    for name in ("U_qk", "S_qk", "V_qk", "U_vo", "S_vo", "V_vo"):
        torch.testing.assert_close(getattr(b, name), getattr(a, name), rtol=0, atol=1e-10, msg=name)


# -- pruning ------------------------------------------------------------------------------------------------------------
def _vanilla_pruned(attn, i: int, r: int) -> torch.Tensor:
    """Head ``i``'s Q-K form after dropping its ``h − r`` raw dimensions of smallest ``‖w_q‖ ‖w_k‖`` (the paper's
    vanilla pruning by L2 norm)."""
    h = attn.head_dim
    Wq, Wk = _tilde(attn.q_proj, i, h), _tilde(attn.k_proj, i, h)  # (h, D+1)
    keep = (Wq.norm(dim=1) * Wk.norm(dim=1)).topk(r).indices
    return Wq[keep].T @ Wk[keep]


@pytest.mark.parametrize("r", [1, 2, 3])
def test_pruning_keeps_the_best_rank_r_form_of_each_head(r):
    base = _base()
    qk0, _ = _products(base)
    pruned, _ = _products(_merged_block(CLOVER(base, r=r)))
    for i in range(4):
        S = torch.linalg.svdvals(qk0[i])
        err = (pruned[i] - qk0[i]).norm()
        torch.testing.assert_close(err, S[r:].norm())  # Eckart–Young: the tail of the spectrum, nothing more
        assert err <= (_vanilla_pruned(base, i, r) - qk0[i]).norm() + 1e-12


def test_pruning_redundant_heads_is_exact_where_dropping_raw_dimensions_is_not():
    """The paper's "linear redundancy": heads whose Q-K form and V-O map have rank 2, spread over all 4 of their
    dimensions. CLOVER with r = 2 keeps the block's output exactly; dropping 2 raw dimensions per head does not."""
    base, x = _base(), _x()
    g = torch.Generator().manual_seed(9)
    with torch.no_grad():
        for i in range(4):
            rows = slice(i * 4, (i + 1) * 4)
            for p in (base.q_proj, base.v_proj):
                mix = torch.randn(4, 2, generator=g, dtype=D64) @ torch.randn(2, 4, generator=g, dtype=D64)  # rank 2
                p.weight[rows], p.bias[rows] = mix @ p.weight[rows], mix @ p.bias[rows]
        torch.testing.assert_close(CLOVER(base, r=2)(x), base(x), rtol=0, atol=1e-12)
        assert (CLOVER(base, r=1)(x) - base(x)).abs().max() > 1e-3
        qk0, _ = _products(base)
        for i in range(4):
            assert torch.linalg.matrix_rank(qk0[i]) == 2
            assert (_vanilla_pruned(base, i, 2) - qk0[i]).norm() > 1e-2 * qk0[i].norm()


# -- what the update looks like in the merged weights ---------------------------------------------------------------
def test_the_update_is_full_rank_across_heads_and_rank_r_within_each():
    module = CLOVER(_base(d_model=24, n_heads=3, bias=False))  # h = 8
    init = _merged_block(module)
    trained = _merged_block(_randomized(module))
    dK = trained.k_proj.weight - init.k_proj.weight  # (24, 24): S_qk moves only the key side
    assert torch.linalg.matrix_rank(dK) == 24  # "full-rank update" (Section 4.6) ...
    module_r = CLOVER(_base(d_model=24, n_heads=3, bias=False), r=3)
    K0 = _merged_block(module_r).k_proj.weight
    dK_r = _merged_block(_randomized(module_r)).k_proj.weight - K0
    for i in range(3):  # ... but each head's block has rank ≤ r
        assert torch.linalg.matrix_rank(dK_r[i * 8:(i + 1) * 8]) == 3
    for name in ("q_proj", "o_proj"):  # the query rows and output columns are the frozen factors
        torch.testing.assert_close(getattr(trained, name).weight, getattr(init, name).weight, rtol=0, atol=0)
    assert (trained.v_proj.weight - init.v_proj.weight).abs().max() > 1e-2


# -- parameter count ------------------------------------------------------------------------------------------------------
def test_count_equals_lora_of_rank_h_over_4_on_the_four_projections():
    module = CLOVER(_base(d_model=32, n_heads=2))  # h = 16
    lora = sum(adapterspec.create("lora", nn.Linear(32, 32, dtype=D64), r=4).num_trainable() for _ in range(4))
    assert module.num_trainable() == 2 * 2 * 16**2 == lora == 1024
    assert CLOVER(_base(), r=2).num_trainable() == 2 * 4 * 2**2
    assert CLOVER(_base(), diagonal=True).num_trainable() == 2 * 4 * 4


def test_appendix_a2_arithmetic():
    """LLaMA-2-7B (D = 4096, H = 32, h = 128, MLP 11008): CLOVER on Q-K, V-O and 172 blocks of 64 of the up/down pair
    has exactly LoRA rank 32's count on Q, K, V, up and down, 1,753,088 per layer. The attention part alone uses the
    module's count, 2 H h²."""
    D, H, h, ff, rank = 4096, 32, 128, 11008, 32
    clover = 2 * H * h**2 + (ff // 64) * 64**2
    lora = 3 * rank * (D + D) + 2 * rank * (D + ff)
    assert clover == lora == 1_753_088
    assert 2 * H * h**2 == 2 * D * h  # = LoRA rank h/4 on four D×D projections: 4 · (h/4) · 2D
    assert 2 * D * h == 4 * (h // 4) * 2 * D


# -- errors -------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, match", [
    (dict(r=0), "r=0 must be an integer from 1 to head_dim=4"),
    (dict(r=5), "r=5 must be an integer from 1 to head_dim=4"),
    (dict(r=2.0), "r=2.0 must be an integer"),
    (dict(diagonal="yes"), "diagonal must be True or False"),
])
def test_bad_hyperparameters_are_actionable(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CLOVER(_base(), **kwargs)
    with pytest.raises(TypeError, match="wraps a Attention"):
        CLOVER(nn.Linear(4, 4))
