"""What products of sparse orthogonal factors can and cannot reach: BOFT's butterfly and GOFT's Givens tree.

Stated on the BOFT and GOFT pages; every statement is measured here on a randomized (non-identity) state, in float64.

* BOFT($m$, $b$): the product of $m$ butterfly factors is block-diagonal with dense blocks of $b\\,2^{m-1}$
  consecutive inputs, so it is dense exactly when $m = \\log_2(d/b) + 1$; with $m = 1$ it is OFT.
* Neither family reaches all of $SO(d)$: the Jacobian of parameters ↦ $R$ has rank at most the parameter count,
  below $\\dim SO(d) = d(d-1)/2$, for BOFT even when dense ($\\tfrac12 (b-1) d m$) and for GOFT's $d-1$ angles. A
  butterfly of $\\log_2 d$ layers of $d/2$ Givens rotations is BOFT with $b = 2$: $\\tfrac{d}{2}\\log_2 d$ angles.
* GOFT's Theorem 4.1 does hold: some angles rotate any given vector onto $\\lVert x\\rVert e_1$.
* Both are rotations: determinant $+1$.
"""

from __future__ import annotations

import math

import pytest
import torch

import adapterspec
from adapterspec import randomize_
from adapterspec.methods.boft import BOFT
from adapterspec.methods.goft import GOFT
from adapterspec.methods.oft import OFT

DT = torch.float64


def _layer(d_in: int, d_out: int = 6) -> torch.nn.Linear:
    return torch.nn.Linear(d_in, d_out, dtype=DT)


def _boft(d: int, b: int, m: int, seed: int = 0) -> BOFT:
    return randomize_(BOFT(_layer(d), b=b, m=m), torch.Generator().manual_seed(seed))


class _Rotation(torch.nn.Module):
    """Calls ``module.rotation()``, so that `torch.func.functional_call` can swap the module's parameters."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self) -> torch.Tensor:
        return self.module.rotation().flatten()


def _jacobian_rank(module: torch.nn.Module, name: str) -> int:
    """Rank of d vec(R) / d (parameter ``name``) at the module's (randomized) state."""
    wrapper, p0 = _Rotation(module), getattr(module, name).detach().clone()
    J = torch.autograd.functional.jacobian(
        lambda p: torch.func.functional_call(wrapper, {f"module.{name}": p}, ()), p0)
    return int(torch.linalg.matrix_rank(J.reshape(J.shape[0], -1)))


# -- BOFT: the butterfly ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("d, b, m", [(32, 4, 1), (32, 4, 2), (32, 4, 3), (32, 4, 4), (32, 2, 5), (48, 6, 2),
                                     (64, 8, 3), (16, 2, 2)])
def test_butterfly_product_is_block_diagonal_with_blocks_of_b_times_2_to_the_m_minus_1(d, b, m):
    R = _boft(d, b, m).rotation().detach()
    span = b * 2 ** (m - 1)
    expected = torch.kron(torch.eye(d // span, dtype=DT), torch.ones(span, span, dtype=DT)) > 0
    assert torch.equal(R.abs() > 1e-12, expected)  # every entry inside a block non-zero, every entry outside zero
    assert (R.abs() > 1e-12).all() == (span == d)  # dense exactly when m = log2(d/b) + 1


def test_each_factor_has_b_nonzeros_per_row_and_the_product_fills_in():
    module = _boft(32, 4, 3)
    blocks = module.blocks().detach()
    eye = torch.eye(32, dtype=DT)
    for i in range(3):
        B = module._rotate(eye, i, blocks[i])  # I · B_{i+1}
        assert torch.equal((B.abs() > 1e-12).sum(1), torch.full((32,), 4))
        assert torch.allclose(B.T @ B, eye, atol=1e-12)


def test_boft_with_one_factor_is_oft():
    boft = _boft(24, 4, 1)
    oft = OFT(_layer(24), r=6)
    oft.base.load_state_dict(boft.base.state_dict())
    with torch.no_grad():
        oft.q.copy_(boft.q[0])
    assert torch.allclose(boft.rotation(), oft.rotation(), atol=1e-14)


@pytest.mark.parametrize("d, b, m", [(16, 2, 4), (16, 4, 3), (32, 2, 5), (8, 2, 3)])
def test_dense_butterfly_cannot_reach_all_rotations(d, b, m):
    module = _boft(d, b, m)
    params = module.num_trainable()
    assert params == m * d * (b - 1) // 2  # the paper's count, ½(b − 1)dm
    rank = _jacobian_rank(module, "q")
    assert (module.rotation().abs() > 1e-12).all()  # dense...
    assert rank <= params < d * (d - 1) // 2  # ...but its parameters span a small part of SO(d)


def test_butterfly_of_givens_rotations_is_boft_with_b_2():
    """log2 d layers of d/2 disjoint plane rotations = BOFT(b=2, m=log2 d): 2 × 2 Cayley blocks are rotations."""
    d = 16
    module = _boft(d, 2, int(math.log2(d)))
    blocks = module.blocks().detach()  # (4, 8, 2, 2)
    assert torch.allclose(blocks[..., 0, 0], blocks[..., 1, 1]) and torch.allclose(blocks[..., 0, 1], -blocks[..., 1, 0])
    assert module.num_trainable() == d // 2 * int(math.log2(d)) < d * (d - 1) // 2


# -- GOFT: the Givens tree -------------------------------------------------------------------------------------------
def _goft(d: int, seed: int = 0) -> GOFT:
    return randomize_(GOFT(_layer(d)), torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("d", [4, 8, 12, 16])
def test_givens_tree_has_d_minus_1_degrees_of_freedom_not_dim_so_d(d):
    module = _goft(d)
    assert module.num_trainable() == d - 1
    assert _jacobian_rank(module, "theta") == d - 1 < d * (d - 1) // 2


def test_givens_tree_cannot_fit_a_random_rotation_but_fits_its_own():
    """A least-squares fit of the d − 1 angles to a random rotation stays far from it; the same fit recovers a
    rotation the tree can express, so the optimiser is not the reason."""
    d = 6
    g = torch.Generator().manual_seed(3)
    A = torch.randn(d, d, generator=g, dtype=DT)
    Q, _ = torch.linalg.qr(A)
    if torch.linalg.det(Q) < 0:
        Q[:, 0] = -Q[:, 0]
    own = _goft(d, seed=7).rotation().detach()

    def best_fit(target):
        best = math.inf
        for start in range(4):
            module = _goft(d, seed=100 + start)
            opt = torch.optim.LBFGS([module.theta], max_iter=300, line_search_fn="strong_wolfe")

            def closure():
                opt.zero_grad()
                loss = (module.rotation() - target).pow(2).sum()
                loss.backward()
                return loss

            opt.step(closure)
            best = min(best, float((module.rotation().detach() - target).pow(2).sum().sqrt()))
        return best

    assert best_fit(own) < 1e-4
    assert best_fit(Q) > 0.5


@pytest.mark.parametrize("d", [8, 12, 7])
def test_theorem_4_1_any_vector_to_e1(d):
    """The true statement: the tree's angles can carry any x onto ‖x‖ e_1 (each plane zeroes its second coordinate)."""
    x = torch.randn(d, generator=torch.Generator().manual_seed(d), dtype=DT)
    module = GOFT(_layer(d))
    v, angles = x.clone(), []
    for i, j in module.planes:  # layer by layer, P_1 first
        theta = torch.atan2(-v[j], v[i])  # [[c, −s], [s, c]] (v_i, v_j) = (√(v_i² + v_j²), 0)
        vi, vj = v[i].clone(), v[j].clone()
        v[i], v[j] = torch.cos(theta) * vi - torch.sin(theta) * vj, torch.sin(theta) * vi + torch.cos(theta) * vj
        angles.append(theta)
    with torch.no_grad():
        module.theta.copy_(torch.cat(angles))
    e1 = torch.zeros(d, dtype=DT)
    e1[0] = x.norm()
    assert torch.allclose(module.rotation() @ x, e1, atol=1e-12)


def test_givens_tree_is_sparse():
    """Row i of R = P_L ⋯ P_1 mixes only its subtree: i = odd · 2^p reads the 2^(p+1) inputs [i − 2^p, i + 2^p)."""
    d = 16
    R = _goft(d).rotation().detach()
    for i in range(d):
        if i == 0:
            lo, hi = 0, d
        else:
            p = (i & -i).bit_length() - 1
            lo, hi = i - 2**p, i + 2**p
        support = (R[i].abs() > 1e-12).nonzero().flatten()
        assert torch.equal(support, torch.arange(lo, hi))
    assert int((R.abs() > 1e-12).sum()) < d * d


@pytest.mark.parametrize("slug, kw", [("boft", dict(b=4, m=3)), ("boft", dict(b=2, m=5)), ("goft", {})])
def test_rotations_have_determinant_plus_one(slug, kw):
    module = randomize_(adapterspec.create(slug, _layer(32), **kw), torch.Generator().manual_seed(1), scale=3.0)
    R = module.rotation().detach()
    assert torch.allclose(R.T @ R, torch.eye(32, dtype=DT), atol=1e-12)
    assert abs(float(torch.linalg.det(R)) - 1) < 1e-10
