"""OFTv2: peft 0.21.2's OFT layer read as the OFTv2 paper, pinned down (the OFTv2 page's discrepancies)."""

from __future__ import annotations

import pytest
import torch

peft = pytest.importorskip("peft")

from adapterspec import ops  # noqa: E402
from adapterspec.interop.equality import wrap  # noqa: E402
from adapterspec.interop.peft import PeftConversionError, from_peft  # noqa: E402
from adapterspec.methods.oft import OFT  # noqa: E402
from adapterspec.methods.oftv2 import OFTv2  # noqa: E402


def _oft_layer(scale: float = 0.3, **config):
    model, layer = wrap(torch.nn.Linear(24, 16, dtype=torch.float64), peft.OFTConfig(target_modules=["proj"], **config))
    model.double()
    with torch.no_grad():
        w = layer.oft_R["default"].weight
        w.copy_(torch.randn(w.shape, generator=torch.Generator().manual_seed(0), dtype=w.dtype) * scale)
    return layer


def test_one_peft_layer_two_entries_same_function():
    """from_peft picks OFT by default; method='oftv2' gives OFTv2; both compute peft's layer."""
    layer = _oft_layer(r=0, oft_block_size=6)
    x = torch.randn(3, 24, dtype=torch.float64)
    v1, v2 = from_peft(layer), from_peft(layer, method="oftv2")
    assert type(v1) is OFT and type(v2) is OFTv2
    with torch.no_grad():
        y = layer(x)
        assert torch.allclose(v1(x), y, atol=1e-12) and torch.allclose(v2(x), y, atol=1e-12)
        assert (y - layer.get_base_layer()(x)).abs().max() > 1e-2  # the comparison could fail
    assert v2.b == 6 and v2.k == 3  # peft's default five terms are the paper's k = 3


@pytest.mark.parametrize("terms, k", [(3, 2), (4, 2), (5, 3), (6, 4), (8, 6)])
def test_peft_term_count_is_the_expanded_series(terms, k):
    """n terms in peft = I + 2Q + … + 2Q^(n-2) + Q^(n-1) = (I + Q)(I + Q + … + Q^(n-2)): the paper's k = n − 2
    (with n = 3 giving the same series as n = 4)."""
    layer = _oft_layer(r=0, oft_block_size=4, num_cayley_neumann_terms=terms)
    rot = layer.oft_R["default"]
    with torch.no_grad():
        R_peft = rot._cayley_batch(rot.weight, 4, True, terms)
        Q = ops.skew(rot.weight.detach(), 4)
        I = torch.eye(4, dtype=torch.float64)
        R_paper = (I + Q) @ sum(torch.linalg.matrix_power(Q, j) for j in range(k + 1))
        expanded = I + sum(2 * torch.linalg.matrix_power(Q, j) for j in range(1, k + 1)) + torch.linalg.matrix_power(Q, k + 1)
    assert torch.allclose(R_peft, R_paper, atol=1e-12) and torch.allclose(R_paper, expanded, atol=1e-12)
    assert from_peft(layer, method="oftv2").k == k


def test_two_term_series_is_not_the_papers_form():
    """peft's n = 2 is I + 2Q, the first-order Cayley map, which no k reproduces: refused, saying why."""
    layer = _oft_layer(r=0, oft_block_size=4, num_cayley_neumann_terms=2)
    with pytest.raises(PeftConversionError, match="num_cayley_neumann_terms=2"):
        from_peft(layer, method="oftv2")


def test_coft_is_refused_by_oftv2_but_converts_as_oft():
    layer = _oft_layer(r=3, oft_block_size=0, coft=True, eps=0.05)
    with pytest.raises(PeftConversionError, match="candidates: oft"):
        from_peft(layer, method="oftv2")
    assert type(from_peft(layer)) is OFT


def test_peft_forward_is_input_centric():
    """peft's forward never forms the rotated weight: it rotates the input and calls the base layer with it."""
    layer = _oft_layer(r=0, oft_block_size=4)
    seen = []
    hook = layer.get_base_layer().register_forward_hook(lambda m, args, out: seen.append(args[0].detach().clone()))
    x = torch.randn(2, 24, dtype=torch.float64)
    with torch.no_grad():
        layer(x)
    hook.remove()
    ours = from_peft(layer, method="oftv2")
    with torch.no_grad():
        x_rot = torch.einsum("...ki,kij->...kj", x.unflatten(-1, (ours.n, ours.b)), ours.blocks()).flatten(-2)
    assert len(seen) == 1 and torch.allclose(seen[0], x_rot, atol=1e-12)  # the base layer saw Rᵀx
    assert (seen[0] - x).abs().max() > 1e-2
