"""HRA: where peft 0.21.2 departs from the paper or from exact orthogonality, pinned down (the HRA page's
discrepancies)."""

from __future__ import annotations

import pytest
import torch

peft = pytest.importorskip("peft")

from adapterspec.interop.equality import wrap  # noqa: E402
from adapterspec.interop.peft import from_peft  # noqa: E402
from adapterspec.methods.hra import HRA  # noqa: E402


def _hra_layer(dtype=torch.float64, d_in=24, d_out=16, **config):
    model, layer = wrap(torch.nn.Linear(d_in, d_out), peft.HRAConfig(target_modules=["proj"], **config))
    model.to(dtype)
    return layer


def _orthogonality_defect(H: torch.Tensor) -> float:
    eye = torch.eye(H.shape[0], dtype=H.dtype)
    return float((H.T @ H - eye).abs().max())


@pytest.mark.parametrize("r", [2, 4, 6])
def test_peft_even_r_is_the_identity_at_init(r):
    layer = _hra_layer(r=r)
    x = torch.randn(3, 24, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(layer(x), layer.get_base_layer()(x), atol=1e-12)
        assert torch.allclose(from_peft(layer)(x), layer(x), atol=1e-12)
    assert torch.equal(layer.hra_u["default"][:, 0::2], layer.hra_u["default"][:, 1::2])  # the pairs


@pytest.mark.parametrize("r", [1, 3, 5])
def test_peft_odd_r_is_not_the_identity_at_init_and_cannot_be(r):
    layer = _hra_layer(r=r)
    H = layer.get_delta_weight("default").detach()  # peft's name for the product H_1 … H_r
    assert _orthogonality_defect(H) < 1e-12
    assert torch.linalg.det(H).item() == pytest.approx(-1.0, abs=1e-10)  # det = (−1)^r: never I
    assert float(torch.linalg.matrix_norm(H - torch.eye(24, dtype=torch.float64))) >= 2 - 1e-9


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_peft_gram_schmidt_on_its_paired_init_is_not_orthogonal(dtype):
    """apply_GS=True with peft's default init: each second column equals the first, Gram–Schmidt normalises rounding
    noise, and the 'strictly orthogonal' H is neither orthogonal nor the identity, in float32 and float64 alike."""
    layer = _hra_layer(dtype=dtype, r=4, apply_GS=True)
    u = layer.hra_u["default"].detach()
    assert torch.equal(u[:, 0], u[:, 1])
    H = layer.get_delta_weight("default").detach().double()
    assert _orthogonality_defect(H) > 1e-2
    x = torch.randn(3, 24, dtype=dtype)
    with torch.no_grad():
        assert (layer(x) - layer.get_base_layer()(x)).abs().max() > 1e-2


def test_our_gram_schmidt_init_is_exactly_orthogonal_at_fixed_distance():
    base = torch.nn.Linear(24, 16, dtype=torch.float64)
    for r in (3, 4):
        H = HRA(base, r=r, apply_GS=True).reflection().detach()
        assert _orthogonality_defect(H) < 1e-12
        assert float(torch.linalg.matrix_norm(H - torch.eye(24, dtype=torch.float64))) == pytest.approx(2 * r**0.5)


def test_peft_gram_schmidt_equals_qr_on_a_random_state():
    """Our module uses QR instead of peft's Gram–Schmidt loop: same subspace, so the same H (a random, full-rank V)."""
    layer = _hra_layer(r=5, apply_GS=True)
    with torch.no_grad():
        layer.hra_u["default"].copy_(torch.randn(24, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    H_peft = layer.get_delta_weight("default").detach()
    assert torch.allclose(from_peft(layer).reflection(), H_peft, atol=1e-12)


def test_the_regulariser_is_not_in_peft():
    """Eq. (6)'s λ‖I − UᵀU‖² is a training loss: peft's config has no field for it (the page's caveat)."""
    fields = set(peft.HRAConfig.__dataclass_fields__)
    assert not any("lambda" in f or "reg" in f or "orth" in f for f in fields), fields
