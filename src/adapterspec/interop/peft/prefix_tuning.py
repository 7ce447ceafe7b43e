"""Prefix tuning ⇄ peft 0.21.2's ``PrefixTuningConfig`` (``peft.tuners.prefix_tuning.model.PrefixEncoder``).

peft's ``PrefixEncoder`` holds the prefix as an ``nn.Embedding(n, 2·L·d)`` (``prefix_projection=False``, peft's
default), which is our ``P`` as it is, in the same layout (per row: layer by layer, key then value, head by head); or,
with ``prefix_projection=True``, an ``nn.Embedding(n, d)`` and the MLP ``Linear, Tanh, Linear``, which are our
``P'``, ``W1``, ``b1``, ``W2``, ``b2``. `hf_logits` is our method on a Hugging Face causal language model: the
prefix (`adapterspec.methods.prefix_tuning.reparameterize` where there is an MLP) is split per layer and head with
`adapterspec.methods.prefix_tuning.split_prefix`, the function the tiny-model module calls, written into a key/value
cache of ``n`` positions, and the model is run on the real tokens with an attention mask that shows the whole prefix
to every token. As in a cache, the model numbers the real tokens from ``n``. The equality matrix
(`adapterspec.interop.peft._models`) compares this, on an untouched copy of a small random GPT-2, with peft's model
(logits on the real tokens, greedily generated tokens).
"""

from __future__ import annotations

import torch

from adapterspec.interop.peft import PeftConversionError
from adapterspec.interop.peft._models import run_model_case
from adapterspec.methods.prefix_tuning import reparameterize, split_prefix

LAYER = "peft.tuners.prefix_tuning.model.PrefixEncoder"
CONFIG = "PrefixTuningConfig"
SHAPES = [(32, 4), (24, 2)]  # (d_model, n_heads) of the GPT-2 the matrix builds
BENCH = None  # not timed by scripts/bench_peft.py, which times one layer: see NOT_TIMED
NOT_TIMED = ("acts on a whole model (its input sequence or every layer's keys and values), not on one layer: "
             "scripts/bench_peft.py times single layers; equality is checked on whole tiny models instead")
CASES = [
    dict(num_virtual_tokens=3),  # peft's default: the prefix trained directly
    dict(num_virtual_tokens=5, prefix_projection=True, encoder_hidden_size=12),  # the paper's MLP
]


def prefix(peft_model, name: str = "default") -> torch.Tensor:
    """``P_θ (n, 2·L·d)`` of adapter ``name`` of a ``PeftModel`` (through its MLP when it has one)."""
    encoder = peft_model.prompt_encoder[name]
    if peft_model.peft_config[name].num_transformer_submodules != 1:
        raise PeftConversionError("only decoder-only models (num_transformer_submodules=1) are converted")
    if not encoder.prefix_projection:
        return encoder.embedding.weight.detach().clone()  # (n, 2Ld)
    first, last = encoder.transform[0], encoder.transform[2]
    return reparameterize(encoder.embedding.weight, first.weight, first.bias, last.weight, last.bias).detach()


def hf_logits(model, input_ids: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    """Prefix tuning on a Hugging Face causal LM: logits ``(B, T, V)`` of ``input_ids (B, T)`` with the prefix
    ``P (n, 2·L·d)`` in every layer's keys and values."""
    from transformers import DynamicCache

    config = model.config
    B, n = input_ids.shape[0], P.shape[0]
    kv = split_prefix(P, config.num_hidden_layers, config.num_attention_heads)  # (L, 2, H, n, h)
    cache = DynamicCache()
    for l in range(config.num_hidden_layers):
        cache.update(kv[l, 0].expand(B, -1, -1, -1), kv[l, 1].expand(B, -1, -1, -1), l)  # (B, H, n, h)
    mask = torch.ones(B, n + input_ids.shape[1], dtype=torch.long)  # the prefix is visible to every token
    return model(input_ids=input_ids, past_key_values=cache, attention_mask=mask).logits  # (B, T, V)


def convert(layer, base, name: str):
    raise PeftConversionError("prefix tuning has no tuner layer: it acts on the whole model; read the prefix with "
                              "adapterspec.interop.peft.prefix_tuning.prefix(peft_model) and run hf_logits")


def run_case(config: dict, shape: tuple[int, int], dtype: torch.dtype, seed: int = 0, formula: str | None = None):
    import peft

    cfg = peft.PrefixTuningConfig(task_type="CAUSAL_LM", **config)
    ours = lambda plain, model: (lambda ids, P=prefix(model): hf_logits(plain, ids, P))  # noqa: E731
    hp = {"n": config["num_virtual_tokens"]}
    if config.get("prefix_projection"):
        hp.update(projection=True, hidden=config["encoder_hidden_size"])
    return run_model_case("prefix-tuning", "gpt2", config, shape, dtype, seed, formula, cfg, ours, hp)
