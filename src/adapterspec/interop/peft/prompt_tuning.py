"""Prompt tuning ⇄ peft 0.21.2's ``PromptTuningConfig`` (``peft.tuners.prompt_tuning.model.PromptEmbedding``).

peft keeps the soft prompt as the weight of an ``nn.Embedding`` with ``num_virtual_tokens`` rows,
``model.prompt_encoder[name].embedding.weight`` (for a decoder-only model ``num_transformer_submodules = 1``), which is
our ``P (n, d)`` as it is. `hf_logits` is our method on any Hugging Face causal language model: the input ids are
embedded by the model's own (frozen) embedding, the prompt is put before them with `prepend`, the very function the
tiny-model module (`adapterspec.methods.prompt_tuning`) calls, and the prompt's positions are dropped from the
logits. There is no tuner layer to convert: the equality matrix (`adapterspec.interop.peft._models`) wraps a small
random GPT-2 with peft, copies peft's prompt into `hf_logits` on an untouched copy of the same GPT-2, and compares
the logits on the real tokens and the tokens generated greedily.
"""

from __future__ import annotations

import torch

from adapterspec.interop.peft import PeftConversionError
from adapterspec.interop.peft._models import run_model_case
from adapterspec.methods.prompt_tuning import prepend

LAYER = "peft.tuners.prompt_tuning.model.PromptEmbedding"
CONFIG = "PromptTuningConfig"
SHAPES = [(32, 4), (24, 2)]  # (d_model, n_heads) of the GPT-2 the matrix builds
BENCH = None  # not timed by scripts/bench_peft.py, which times one layer: see NOT_TIMED
NOT_TIMED = ("acts on a whole model (its input sequence or every layer's keys and values), not on one layer: "
             "scripts/bench_peft.py times single layers; equality is checked on whole tiny models instead")
CASES = [
    dict(num_virtual_tokens=3),  # peft's default RANDOM init: nn.Embedding's N(0, 1)
    dict(num_virtual_tokens=6, prompt_tuning_init="SAMPLE_VOCAB"),
]


def prompt(peft_model, name: str = "default") -> torch.Tensor:
    """peft's soft prompt ``P (n, d)`` for adapter ``name`` of a ``PeftModel``."""
    config = peft_model.peft_config[name]
    if config.num_transformer_submodules != 1:
        raise PeftConversionError("an encoder-decoder model has one prompt per submodule; only decoder-only models "
                                  "(num_transformer_submodules=1) are converted")
    return peft_model.prompt_encoder[name].embedding.weight.detach().clone()  # (n, d)


def hf_logits(model, input_ids: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    """Prompt tuning on a Hugging Face causal LM: logits ``(B, T, V)`` of ``input_ids (B, T)`` on the real tokens."""
    e = model.get_input_embeddings()(input_ids)  # (B, T, d)
    return model(inputs_embeds=prepend(P, e)).logits[:, P.shape[0]:]  # (B, T, V)


def convert(layer, base, name: str):
    raise PeftConversionError("prompt tuning has no tuner layer: it acts on the whole model; read the prompt with "
                              "adapterspec.interop.peft.prompt_tuning.prompt(peft_model) and run hf_logits")


def run_case(config: dict, shape: tuple[int, int], dtype: torch.dtype, seed: int = 0, formula: str | None = None):
    import peft

    cfg = peft.PromptTuningConfig(task_type="CAUSAL_LM", **config)
    P_of = lambda plain, model: (lambda ids, P=prompt(model): hf_logits(plain, ids, P))  # noqa: E731
    return run_model_case("prompt-tuning", "gpt2", config, shape, dtype, seed, formula, cfg, P_of,
                          {"n": config["num_virtual_tokens"]})
