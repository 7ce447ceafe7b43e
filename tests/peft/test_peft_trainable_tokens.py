"""Trainable Tokens against peft 0.21.2 on whole (tiny, random, nothing downloaded) transformers models: the logits a
user sees, with tied embeddings (GPT-2: peft also wraps the output layer, sharing the rows) and untied ones (Llama:
only the input side changes); and the two places peft and the reference module differ (repeated ids; the stored
tensor holds values, not differences)."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

from adapterspec.interop.equality import randomize_peft_  # noqa: E402
from adapterspec.interop.peft import PeftConversionError, from_peft  # noqa: E402
from adapterspec.methods.trainable_tokens import TrainableTokens  # noqa: E402
from peft.tuners.trainable_tokens.layer import TrainableTokensLayer  # noqa: E402

TOKENS = [3, 17, 8, 41]


def gpt2():
    """A tiny GPT-2 (tied input and output embeddings, as GPT-2 has), random weights."""
    cfg = transformers.GPT2Config(vocab_size=48, n_embd=16, n_layer=2, n_head=2, n_positions=32)
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(cfg).double().eval()


def llama():
    """A tiny Llama with untied embeddings, random weights."""
    cfg = transformers.LlamaConfig(vocab_size=48, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                   num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=False)
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(cfg).double().eval()


def peft_model(model, **config):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapped = peft.get_peft_model(copy.deepcopy(model), peft.TrainableTokensConfig(token_indices=TOKENS, **config))
    randomize_peft_(wrapped, torch.Generator().manual_seed(1))
    return wrapped.eval()


def tokens():
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(48, (3, 12), generator=g)
    ids[:, ::3] = torch.tensor(TOKENS[:4])  # every sequence reads the trained tokens
    return ids


@pytest.mark.parametrize("build, tied", [(gpt2, True), (llama, False)])
def test_logits_equal_peft_with_tied_and_untied_embeddings(build, tied):
    model = build()
    wrapped = peft_model(model)
    embed = wrapped.get_input_embeddings()
    assert isinstance(embed, TrainableTokensLayer)
    head = wrapped.base_model.model.lm_head
    assert isinstance(head, TrainableTokensLayer) == tied  # peft follows the tie to the output layer
    ours = from_peft(embed)
    assert isinstance(ours, TrainableTokens) and ours.token_indices == tuple(TOKENS)
    assert ours.num_trainable() == sum(p.numel() for p in wrapped.parameters() if p.requires_grad) == 4 * 16
    x = tokens()
    with torch.no_grad():
        y_peft = wrapped(input_ids=x).logits
        # ours: the adapted table in the frozen model (its lm_head shares the table when tied)
        mine = copy.deepcopy(model)
        mine.get_input_embeddings().weight.copy_(ours.merged_weight())
        y_ours = mine(input_ids=x).logits
        y_base = model(input_ids=x).logits
    torch.testing.assert_close(y_ours, y_peft, rtol=0, atol=1e-12)
    assert float((y_peft - y_base).abs().max()) > 1e-2
    # the output vectors of the trained tokens move with a tied table, and only then
    other = [t for t in range(48) if t not in TOKENS]
    with torch.no_grad():
        h = torch.randn(5, 16, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        own_head = head(h) - model.lm_head(h)  # peft's output layer against the frozen one, same hidden states
    assert (float(own_head[..., TOKENS].abs().max()) > 1e-3) == tied
    assert float(own_head[..., other].abs().max()) == 0.0
    if tied:
        with pytest.raises(PeftConversionError, match="tied lm_head"):
            from_peft(head)


def test_merged_model_equals_peft_merge_and_unload():
    model = gpt2()
    wrapped = peft_model(model)
    ours = from_peft(wrapped.get_input_embeddings())
    x = tokens()
    with torch.no_grad():
        y_peft = wrapped(input_ids=x).logits
        merged = wrapped.merge_and_unload()
        ours.merge()
        torch.testing.assert_close(merged.get_input_embeddings().weight, ours.base.weight, rtol=0, atol=0)
        torch.testing.assert_close(merged(input_ids=x).logits, y_peft, rtol=0, atol=1e-12)


def test_peft_stores_values_not_differences():
    """``trainable_tokens_delta`` starts as a copy of the rows (not zeros) and is written over the table."""
    model = llama()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapped = peft.get_peft_model(copy.deepcopy(model), peft.TrainableTokensConfig(token_indices=TOKENS))
    stored = wrapped.get_input_embeddings().trainable_tokens_delta["default"]
    torch.testing.assert_close(stored, model.get_input_embeddings().weight[TOKENS], rtol=0, atol=0)
    ours = from_peft(wrapped.get_input_embeddings())
    torch.testing.assert_close(ours.delta_weight(), torch.zeros_like(ours.delta_weight()), rtol=0, atol=0)


def test_repeated_ids_peft_accepts_them_ours_refuses():
    """peft trains two rows for a repeated id and keeps one of them (``index_copy``); the reference refuses."""
    model = llama()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapped = peft.get_peft_model(copy.deepcopy(model), peft.TrainableTokensConfig(token_indices=[5, 5, 9]))
    assert sum(p.numel() for p in wrapped.parameters() if p.requires_grad) == 3 * 16  # a wasted row
    with pytest.raises(ValueError, match="token_indices must be distinct"):
        TrainableTokens(copy.deepcopy(model.get_input_embeddings()), token_indices=[5, 5, 9])
