"""GOFT's quasi-Givens variant (qGOFT, Eq. 5) and the hyperparameter errors of BOFT and GOFT.

The GOFT entry verifies strict GOFT only (qGOFT is not orthogonal, so the entry's properties cannot hold for it);
qGOFT's own claims are checked here, on a randomized state.
"""

from __future__ import annotations

import pytest
import torch

from adapterspec import randomize_
from adapterspec.methods.boft import BOFT
from adapterspec.methods.goft import GOFT

DT = torch.float64


def _pair(d_in: int = 12, d_out: int = 7):
    base = torch.nn.Linear(d_in, d_out, dtype=DT)
    strict, quasi = GOFT(base), GOFT(torch.nn.Linear(d_in, d_out, dtype=DT), quasi=True)
    quasi.base.load_state_dict(base.state_dict())
    return strict, quasi


def test_qgoft_is_the_identity_at_init_and_counts_four_numbers_per_rotation():
    _, quasi = _pair()
    x = torch.randn(3, 12, dtype=DT)
    with torch.no_grad():
        assert torch.equal(quasi(x), quasi.base(x))
    assert quasi.num_trainable() == 4 * (12 - 1)
    assert float(quasi.regularizer().detach()) == 0.0


def test_qgoft_with_rotation_blocks_is_goft():
    strict, quasi = _pair()
    randomize_(strict, torch.Generator().manual_seed(0))
    with torch.no_grad():
        quasi.G.copy_(strict.blocks())
    x = torch.randn(3, 12, dtype=DT)
    with torch.no_grad():
        assert torch.allclose(quasi(x), strict(x), atol=1e-13)
        assert float(quasi.regularizer()) < 1e-24  # rotation blocks have orthogonal columns


def test_qgoft_relaxes_orthogonality_and_merges_exactly():
    _, quasi = _pair()
    randomize_(quasi, torch.Generator().manual_seed(1))
    with torch.no_grad():
        R = quasi.rotation()
        assert (R.T @ R - torch.eye(12, dtype=DT)).abs().max() > 1e-2  # not a rotation any more
        W0, W = quasi.base.weight, quasi.merged_weight()
        assert (W @ W.T - W0 @ W0.T).abs().max() > 1e-3  # neuron norms and angles move
        x = torch.randn(4, 12, dtype=DT)
        y = quasi(x)
        quasi.merge()
        assert torch.allclose(quasi(x), y, atol=1e-12)
        quasi.unmerge()
    G = quasi.G.detach()
    penalty = ((G[:, 0, 0] * G[:, 0, 1] + G[:, 1, 0] * G[:, 1, 1]) ** 2).sum()  # Σ ⟨α_i, β_i⟩², columns of G̃_i
    assert torch.allclose(quasi.regularizer(), penalty)


@pytest.mark.parametrize("kw, word", [(dict(b=3, m=2), "b=3"), (dict(b=4, m=0), "m=0"), (dict(b=8, m=3), "d_in=24"),
                                      (dict(b=5, m=1), "d_in=24")])
def test_boft_rejects_bad_hyperparameters_with_a_reason(kw, word):
    with pytest.raises(ValueError, match=word):
        BOFT(torch.nn.Linear(24, 8), **kw)


def test_goft_needs_two_inputs():
    with pytest.raises(ValueError, match="d_in=1"):
        GOFT(torch.nn.Linear(1, 4))
