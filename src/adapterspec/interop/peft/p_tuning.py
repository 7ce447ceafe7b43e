"""P-tuning ⇄ peft 0.21.2's ``PromptEncoderConfig`` (``peft.tuners.p_tuning.model.PromptEncoder``).

peft's ``PromptEncoder`` holds the encoder's inputs as ``embedding.weight`` ``(n, d)`` (our ``E_p``) and either
``mlp_head`` (``Linear, ReLU, Linear, ReLU, Linear``: our ``W1``…``b3``) or ``lstm_head``, an ``nn.LSTM`` with
``bidirectional=True`` (its ``weight_ih_l{k}`` and ``weight_ih_l{k}_reverse`` are our ``W_ih[2k]`` and
``W_ih[2k + 1]``, likewise ``weight_hh``, ``bias_ih``, ``bias_hh``) followed by ``mlp_head`` (``Linear, ReLU,
Linear``). `prompt` computes the soft prompt with our `adapterspec.methods.p_tuning.mlp_encoder` or
`adapterspec.methods.p_tuning.lstm_encoder` (our own LSTM, the functions the tiny-model module calls) from peft's
tensors; the prompt is then used as in prompt tuning (`adapterspec.interop.peft.prompt_tuning.hf_logits`). The
equality matrix (`adapterspec.interop.peft._models`) compares this, on an untouched copy of a small random GPT-2,
with peft's model (logits on the real tokens, greedily generated tokens).
"""

from __future__ import annotations

import torch

from adapterspec.interop.peft import PeftConversionError
from adapterspec.interop.peft._models import run_model_case
from adapterspec.interop.peft.prompt_tuning import hf_logits
from adapterspec.methods.p_tuning import lstm_encoder, mlp_encoder

LAYER = "peft.tuners.p_tuning.model.PromptEncoder"
CONFIG = "PromptEncoderConfig"
SHAPES = [(32, 4), (24, 2)]  # (d_model, n_heads) of the GPT-2 the matrix builds
BENCH = None  # not timed by scripts/bench_peft.py, which times one layer: see NOT_TIMED
NOT_TIMED = ("acts on a whole model (its input sequence or every layer's keys and values), not on one layer: "
             "scripts/bench_peft.py times single layers; equality is checked on whole tiny models instead")
CASES = [
    dict(num_virtual_tokens=3, encoder_hidden_size=10),  # peft's default MLP encoder
    dict(num_virtual_tokens=4, encoder_hidden_size=6, encoder_reparameterization_type="LSTM"),  # 2 layers
    dict(num_virtual_tokens=5, encoder_hidden_size=5, encoder_reparameterization_type="LSTM", encoder_num_layers=1),
]


def prompt(peft_model, name: str = "default") -> torch.Tensor:
    """The soft prompt ``(n, d)`` peft's ``PromptEncoder`` of adapter ``name`` produces, computed by our encoder."""
    encoder = peft_model.prompt_encoder[name]
    if peft_model.peft_config[name].num_transformer_submodules != 1:
        raise PeftConversionError("only decoder-only models (num_transformer_submodules=1) are converted")
    E_p = encoder.embedding.weight
    linears = [m for m in encoder.mlp_head if isinstance(m, torch.nn.Linear)]
    head = [t for lin in linears for t in (lin.weight, lin.bias)]
    if not hasattr(encoder, "lstm_head"):
        return mlp_encoder(E_p, *head).detach()
    lstm = encoder.lstm_head
    names = [f"l{k}{suffix}" for k in range(lstm.num_layers) for suffix in ("", "_reverse")]
    W_ih, W_hh, b_ih, b_hh = ([getattr(lstm, f"{kind}_{n}") for n in names]
                              for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    return lstm_encoder(E_p, W_ih, W_hh, b_ih, b_hh, *head).detach()


def convert(layer, base, name: str):
    raise PeftConversionError("P-tuning has no tuner layer: it acts on the whole model; read the prompt with "
                              "adapterspec.interop.peft.p_tuning.prompt(peft_model) and run "
                              "adapterspec.interop.peft.prompt_tuning.hf_logits")


def run_case(config: dict, shape: tuple[int, int], dtype: torch.dtype, seed: int = 0, formula: str | None = None):
    import peft

    cfg = peft.PromptEncoderConfig(task_type="CAUSAL_LM", **config)
    ours = lambda plain, model: (lambda ids, P=prompt(model): hf_logits(plain, ids, P))  # noqa: E731
    hp = {"n": config["num_virtual_tokens"], "hidden": config["encoder_hidden_size"]}
    if config.get("encoder_reparameterization_type") == "LSTM":
        hp.update(lstm=True, lstm_layers=config.get("encoder_num_layers", 2))
    return run_model_case("p-tuning", "gpt2", config, shape, dtype, seed, formula, cfg, ours, hp)
