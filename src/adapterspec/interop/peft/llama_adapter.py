"""LLaMA-Adapter ⇄ peft 0.21.2's ``AdaptionPromptConfig`` (``peft.tuners.adaption_prompt.layer.AdaptedAttention``).

peft wraps the attention of the top ``adapter_layers`` decoder layers in an ``AdaptedAttention`` holding
``adaption_prompt`` ``(1, n, d)`` (our ``P[j]``) and ``adaption_gate`` ``(1,)`` (our ``g[j]``, one gate per layer:
``per_head=False``). `attach` is our method on a Hugging Face Llama: a forward hook on each of those attention
blocks adds ``o_proj(g ⊙ softmax(q K_Pᵀ/√h) V_P)`` to the block's output, with ``K_P``, ``V_P`` from
`adapterspec.methods.llama_adapter.prompt_kv` (the function the tiny-model module calls) and the term from
`adapterspec.methods.llama_adapter.adaption_term` (equal to the tiny model's gated prefix, tested). ``q`` are the
block's queries after Llama's rotary embedding; the prompt's keys get none (they stand at no position), as in peft
and the official code. peft takes the prompt's softmax in float32 whatever the model's dtype, so in float64 the two
agree to float32 precision (relative tolerance 1e-5 there, `FLOAT64_TOLERANCE`; with the softmax in float32 on our
side too they agree to 1e-12, tested). The equality matrix (`adapterspec.interop.peft._models`) compares this, on an untouched copy
of a small random Llama, with peft's model (logits, greedily generated tokens).
"""

from __future__ import annotations

import torch

from adapterspec.interop.peft import PeftConversionError
from adapterspec.interop.peft._models import run_model_case
from adapterspec.methods.llama_adapter import adaption_term, prompt_kv

LAYER = "peft.tuners.adaption_prompt.layer.AdaptedAttention"
CONFIG = "AdaptionPromptConfig"
SHAPES = [(32, 4), (24, 2)]  # (d_model, n_heads) of the Llama the matrix builds
FLOAT64_TOLERANCE = 1e-5  # peft: F.softmax(scores, dtype=torch.float32) for the prompt's scores
BENCH = None  # not timed by scripts/bench_peft.py, which times one layer: see NOT_TIMED
NOT_TIMED = ("acts on a whole model (its input sequence or every layer's keys and values), not on one layer: "
             "scripts/bench_peft.py times single layers; equality is checked on whole tiny models instead")
CASES = [
    dict(adapter_len=3, adapter_layers=2),
    dict(adapter_len=5, adapter_layers=3),  # every layer
]


def prompts(peft_model) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """The adapted layer indices, ``P (layers, n, d)`` and ``g (layers, 1)`` of a peft Llama with adaption prompts."""
    from peft.tuners.adaption_prompt.layer import AdaptedAttention

    found = [(i, layer.self_attn) for i, layer in enumerate(peft_model.base_model.model.model.layers)
             if isinstance(layer.self_attn, AdaptedAttention)]
    if not found:
        raise PeftConversionError("no AdaptedAttention in the model: is it a Llama wrapped with AdaptionPromptConfig?")
    P = torch.stack([a.adaption_prompt.detach()[0] for _, a in found])  # (layers, n, d)
    g = torch.stack([a.adaption_gate.detach() for _, a in found])  # (layers, 1)
    return [i for i, _ in found], P, g


def attach(model, layer_ids: list[int], P: torch.Tensor, g: torch.Tensor) -> list:
    """Add the adaption prompts to a Hugging Face Llama's attention blocks ``layer_ids`` with forward hooks; returns
    the hook handles (``handle.remove()`` takes them off)."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    handles = []
    for j, i in enumerate(layer_ids):
        attn = model.model.layers[i].self_attn
        H, h = model.config.num_attention_heads, attn.head_dim
        if model.config.num_key_value_heads != H:
            raise PeftConversionError("grouped-query attention (num_key_value_heads < num_attention_heads) is not "
                                      "converted")

        def hook(module, args, kwargs, output, j=j, H=H, h=h):
            x = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]  # (B, T, d)
            cos, sin = kwargs["position_embeddings"]
            B, T, _ = x.shape
            q = module.q_proj(x).view(B, T, H, h).transpose(1, 2)  # (B, H, T, h)
            q, _ = apply_rotary_pos_emb(q, q, cos, sin)  # the queries as the block uses them
            K, V = prompt_kv(P[j], module.k_proj, module.v_proj, H)  # (H, n, h): no rotation
            extra = adaption_term(q, K, V, g[j])  # (B, H, T, h)
            out = output[0] + module.o_proj(extra.transpose(1, 2).reshape(B, T, H * h))
            return (out, *output[1:])

        handles.append(attn.register_forward_hook(hook, with_kwargs=True))
    return handles


def convert(layer, base, name: str):
    raise PeftConversionError("LLaMA-Adapter acts on several attention blocks of a whole model; read its tensors with "
                              "adapterspec.interop.peft.llama_adapter.prompts(peft_model) and attach them")


def run_case(config: dict, shape: tuple[int, int], dtype: torch.dtype, seed: int = 0, formula: str | None = None):
    import peft

    cfg = peft.AdaptionPromptConfig(task_type="CAUSAL_LM", **config)

    def ours(plain, model):
        attach(plain, *prompts(model))
        return lambda ids: plain(input_ids=ids).logits

    hp = {"n": config["adapter_len"], "layers": config["adapter_layers"]}
    return run_model_case("llama-adapter", "llama", config, shape, dtype, seed, formula, cfg, ours, hp,
                          tolerance={torch.float64: FLOAT64_TOLERANCE})
