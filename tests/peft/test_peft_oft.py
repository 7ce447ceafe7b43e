"""OFT: where peft 0.21.2 departs from the paper, pinned down (the OFT page's discrepancies)."""

from __future__ import annotations

import pytest
import torch

peft = pytest.importorskip("peft")

from adapterspec import ops  # noqa: E402
from adapterspec.interop.equality import wrap  # noqa: E402
from adapterspec.interop.peft import from_peft  # noqa: E402
from adapterspec.methods.oft import OFT  # noqa: E402


def _oft_layer(scale: float, **config):
    model, layer = wrap(torch.nn.Linear(24, 16, dtype=torch.float64), peft.OFTConfig(target_modules=["proj"], **config))
    model.double()
    with torch.no_grad():
        w = layer.oft_R["default"].weight
        w.copy_(torch.randn(w.shape, generator=torch.Generator().manual_seed(0), dtype=w.dtype) * scale)
    return layer


def test_peft_exact_branch_is_the_papers_map_of_minus_Q():
    layer = _oft_layer(0.2, r=3, oft_block_size=0, use_cayley_neumann=False)
    x = torch.randn(4, 24, dtype=torch.float64)
    q = layer.oft_R["default"].weight.detach()
    same_q = OFT(torch.nn.Linear(24, 16, dtype=torch.float64), r=3)
    same_q.base.load_state_dict(layer.get_base_layer().state_dict())
    with torch.no_grad():
        same_q.q.copy_(q)
        y_peft, y_paper = layer(x), same_q(x)
        same_q.q.copy_(-q)
        y_flipped = same_q(x)
    assert torch.allclose(y_flipped, y_peft, atol=1e-12)  # R_peft(Q) = R_paper(−Q) = R_paper(Q)ᵀ
    assert (y_paper - y_peft).abs().max() > 1e-2  # not a rounding difference: the rotation is inverted


@pytest.mark.parametrize("q_norm", [0.05, 0.3, 0.8])
def test_neumann_series_error_is_within_its_bound(q_norm):
    """R − R_m = (I + Q) Q^m (I − Q)⁻¹ exactly, so ‖R − R_m‖₂ ≤ √(1 + ‖Q‖²) ‖Q‖^m (‖(I − Q)⁻¹‖₂ ≤ 1 for skew Q)."""
    base = torch.nn.Linear(24, 16, dtype=torch.float64)
    exact, series = OFT(base, r=3), OFT(base, r=3, neumann_order=4)  # peft's default, 5 terms, is m = 4
    with torch.no_grad():
        q = torch.randn(exact.q.shape, dtype=torch.float64)
        q *= q_norm / torch.linalg.matrix_norm(ops.skew(q, exact.b), ord=2).max()  # largest block has ‖Q‖₂ = q_norm
        exact.q.copy_(q)
        series.q.copy_(q)
    q2 = torch.linalg.matrix_norm(ops.skew(q, exact.b), ord=2)  # (r,)
    gap = torch.linalg.matrix_norm(exact.blocks() - series.blocks(), ord=2)  # (r,)
    bound = torch.sqrt(1 + q2**2) * q2**4
    assert torch.all(gap <= bound * (1 + 1e-9)) and torch.all(gap > 0.01 * bound)
    # and the series is only approximately orthogonal, so peft's default OFT does not keep neuron norms exactly
    R = series.blocks()
    defect = (R.transpose(-1, -2) @ R - torch.eye(exact.b, dtype=torch.float64)).abs().max()
    assert defect > 1e-6 * q_norm**5


def test_peft_3_and_4_term_series_are_the_same():
    """A quirk of peft 0.21.2's loop: num_cayley_neumann_terms=3 and =4 both give I + 2Q + 2Q² + Q³."""
    x = torch.randn(4, 24, dtype=torch.float64)
    y3 = _oft_layer(0.3, r=3, oft_block_size=0, num_cayley_neumann_terms=3)
    y4 = _oft_layer(0.3, r=3, oft_block_size=0, num_cayley_neumann_terms=4)
    y4.get_base_layer().load_state_dict(y3.get_base_layer().state_dict())
    with torch.no_grad():
        assert torch.equal(y3(x), y4(x))
        assert from_peft(y3).neumann_order == from_peft(y4).neumann_order == 3
