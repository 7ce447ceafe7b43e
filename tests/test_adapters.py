"""Invariants every reference module must satisfy, over the whole registry (the way peft's test matrix runs one
set of checks over every method), plus the maths of the shared ``ops`` vocabulary."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch
from torch import nn

import adapterspec
from adapterspec import ops
from adapterspec.catalog import load_catalog
from conftest import ENTRIES

SLUGS = adapterspec.available()
# Each module runs in its entry's verified configuration (hyperparameters and first shape): no per-method table here.
CONFIG = {it.entry.module_slug: it.entry for it in load_catalog(ENTRIES)}


def make(slug, dtype=torch.float64, seed=0, shape=None, **hp):
    entry = CONFIG[slug]
    d_in, d_out = shape or entry.implementation.shapes[0]
    g = torch.Generator().manual_seed(seed)
    cls = adapterspec.adapter_class(slug)
    base = cls.example_base(d_in, d_out, g, dtype)
    pristine = copy.deepcopy(base)
    module = adapterspec.create(slug, base, **{**entry.implementation.hyperparameters, **hp})
    return module, pristine, cls.example_inputs(base, 5, g, dtype)


@pytest.mark.parametrize("slug", SLUGS)
def test_identity_at_init_then_randomize_moves_output(slug):
    module, pristine, x = make(slug)
    if CONFIG[slug].properties.identity_at_init:
        torch.testing.assert_close(module(x), pristine(x), rtol=1e-12, atol=1e-12)
    adapterspec.randomize_(module, torch.Generator().manual_seed(1))
    assert (module(x) - pristine(x)).abs().max() > 1e-3
    if module.has_delta_weight():
        assert module.delta_weight().abs().max() > 1e-3


@pytest.mark.parametrize("slug", [s for s in SLUGS if adapterspec.adapter_class(s).mergeable])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_merge_equals_unmerged_and_unmerge_is_exact(slug, dtype):
    module, _, x = make(slug, dtype=dtype)
    adapterspec.randomize_(module, torch.Generator().manual_seed(2))
    frozen = {k: v.clone() for k, v in module.base.state_dict().items()}
    y = module(x)
    if module.has_delta_weight():
        torch.testing.assert_close(module.merged_weight(), frozen["weight"] + module.delta_weight())
    module.merge()
    assert module.merged
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(module(x), y, rtol=tol, atol=tol)
    module.merge()  # idempotent
    module.unmerge()
    assert all(torch.equal(module.base.state_dict()[k], v) for k, v in frozen.items())
    torch.testing.assert_close(module(x), y, rtol=tol, atol=tol)


@pytest.mark.parametrize("slug", SLUGS)
def test_only_adapter_parameters_train(slug):
    module, _, x = make(slug)
    adapterspec.randomize_(module, torch.Generator().manual_seed(3))
    module(x).square().sum().backward()
    assert all(p.grad is None for p in module.base.parameters())
    trainable = module.trainable_parameters()
    assert trainable and all(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable.values())
    assert module.num_trainable() == sum(p.numel() for p in trainable.values())


@pytest.mark.parametrize("slug", SLUGS)
def test_create_rejects_unknown_hyperparameter(slug):
    with pytest.raises(TypeError, match="unknown hyperparameter.*valid"):
        adapterspec.create(slug, nn.Linear(8, 8), not_a_knob=1)


def test_create_unknown_slug_lists_available():
    with pytest.raises(KeyError, match="available: .*lora"):
        adapterspec.create("lorra", nn.Linear(4, 4))


def test_adapter_wraps_only_linear():
    with pytest.raises(TypeError, match="nn.Linear"):
        adapterspec.create("lora", nn.Conv1d(4, 4, 1))


def test_svd_signs_are_canonical():
    W = torch.randn(7, 5, dtype=torch.float64)
    U, S, Vh = ops.svd(W)
    torch.testing.assert_close(U @ torch.diag(S) @ Vh, W)
    flip = torch.tensor([1, -1, -1, 1, -1], dtype=torch.float64)
    U2, S2, Vh2 = ops.svd((U * flip) @ torch.diag(S) @ (flip[:, None] * Vh))  # same matrix, other signs
    torch.testing.assert_close(U2, U)
    torch.testing.assert_close(Vh2, Vh)


def test_cayley_is_orthogonal_and_matches_its_definition():
    q = torch.randn(3, 6, dtype=torch.float64)
    Q = ops.skew(q, 4)
    torch.testing.assert_close(Q, -Q.transpose(-1, -2))
    R = ops.cayley(Q)
    I = torch.eye(4, dtype=torch.float64)
    torch.testing.assert_close(R.transpose(-1, -2) @ R, I.expand(3, 4, 4))
    torch.testing.assert_close(R, (I + Q) @ torch.linalg.inv(I - Q))
    assert torch.allclose(torch.linalg.det(R), torch.ones(3, dtype=torch.float64))


def test_pissa_splits_principal_and_residual():
    module, pristine, _ = make("pissa", shape=(16, 12), r=3, alpha=6.0)  # a scaling other than 1
    W = pristine.weight
    U, S, Vh = torch.linalg.svd(W)
    principal = U[:, :3] @ torch.diag(S[:3]) @ Vh[:3]
    torch.testing.assert_close(module.scaling * module.B @ module.A, principal)
    torch.testing.assert_close(module.base.weight, W - principal)
    torch.testing.assert_close(torch.linalg.svdvals(module.base.weight)[:3], S[3:6])


def test_oft_keeps_neuron_norms_and_angles():
    module, pristine, _ = make("oft")
    adapterspec.randomize_(module, torch.Generator().manual_seed(4))
    W = module.merged_weight()
    torch.testing.assert_close(W @ W.T, pristine.weight @ pristine.weight.T)


def test_dora_rows_have_magnitude_m():
    module, _, _ = make("dora")
    adapterspec.randomize_(module, torch.Generator().manual_seed(5))
    torch.testing.assert_close(module.merged_weight().norm(dim=1), module.m.detach())


def test_ia3_output_scaling_scales_bias_input_scaling_does_not():
    att, pristine, x = make("ia3", shape=(16, 12))
    ff, _, _ = make("ia3", shape=(16, 12), feedforward=True)
    adapterspec.randomize_(att, torch.Generator().manual_seed(6))
    adapterspec.randomize_(ff, torch.Generator().manual_seed(6))
    torch.testing.assert_close(att(x), att.l * pristine(x))
    torch.testing.assert_close(ff(x), pristine(x * ff.l))
    assert att.l.shape == (12,) and ff.l.shape == (16,)


def test_importing_adapterspec_does_not_import_peft():
    code = "import sys, adapterspec, adapterspec.catalog, adapterspec.interop.peft; assert 'peft' not in sys.modules, 'peft imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
