"""Methods on a whole tiny transformer (soft prompts, prefixes, adaption prompts): the `ops.transformer` helper their
pseudocode uses, their property claims, and the page's note on dimensions resting on unchecked quotes."""

from __future__ import annotations

import pytest
import torch

import adapterspec
from adapterspec import ops
from adapterspec.tiny import example_model

D64 = torch.float64


@pytest.fixture(scope="module")
def model():
    return example_model(16, 4, torch.Generator().manual_seed(0), D64, n_layers=3).eval()


def _tokens(B=2, T=6):
    return torch.randint(16, (B, T), generator=torch.Generator().manual_seed(1))


def test_ops_transformer_is_the_tiny_model_written_out(model):
    x, theta = _tokens(), model.state_dict()
    for start in (0, 3):
        y = torch.stack([ops.transformer(theta, model.embed.weight[t], 4, start=start) for t in x])
        torch.testing.assert_close(y, model(x, start=start), rtol=1e-12, atol=1e-12)
    # attend replaces the attention: a wrong one (no causal mask) changes the logits
    leaky = lambda l, q, k, v: torch.softmax(q @ k.mT / q.shape[-1] ** 0.5, dim=-1) @ v  # noqa: E731
    assert (ops.transformer(theta, model.embed.weight[x[0]], 4, attend=leaky) - model(x)[0]).abs().max() > 1e-3


def test_prompt_tuning_is_not_the_identity_even_with_a_zero_prompt(model):
    module = adapterspec.create("prompt-tuning", model, n=3)
    with torch.no_grad():
        module.P.zero_()
        assert (module(_tokens()) - model(_tokens())).abs().max() > 1e-3


def test_bad_hyperparameters_are_named():
    m = example_model(16, 4, torch.Generator().manual_seed(0), D64)
    with pytest.raises(ValueError, match="n \\(the number of soft-prompt tokens\\)"):
        adapterspec.create("prompt-tuning", m, n=0)
    with pytest.raises(ValueError, match="init must be one of"):
        adapterspec.create("prompt-tuning", m, init="text")


def test_dimensions_resting_on_unchecked_quotes_are_named(catalog):
    from adapterspec.catalog.render import unchecked_dimensions
    from adapterspec.catalog.verify import Check, Result

    item = catalog.entries["prompt-tuning"]
    none_checked = Result(slug="prompt-tuning", file="x")
    assert unchecked_dimensions(item.entry, none_checked) == ["PE", "OOD"]
    one_found = Result(slug="prompt-tuning", file="x", checks=[Check("quote", True, field="evidence[0].quote")])
    assert unchecked_dimensions(item.entry, one_found) == ["OOD"]


def test_prefix_tuning_zero_prefix_is_not_the_identity(model):
    module = adapterspec.create("prefix-tuning", model, n=3)
    x = _tokens()
    with torch.no_grad():
        module.P.zero_()  # zero keys score 0 and zero values add nothing, but they still take softmax weight
        assert (module(x) - model(x)).abs().max() > 1e-3


def test_llama_adapter_term_is_the_tiny_models_gated_prefix(model):
    """The Hugging Face formulation's `adaption_term` and the tiny model's gated `PrefixKV` are the same maths."""
    from adapterspec.methods.llama_adapter import adaption_term, prompt_kv
    from adapterspec.tiny import PrefixKV

    attn = model.blocks[2].attn
    x = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(3), dtype=D64)
    P = torch.randn(3, 16, generator=torch.Generator().manual_seed(4), dtype=D64)
    g = torch.tensor([0.3, -0.7, 1.1, 0.0], dtype=D64)
    K, V = prompt_kv(P, attn.k_proj, attn.v_proj, 4)
    with torch.no_grad():
        q = attn.split_heads(attn.q_proj(x))  # (B, H, T, h)
        expected = attn(x) + attn.merge_heads(adaption_term(q, K, V, g)) @ attn.o_proj.weight.T
        torch.testing.assert_close(attn(x, PrefixKV(K, V, g)), expected, rtol=1e-12, atol=1e-12)


def test_llama_adapter_is_the_identity_until_its_gate_moves(model):
    module = adapterspec.create("llama-adapter", model, n=3, layers=2)
    x = _tokens()
    with torch.no_grad():
        torch.testing.assert_close(module(x), model(x), rtol=0, atol=0)
        module.g.fill_(0.5)
        assert (module(x) - model(x)).abs().max() > 1e-3
    with pytest.raises(ValueError, match="layers \\(how many top blocks"):
        adapterspec.create("llama-adapter", model, layers=4)
