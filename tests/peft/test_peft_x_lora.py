"""X-LoRA against peft 0.21.2's ``XLoraModel``, end to end on a random GPT-2 holding the tiny transformer's weights.

peft's X-LoRA wraps a whole transformers model and loads its experts from saved LoRA adapters, so the comparison is of
logits on the same tokens: our `XLoRA` on a `TinyTransformer`, and peft's on a ``GPT2LMHeadModel`` (built from a
config, nothing downloaded) into which the tiny model's weights are copied (GPT-2's ``Conv1D`` stores ``Wᵀ``; Q, K, V
are one fused ``c_attn``). Each expert is a peft LoRA on ``mlp.c_fc`` and ``mlp.c_proj`` (our ``mlp.up``, ``mlp.down``)
with our expert's tensors, saved with ``save_pretrained`` to a temporary folder and loaded by ``XLoraConfig(adapters=
...)``; the scaling head's weights are copied into peft's classifier.

peft 0.21.2's adapter loader rewrites every saved key to start with ``model.`` (``_load_adapter_into_lora_model``), which
fits Llama-style models whose top module is ``model`` but not GPT-2 (``transformer``): it fails with "Got unexpected
keys!". The GPT-2 model is therefore held in a wrapper whose one child is called ``model`` (`_Named`). The same loader
names the ``i``-th expert ``str(i)`` but activates the keys of ``adapters``, so those keys must be ``"0"``, ``"1"``, …
(other names fail with a ``KeyError``).
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

from adapterspec import randomize_  # noqa: E402
from adapterspec.methods.x_lora import XLoRA  # noqa: E402
from adapterspec.tiny import TinyTransformer  # noqa: E402

D64 = torch.float64


class _Named(nn.Module):
    """A transformers model under the attribute ``model``, which peft 0.21.2's X-LoRA adapter loader assumes."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.config = model, model.config

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)


@torch.no_grad()
def gpt2_from_tiny(tiny: TinyTransformer) -> nn.Module:
    """A ``GPT2LMHeadModel`` computing exactly what ``tiny`` computes (exact GELU, untied head, no dropout)."""
    c = tiny.config
    config = transformers.GPT2Config(
        vocab_size=c.vocab_size, n_positions=c.max_len, n_embd=c.d_model, n_layer=c.n_layers, n_head=c.n_heads,
        n_inner=c.d_ff, activation_function="gelu", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        layer_norm_epsilon=c.eps, tie_word_embeddings=False, use_cache=False, bos_token_id=0, eos_token_id=0)
    with torch.random.fork_rng(devices=[]):
        m = transformers.GPT2LMHeadModel(config).to(c.dtype).eval()
    t = m.transformer
    t.wte.weight.copy_(tiny.embed.weight)
    t.wpe.weight.copy_(tiny.pos.weight)
    for block, h in zip(tiny.blocks, t.h):
        a = block.attn
        for ours, theirs in ((block.norm1, h.ln_1), (block.norm2, h.ln_2)):
            theirs.weight.copy_(ours.weight)
            theirs.bias.copy_(ours.bias)
        h.attn.c_attn.weight.copy_(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]).T)  # Conv1D: Wᵀ
        h.attn.c_attn.bias.copy_(torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]))
        for ours, theirs in ((a.o_proj, h.attn.c_proj), (block.mlp.up, h.mlp.c_fc), (block.mlp.down, h.mlp.c_proj)):
            theirs.weight.copy_(ours.weight.T)
            theirs.bias.copy_(ours.bias)
    t.ln_f.weight.copy_(tiny.norm.weight)
    t.ln_f.bias.copy_(tiny.norm.bias)
    m.lm_head.weight.copy_(tiny.lm_head.weight)
    return m


def peft_xlora(ours: XLoRA, folder, **options) -> nn.Module:
    """peft's X-LoRA with our experts (saved, then loaded from ``folder``) and our scaling head."""
    tiny, L = ours.base, ours.base.config.n_layers
    paths = {}
    for i in range(ours.n_experts):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lora = peft.get_peft_model(_Named(gpt2_from_tiny(tiny)), peft.LoraConfig(
                r=ours.r, lora_alpha=ours.alpha, target_modules=["mlp.c_fc", "mlp.c_proj"], fan_in_fan_out=True))
        with torch.no_grad():
            for l in range(L):
                mlp = lora.base_model.model.model.transformer.h[l].mlp
                for layer, A, B in ((mlp.c_fc, ours.A_up, ours.B_up), (mlp.c_proj, ours.A_down, ours.B_down)):
                    layer.lora_A["default"].weight.copy_(A[l, i])  # (r, d_in)
                    layer.lora_B["default"].weight.copy_(B[l, i])  # (d_out, r)
        paths[str(i)] = str(folder / f"expert{i}")  # named "0", "1", …: see the module docstring
        lora.save_pretrained(paths[str(i)])
    config = peft.XLoraConfig(
        hidden_size=tiny.config.d_model, adapters=paths, xlora_depth=ours.depth, xlora_size=ours.size,
        layerwise_scalings=ours.layerwise, enable_softmax=ours.enable_softmax, softmax_temperature=ours.temperature,
        top_k_lora=ours.top_k or None, enable_softmax_topk=ours.softmax_topk, xlora_dropout_p=0.0,
        scaling_pass_value=ours.scaling_pass_value, global_scaling_weight=ours.global_scaling_weight, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = peft.get_peft_model(_Named(gpt2_from_tiny(tiny)), config).to(tiny.config.dtype).eval()
    head = [m for m in model.base_model.internal_xlora_classifier.layers if isinstance(m, nn.Linear)]
    assert len(head) == len(ours.head)
    with torch.no_grad():
        for theirs, mine in zip(head, ours.head):
            theirs.weight.copy_(mine.weight)
            theirs.bias.copy_(mine.bias)
    return model


def _ours(seed=0, **hp) -> tuple[XLoRA, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    tiny = XLoRA.example_base(16, 4, g, D64)
    ours = XLoRA(copy.deepcopy(tiny), **{"n_experts": 3, "r": 2, "alpha": 4.0, **hp}).eval()
    randomize_(ours, torch.Generator().manual_seed(seed + 1))
    return ours, torch.randint(tiny.config.vocab_size, (2, 7), generator=g)


def test_the_gpt2_copy_computes_what_the_tiny_transformer_computes():
    ours, tokens = _ours()
    torch.testing.assert_close(gpt2_from_tiny(ours.base)(tokens).logits, ours.base(tokens), rtol=1e-12, atol=1e-12)


CASES = [
    dict(),  # peft's defaults: one linear head, softmax, scalings shared by every layer
    dict(depth=2, size=8, layerwise=True),
    dict(depth=3, size=8, temperature=0.5, global_scaling_weight=2.0),
    dict(top_k=2, enable_softmax=False, softmax_topk=True),
    dict(top_k=1, scaling_pass_value=0.5),  # a non-zero scaling pass: the experts act in pass 1 too
]


@pytest.mark.parametrize("hp", CASES, ids=lambda hp: ",".join(f"{k}={v}" for k, v in hp.items()) or "defaults")
def test_logits_equal_peft_xlora(hp, tmp_path):
    ours, tokens = _ours(**hp)
    model = peft_xlora(ours, tmp_path)
    with torch.no_grad():
        y_peft, y_ours = model(input_ids=tokens).logits, ours(tokens)
        moved = (y_peft - ours.base(tokens)).abs().max()
    assert moved > 1e-3  # the experts change the output: the comparison could fail
    err = float((y_ours - y_peft).abs().max() / y_peft.abs().max())
    assert err < 1e-12, err
    # trainable parameters: the scaling head only (the experts are frozen), the same count in both
    assert ours.num_trainable() == sum(p.numel() for p in model.parameters() if p.requires_grad)
    # and peft's own record of the scalings of pass 2 equals ours
    torch.testing.assert_close(model.base_model.internal_xlora_scalings, ours.scalings(tokens).detach())


def test_a_wrong_expert_is_caught(tmp_path):
    ours, tokens = _ours()
    model = peft_xlora(ours, tmp_path)
    with torch.no_grad():
        ours.B_down[1, 2] *= 1.01  # one expert of one layer, off by 1%
        assert (model(input_ids=tokens).logits - ours(tokens)).abs().max() > 1e-6


def test_not_the_identity_at_init_and_the_scaling_pass_ignores_the_head():
    """At init the experts are already trained (non-zero) and the head is random, so the model is not the pretrained
    one; with scaling_pass_value = 0 the hidden states the head reads are the pretrained model's."""
    g = torch.Generator().manual_seed(3)
    tiny = XLoRA.example_base(16, 4, g, D64)
    ours = XLoRA(copy.deepcopy(tiny), n_experts=2)
    tokens = torch.randint(16, (2, 5), generator=g)
    assert (ours(tokens) - tiny(tokens)).abs().max() > 1e-3
    zero = torch.zeros(2, 5, ours.n_lora_layers, 2, dtype=D64)
    torch.testing.assert_close(tiny.lm_head(ours.run(tokens, zero)), tiny(tokens), rtol=1e-12, atol=1e-12)
    lam = ours.scalings(tokens)
    torch.testing.assert_close(lam.sum(-1), torch.ones(2, 5, ours.n_lora_layers, dtype=D64))


def test_bad_hyperparameters_are_actionable():
    tiny = XLoRA.example_base(16, 4, torch.Generator().manual_seed(0), D64)
    with pytest.raises(ValueError, match="top_k must be 0"):
        XLoRA(tiny, n_experts=2, top_k=3)
    with pytest.raises(ValueError, match="temperature must be positive"):
        XLoRA(tiny, temperature=0.0)
    with pytest.raises(ValueError, match="depth must be a positive integer"):
        XLoRA(tiny, depth=0)
