"""The equality matrix for methods that act on a whole model (soft prompts, prefixes, adaption prompts).

peft implements these as prompt-learning models (`PromptEmbedding`, `PrefixEncoder`, `PromptEncoder`) or as a wrapper
of each attention block (`AdaptedAttention`), not as a tuner layer around one ``nn.Linear``, so the one-layer matrix of
`adapterspec.interop.equality` cannot compare them. A converter for such a method defines ``run_case`` (which the
matrix calls instead) with `run_model_case`:

1. a small causal language model is built from a transformers config with random weights (GPT-2 or Llama; nothing is
   downloaded), under a seed;
2. peft wraps it (``get_peft_model``) and every trainable peft tensor is moved away from its init;
3. the converter copies peft's tensors into *our* formulation of the method, written as a function of the same Hugging
   Face model (its input embeddings, its key/value cache, its attention blocks), and run on an untouched copy of it;
4. compared: the logits on the real tokens (peft's model returns the virtual positions' logits too for soft prompts:
   those are dropped, as our module does), and the tokens each side generates greedily (peft's ``generate`` with
   ``use_cache=False`` against a plain argmax loop over our formulation: with its key/value cache, peft 0.21.2's
   generation of a soft-prompted GPT-2 under transformers 5 drifts from the model's own forward pass, which
   ``tests/peft/test_peft_prompts.py`` pins); and the trainable-parameter count of our tiny-model module with the same
   hyperparameters, of peft's model, and of the entry's formula.
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Callable

import torch
from torch import nn

from adapterspec.catalog.formula import evaluate_formula
from adapterspec.interop.equality import TOLERANCE, CaseResult, randomize_peft_
from adapterspec.registry import create, hyperparameters
from adapterspec.tiny import example_model

N_LAYERS = 3
VOCAB = 40
T, NEW_TOKENS = 7, 4  # real tokens per sequence; tokens generated greedily


def hf_model(arch: str, d_model: int, n_heads: int, seed: int) -> nn.Module:
    """A randomly initialised ``GPT2LMHeadModel`` or ``LlamaForCausalLM`` (``arch``: ``"gpt2"`` or ``"llama"``) of
    width ``d_model`` with ``n_heads`` heads and `N_LAYERS` blocks, float32, in eval mode; a function of ``seed``."""
    import transformers

    if arch == "gpt2":
        config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=d_model, n_layer=N_LAYERS,
                                         n_head=n_heads, bos_token_id=None, eos_token_id=None)
        cls = transformers.GPT2LMHeadModel
    else:
        config = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=d_model, intermediate_size=2 * d_model,
                                          num_hidden_layers=N_LAYERS, num_attention_heads=n_heads,
                                          num_key_value_heads=n_heads, max_position_embeddings=64,
                                          initializer_range=0.2, bos_token_id=None, eos_token_id=None,
                                          pad_token_id=None)  # weights N(0, 0.2²): a prompt's effect is visible
        cls = transformers.LlamaForCausalLM
    config._attn_implementation = "eager"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(config)
    return model.eval()


def greedy(logits_of: Callable[[torch.Tensor], torch.Tensor], ids: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` tokens appended greedily: each from the argmax of ``logits_of(sequence so far)`` at its last real
    position (no cache: the whole sequence is run again each step)."""
    for _ in range(steps):
        nxt = logits_of(ids)[:, -1].argmax(dim=-1, keepdim=True)  # (B, 1)
        ids = torch.cat([ids, nxt], dim=1)
    return ids


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach() - b.detach()).abs().max() / b.detach().abs().max().clamp_min(1e-30))


def run_model_case(slug: str, arch: str, config: dict, shape: tuple[int, int], dtype: torch.dtype, seed: int,
                   formula: str | None, peft_config, ours: Callable[[nn.Module, nn.Module], Callable],
                   our_hyperparameters: dict, tolerance: dict | None = None) -> CaseResult:
    """One cell of the matrix (see the module docstring).

    Args:
        slug: the method.
        arch: ``"gpt2"`` or ``"llama"``, the model peft wraps.
        config: the case's peft keyword arguments (for the label).
        shape: ``(d_model, n_heads)``.
        dtype: float32 or float64.
        seed: seeds the model, peft's init and the randomisation.
        formula: the entry's trainable-parameter formula, or None.
        peft_config: the peft config object to wrap the model with.
        ours: ``ours(plain, peft_model)`` returns our formulation, ``logits(input_ids) → (B, T, V)`` on the real
            tokens, built on ``plain`` (an untouched copy of the Hugging Face model) from peft's tensors.
        our_hyperparameters: keyword arguments of our tiny-model module equivalent to ``config``.
        tolerance: per dtype, a looser relative tolerance where peft computes part of the method in lower precision
            (the converter says why).
    """
    d_model, n_heads = shape
    tol = (tolerance or {}).get(dtype, TOLERANCE[dtype])
    res = CaseResult(slug, config, shape, str(dtype).removeprefix("torch."), math.inf, None, -1, -1, tol)
    try:
        import peft

        g = torch.Generator().manual_seed(seed)
        base = hf_model(arch, d_model, n_heads, seed)
        plain = copy.deepcopy(base).to(dtype)
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.manual_seed(seed)
            model = peft.get_peft_model(base, peft_config)
        model = model.to(dtype).eval()
        res.peft_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        randomize_peft_(model, g)
        ids = torch.randint(VOCAB, (2, T), generator=g)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y_base = plain(input_ids=ids).logits  # before `ours`, which may hook into `plain`
            logits_ours = ours(plain, model)
            y_peft = model(input_ids=ids).logits[:, -T:]  # soft prompts: peft returns the virtual positions too
            y_ours = logits_ours(ids)
            res.output_error = _rel(y_ours, y_peft)
            res.moved = _rel(y_peft, y_base)
            gen_peft = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS,
                                      do_sample=False, pad_token_id=0, use_cache=False)[:, -(T + NEW_TOKENS):]
            gen_ours = greedy(logits_ours, ids, NEW_TOKENS)
        if not torch.equal(gen_peft, gen_ours):
            res.error = (f"greedy generation differs: peft {gen_peft[:, T:].tolist()}, ours {gen_ours[:, T:].tolist()} "
                         f"(logits differ by {res.output_error:.1e})")
        tiny = example_model(d_model, n_heads, torch.Generator().manual_seed(seed), torch.float64, n_layers=N_LAYERS,
                             vocab_size=VOCAB, max_len=64)
        res.ours_params = create(slug, tiny, **our_hyperparameters).num_trainable()
        if formula is not None:
            names = {**hyperparameters(slug), **our_hyperparameters, "d_model": d_model, "n_heads": n_heads,
                     "n_layers": N_LAYERS, "vocab_size": VOCAB, "d_in": d_model, "d_out": n_heads}
            res.formula_params = int(evaluate_formula(formula, names))
    except Exception as e:  # noqa: BLE001 — reported, and the test fails on it
        res.error = f"{type(e).__name__}: {e}"
    return res
