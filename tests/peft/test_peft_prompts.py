"""Soft prompts, prefixes, prompt encoders and adaption prompts against peft 0.21.2, on small random transformers
models built from a config (nothing downloaded): the equality cells of `adapterspec.interop.peft._models`, that a
wrong conversion is caught, and where peft (with transformers) departs from the method, pinned."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

peft = pytest.importorskip("peft")

from adapterspec.interop.equality import randomize_peft_  # noqa: E402
from adapterspec.interop.peft import converters  # noqa: E402
from adapterspec.interop.peft._models import greedy, hf_model  # noqa: E402

D64 = torch.float64


def _wrapped(arch, config, seed=0, d_model=32, n_heads=4):
    base = hf_model(arch, d_model, n_heads, seed)
    plain = copy.deepcopy(base).to(D64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = peft.get_peft_model(base, config).to(D64).eval()
    randomize_peft_(model, torch.Generator().manual_seed(seed))
    ids = torch.randint(40, (2, 7), generator=torch.Generator().manual_seed(seed + 1))
    return plain, model, ids


# -- prompt tuning -------------------------------------------------------------------------------------------------------
def test_prompt_tuning_cell_passes_and_a_wrong_prompt_is_caught(monkeypatch):
    conv = converters()["prompt-tuning"]
    res = conv.run_case(conv.CASES[1], (24, 2), D64, seed=1, formula="n * d_model")
    assert res.ok, res.problem()
    assert res.moved > 1e-2 and res.peft_params == res.ours_params == 6 * 24 == res.formula_params
    real = conv.prompt
    monkeypatch.setattr(conv, "prompt", lambda model, name="default": real(model, name) * 1.001)
    off = conv.run_case(conv.CASES[1], (24, 2), D64, seed=1)
    assert not off.ok and off.output_error > 1e-6


def test_prompt_tuning_logits_are_the_real_tokens_of_the_prompted_sequence():
    from adapterspec.interop.peft.prompt_tuning import hf_logits, prompt

    plain, model, ids = _wrapped("gpt2", peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    with torch.no_grad():
        full = model(input_ids=ids).logits  # peft returns the 4 virtual positions' logits as well
        assert full.shape[1] == 4 + ids.shape[1]
        torch.testing.assert_close(hf_logits(plain, ids, prompt(model)), full[:, 4:], rtol=1e-12, atol=1e-12)


def test_peft_cached_generation_of_a_soft_prompted_gpt2_drifts_from_the_forward_pass():
    """Discrepancy pinned (peft 0.21.2, transformers 5): with its key/value cache, peft's ``generate`` of a
    prompt-tuned GPT-2 gives next-token logits that differ from the model's own forward pass over the same sequence
    from the second generated token on; without the cache it matches. The equality matrix compares uncached
    generation."""
    from adapterspec.interop.peft.prompt_tuning import hf_logits, prompt

    plain, model, ids = _wrapped("gpt2", peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3))
    P = prompt(model)
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=3, do_sample=False,
                             output_logits=True, return_dict_in_generate=True)
        gaps = [float((lg - hf_logits(plain, out.sequences[:, :7 + k], P)[:, -1]).abs().max())
                for k, lg in enumerate(out.logits)]
        uncached = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=3,
                                  do_sample=False, use_cache=False)
    assert gaps[0] < 1e-6 and min(gaps[1:]) > 1e-3, gaps  # the first token is right, the cached ones drift
    assert torch.equal(uncached, greedy(lambda i: hf_logits(plain, i, P), ids, 3))


# -- prefix tuning -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", [0, 1])
def test_prefix_tuning_cells_pass_and_a_wrong_layout_is_caught(case, monkeypatch):
    conv = converters()["prefix-tuning"]
    formula = ("n * d_model + hidden * (d_model + 1) + 2 * n_layers * d_model * (hidden + 1) if projection "
               "else n * 2 * n_layers * d_model")
    res = conv.run_case(conv.CASES[case], (24, 2), D64, seed=2, formula=formula)
    assert res.ok, res.problem()
    assert res.peft_params == res.ours_params == res.formula_params
    import adapterspec.methods.prefix_tuning as method

    # keys and values swapped in the layout: caught
    swapped = lambda P, L, H: method.split_prefix(P, L, H).flip(1)  # noqa: E731
    monkeypatch.setattr(conv, "split_prefix", swapped)
    off = conv.run_case(conv.CASES[case], (24, 2), D64, seed=2)
    assert not off.ok and off.output_error > 1e-3


# -- LLaMA-Adapter -------------------------------------------------------------------------------------------------------
def test_llama_adapter_cell_passes_and_a_missing_output_projection_is_caught(monkeypatch):
    conv = converters()["llama-adapter"]
    res = conv.run_case(conv.CASES[0], (24, 2), torch.float32, seed=3,
                        formula="layers * (n * d_model + (n_heads if per_head else 1))")
    assert res.ok, res.problem()
    assert res.peft_params == res.ours_params == res.formula_params == 2 * (3 * 24 + 1)
    import adapterspec.methods.llama_adapter as method

    monkeypatch.setattr(conv, "adaption_term", lambda q, K, V, g: 2 * method.adaption_term(q, K, V, g))
    off = conv.run_case(conv.CASES[0], (24, 2), torch.float32, seed=3)
    assert not off.ok and off.output_error > 1e-3


def test_peft_takes_the_prompt_softmax_in_float32(monkeypatch):
    """Discrepancy pinned: in a float64 model peft's adaption prompt agrees with the exact formula only to float32
    precision; with the softmax taken in float32 on our side as well, the two agree to 1e-12."""
    import math

    conv = converters()["llama-adapter"]
    plain, model, ids = _wrapped("llama", peft.AdaptionPromptConfig(task_type="CAUSAL_LM", adapter_len=3,
                                                                    adapter_layers=2), seed=4)
    ours = copy.deepcopy(plain)
    conv.attach(ours, *conv.prompts(model))
    with torch.no_grad():
        y_peft, exact = model(input_ids=ids).logits, ours(input_ids=ids).logits
        gap = float((exact - y_peft).abs().max() / y_peft.abs().max())

        def float32_softmax(q, K, V, g):
            S = q @ K.mT / math.sqrt(q.shape[-1])
            return g.reshape(-1, 1, 1) * (torch.softmax(S, dim=-1, dtype=torch.float32).to(q.dtype) @ V)

        monkeypatch.setattr(conv, "adaption_term", float32_softmax)
        like_peft = copy.deepcopy(plain)
        conv.attach(like_peft, *conv.prompts(model))
        close = float((like_peft(input_ids=ids).logits - y_peft).abs().max() / y_peft.abs().max())
    assert 1e-12 < gap < conv.FLOAT64_TOLERANCE and close < 1e-12, (gap, close)


# -- P-tuning ------------------------------------------------------------------------------------------------------------
def test_p_tuning_lstm_cell_passes_and_a_wrong_gate_order_is_caught(monkeypatch):
    conv = converters()["p-tuning"]
    res = conv.run_case(conv.CASES[1], (24, 2), D64, seed=5)
    assert res.ok, res.problem()
    assert res.peft_params == res.ours_params
    import adapterspec.methods.p_tuning as method

    def swapped(E_p, W_ih, W_hh, b_ih, b_hh, *head):  # forget and input gates exchanged
        perm = lambda t: torch.cat([t.chunk(4)[1], t.chunk(4)[0], *t.chunk(4)[2:]])  # noqa: E731
        return method.lstm_encoder(E_p, [perm(w) for w in W_ih], [perm(w) for w in W_hh], [perm(b) for b in b_ih],
                                   [perm(b) for b in b_hh], *head)

    monkeypatch.setattr(conv, "lstm_encoder", swapped)
    off = conv.run_case(conv.CASES[1], (24, 2), D64, seed=5)
    assert not off.ok and off.output_error > 1e-6
