"""The tiny transformer (`adapterspec.tiny`) and adapters on modules other than one ``nn.Linear``: determinism, the
causal mask, the hook points, merging into several weights, and verification of such a method end to end."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import adapterspec
from adapterspec import registry
from adapterspec.adapter import Adapter
from adapterspec.catalog import load_catalog, verify_entry
from adapterspec.tiny import (Attention, PrefixKV, TinyConfig, TinyTransformer, example_attention, example_model,
                              next_token_loss, pretrain)
from test_bad_entries import GOOD, write_catalog

D64 = torch.float64
CONFIG = TinyConfig(vocab_size=11, d_model=16, n_heads=4, n_layers=3, d_ff=24, max_len=20, seed=3, dtype=D64)


def tokens(B=3, T=9, seed=0):
    return torch.randint(CONFIG.vocab_size, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def model():
    return example_model(16, 4, torch.Generator().manual_seed(0), D64, vocab_size=11, n_layers=3, max_len=20).eval()


# -- the model ---------------------------------------------------------------------------------------------------------
def test_weights_are_a_function_of_the_seed_and_leave_the_global_generator_alone():
    state = torch.random.get_rng_state()
    a, b = TinyTransformer(CONFIG), TinyTransformer(CONFIG)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    c = TinyTransformer(TinyConfig(**{**vars(CONFIG), "seed": 4}))
    assert not torch.equal(a.embed.weight, c.embed.weight)
    torch.testing.assert_close(a(tokens()), b(tokens()), rtol=0, atol=0)


def test_shapes_and_hidden_states(model):
    logits, hidden = model(tokens(), return_hidden=True)
    assert logits.shape == (3, 9, 11) and len(hidden) == CONFIG.n_layers + 1
    assert all(h.shape == (3, 9, 16) for h in hidden)
    torch.testing.assert_close(hidden[0], model.embed(tokens()) + model.pos.weight[:9])
    for l, block in enumerate(model.blocks):  # h_{l+1} = blocks[l](h_l)
        torch.testing.assert_close(hidden[l + 1], block(hidden[l]))
    torch.testing.assert_close(logits, model.lm_head(model.norm(hidden[-1])))


def test_causal_mask(model):
    t = tokens()
    changed = t.clone()
    changed[:, 5] = (changed[:, 5] + 1) % CONFIG.vocab_size
    a, b = model(t), model(changed)
    torch.testing.assert_close(a[:, :5], b[:, :5], rtol=0, atol=0)  # earlier positions cannot see position 5
    assert (a[:, 5:] - b[:, 5:]).abs().amax(dim=(0, 2)).min() > 1e-6  # position 5 and every later one can


def test_config_errors_are_actionable():
    with pytest.raises(ValueError, match="n_heads must divide d_model"):
        TinyConfig(d_model=10, n_heads=4)
    with pytest.raises(ValueError, match="max_len"):
        TinyTransformer(CONFIG)(tokens(T=21))
    with pytest.raises(ValueError, match="exactly one of tokens"):
        TinyTransformer(CONFIG)()


# -- hook points ---------------------------------------------------------------------------------------------------------
def test_inputs_embeds_and_prepended_embeddings_shift_positions(model):
    t = tokens()
    torch.testing.assert_close(model(inputs_embeds=model.embed(t)), model(t))
    P = torch.randn(1, 4, 16, generator=torch.Generator().manual_seed(1), dtype=D64).expand(3, -1, -1)
    logits, hidden = model(inputs_embeds=torch.cat([P, model.embed(t)], dim=1), return_hidden=True)
    assert logits.shape == (3, 4 + 9, 11)
    # the real tokens now sit at positions 4 … 12 and get those positions' embeddings
    torch.testing.assert_close(hidden[0][:, 4:], model.embed(t) + model.pos.weight[4:13])
    assert (logits[:, 4:] - model(t)).abs().max() > 1e-3


def test_interventions_replace_hidden_states(model):
    t = tokens()
    same = model(t, interventions={l: (lambda h: h) for l in range(CONFIG.n_layers + 1)})
    torch.testing.assert_close(same, model(t), rtol=0, atol=0)
    shift = torch.randn(16, generator=torch.Generator().manual_seed(2), dtype=D64)
    logits, hidden = model(t, interventions={1: lambda h: h + shift}, return_hidden=True)
    _, plain = model(t, return_hidden=True)
    torch.testing.assert_close(hidden[0], plain[0])
    torch.testing.assert_close(hidden[1], plain[1] + shift)  # read back after the edit
    torch.testing.assert_close(hidden[2], model.blocks[1](hidden[1]))  # and the next block reads the edited state
    last, _ = model(t, interventions={CONFIG.n_layers: lambda h: h + shift}, return_hidden=True)
    torch.testing.assert_close(last, model.lm_head(model.norm(plain[-1] + shift)))


def _prefix(attn: Attention, P=3, seed=5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """P prefix inputs and their keys and values per head, (P, d) and (H, P, h)."""
    p = torch.randn(1, P, attn.d_model, generator=torch.Generator().manual_seed(seed), dtype=D64)
    return p[0], attn.split_heads(attn.k_proj(p))[0], attn.split_heads(attn.v_proj(p))[0]


def test_prefix_joins_the_softmax_like_tokens_before_the_sequence():
    attn = example_attention(16, 4, torch.Generator().manual_seed(0), D64)
    x = torch.randn(2, 6, 16, generator=torch.Generator().manual_seed(1), dtype=D64)
    p, k, v = _prefix(attn)
    # prefix tuning with keys/values those of P real tokens == running those tokens first (they precede every query)
    whole = attn(torch.cat([p.expand(2, -1, -1), x], dim=1))[:, 3:]
    torch.testing.assert_close(attn(x, PrefixKV(k, v)), whole)
    torch.testing.assert_close(attn(x, PrefixKV(k.expand(2, -1, -1, -1), v.expand(2, -1, -1, -1))), whole)


def test_gated_prefix_is_zero_at_zero_gate_and_a_separate_softmax_otherwise(model):
    attn = model.blocks[1].attn
    x = torch.randn(2, 6, 16, generator=torch.Generator().manual_seed(1), dtype=D64)
    _, k, v = _prefix(attn)
    torch.testing.assert_close(attn(x, PrefixKV(k, v, torch.zeros(4, dtype=D64))), attn(x), rtol=0, atol=0)
    t = tokens()
    torch.testing.assert_close(model(t, prefix={1: PrefixKV(k, v, torch.zeros(4, dtype=D64))}), model(t),
                               rtol=0, atol=0)
    gate = torch.tensor([0.5, -1.0, 0.0, 2.0], dtype=D64)
    q = attn.split_heads(attn.q_proj(x))  # (B, H, T, h)
    extra = torch.softmax(q @ k.mT / math.sqrt(attn.head_dim), dim=-1) @ v  # (B, H, T, h)
    expected = attn(x) + attn.merge_heads(gate.view(-1, 1, 1) * extra) @ attn.o_proj.weight.T
    torch.testing.assert_close(attn(x, PrefixKV(k, v, gate)), expected)
    assert (model(t, prefix={1: PrefixKV(k, v, gate)}) - model(t)).abs().max() > 1e-3


# -- training -------------------------------------------------------------------------------------------------------------
def _copy_task(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``a b c d | a b c d``: the second half is predictable, the first is not (the mask keeps the second)."""
    x = torch.randint(1, 8, (n, 4), generator=g)
    seq = torch.cat([x, torch.zeros(n, 1, dtype=torch.long), x], dim=1)  # (n, 9)
    mask = torch.zeros_like(seq, dtype=torch.bool)
    mask[:, 5:] = True
    return seq, mask


@pytest.fixture
def one_thread():
    """One torch thread: on a loaded machine two threads per test contend (ten times slower), and the run is a
    function of its arguments for a fixed thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_pretrain_is_deterministic_and_learns(one_thread):
    config = TinyConfig(vocab_size=8, d_model=16, n_heads=2, n_layers=1, d_ff=32, max_len=9, seed=1)
    a, b = TinyTransformer(config), TinyTransformer(config)
    la, lb = pretrain(a, _copy_task, steps=40, lr=1e-2, seed=0), pretrain(b, _copy_task, steps=40, lr=1e-2, seed=0)
    assert la == lb and len(la) == 40
    assert sum(la[-10:]) / 10 < 0.7 * sum(la[:10]) / 10
    seq, mask = _copy_task(4, torch.Generator().manual_seed(9))
    with torch.no_grad():
        assert float(next_token_loss(a(seq), seq, mask)) < sum(la[:10]) / 10  # learnt, not memorised: a fresh batch
    with pytest.raises(ValueError, match="requires_grad"):
        pretrain(a.requires_grad_(False), _copy_task, steps=1)


# -- an Adapter on an attention block, merging into several weights ------------------------------------------------------
class HeadGain(Adapter):
    r"""Test-only: a gain per head on the values and on the output projection's input,
    $V_i' = a_i V_i$, $W_{O,:,i}' = g_i W_{O,:,i}$; merges into ``v_proj.weight``, ``v_proj.bias``, ``o_proj.weight``."""

    slug = "head-gain"
    base_type = Attention
    shape_names = ("d_model", "n_heads")

    def __init__(self, base: Attention) -> None:
        super().__init__(base)
        self.a = nn.Parameter(torch.empty(base.n_heads, **self.factory))  # (H,)
        self.g = nn.Parameter(torch.empty(base.n_heads, **self.factory))  # (H,)
        self.reset_parameters()

    @property
    def d_in(self) -> int:
        return self.base.d_model

    @property
    def d_out(self) -> int:
        return self.base.n_heads

    @classmethod
    def example_base(cls, d_in, d_out, generator, dtype):
        return example_attention(d_in, d_out, generator, dtype)

    @classmethod
    def example_inputs(cls, base, n, generator, dtype):
        return torch.randn(n, 5, base.d_model, generator=generator, dtype=dtype)  # (n, T, d)

    def reset_parameters(self) -> None:
        nn.init.ones_(self.a)
        nn.init.ones_(self.g)

    def adapted_weights(self) -> dict[str, torch.Tensor]:
        attn, h = self.base, self.base.head_dim
        rows, cols = self.a.repeat_interleave(h), self.g.repeat_interleave(h)  # (d,), (d,)
        return {"v_proj.weight": rows[:, None] * attn.v_proj.weight, "v_proj.bias": rows * attn.v_proj.bias,
                "o_proj.weight": attn.o_proj.weight * cols[None, :]}

    def symbols(self) -> dict:
        b = self.base
        return {"W_q": b.q_proj.weight, "b_q": b.q_proj.bias, "W_k": b.k_proj.weight, "b_k": b.k_proj.bias,
                "W_v": b.v_proj.weight, "b_v": b.v_proj.bias, "W_o": b.o_proj.weight, "b_o": b.o_proj.bias,
                "a": self.a, "g": self.g, "H": b.n_heads, "d_model": self.d_in, "n_heads": self.d_out}


def test_adapter_on_attention_merges_into_several_weights_and_unmerges_bit_for_bit():
    base = HeadGain.example_base(16, 4, torch.Generator().manual_seed(0), D64)
    x = HeadGain.example_inputs(base, 3, torch.Generator().manual_seed(1), D64)
    pristine = {k: v.clone() for k, v in base.state_dict().items()}
    module = HeadGain(base)
    torch.testing.assert_close(module(x), base(x), rtol=0, atol=1e-15)  # identity at init
    adapterspec.randomize_(module, torch.Generator().manual_seed(2))
    y = module(x)
    assert (y - Attention.forward(base, x)).abs().max() > 1e-3
    assert not module.has_delta_weight()
    with pytest.raises(TypeError, match="several weights"):
        module.delta_weight()
    module.merge()
    changed = {k for k, v in base.state_dict().items() if not torch.equal(v, pristine[k])}
    assert changed == {"v_proj.weight", "v_proj.bias", "o_proj.weight"}
    torch.testing.assert_close(module(x), y, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(module.original("o_proj.weight"), pristine["o_proj.weight"], rtol=0, atol=0)
    module.unmerge()
    assert all(torch.equal(v, pristine[k]) for k, v in base.state_dict().items())
    torch.testing.assert_close(module(x), y, rtol=0, atol=0)


# -- verification of such a method: inputs, output shapes and shape names from the method, no special case -------------
FORWARD = """\
def forward(x, W_q, b_q, W_k, b_k, W_v, b_v, W_o, b_o, a, g, H):
    T, d = x.shape                         # x: (T, d_model), one sequence
    h = d // H
    q = (x @ W_q.T + b_q).reshape(T, H, h).transpose(0, 1)   # (H, T, h)
    k = (x @ W_k.T + b_k).reshape(T, H, h).transpose(0, 1)
    v = (x @ W_v.T + b_v).reshape(T, H, h).transpose(0, 1)
    v = a.reshape(H, 1, 1) * v             # a_i V_i
    future = ones(T, T).triu(1) > 0
    S = (q @ k.transpose(1, 2) / h ** 0.5).masked_fill(future, -float("inf"))
    heads = g.reshape(H, 1, 1) * (softmax(S) @ v)            # g_i scales head i's columns of W_o
    return heads.transpose(0, 1).reshape(T, d) @ W_o.T + b_o  # (T, d_model)
"""


def _entry(tmp_path, forward=FORWARD, properties="", formula="2 * n_heads"):
    start, end = GOOD.index("pseudocode: |"), GOOD.index("evidence:")
    body = "pseudocode: |\n" + "".join(f"  {line}\n" for line in forward.splitlines()) + (
        "implementation:\n  module: head-gain\n  shapes: [[16, 4], [24, 2]]\n"
        f"properties:\n  identity_at_init: true\n  mergeable: true\n  trainable_parameters: {formula}\n{properties}")
    root = write_catalog(tmp_path, GOOD[:start] + body + GOOD[end:])
    return load_catalog(root).entries["lora"]


@pytest.fixture
def head_gain(monkeypatch):
    monkeypatch.setitem(registry._registry(), "head-gain", HeadGain)


def test_verify_runs_a_method_on_an_attention_block(head_gain, tmp_path):
    result = verify_entry(_entry(tmp_path))
    assert result.ok, "\n".join(f"{c.name}: {c.detail}" for c in result.failures)
    names = [c.name for c in result.checks]
    assert "pseudocode.forward [d_model=16, n_heads=4]" in names  # labelled by the method's shape names
    assert any(n.startswith("merged == unmerged [d_model=24, n_heads=2]") for n in names)
    assert any(n.startswith("trainable parameter count [d_model=32, n_heads=8]") for n in names)  # doubled shape
    assert result.observed.get("figure") is None  # no single ΔW to draw


@pytest.mark.parametrize("flaw, expect", [
    (("g.reshape(H, 1, 1) * (softmax(S) @ v)", "softmax(S) @ v"), "the pseudocode and the module disagree"),
    (("@ W_o.T + b_o  #", "@ W_o.T[:, :3] + b_o[:3]  #"), "expected (5, 16) for x of shape (5, 16)"),
    (("future = ones(T, T).triu(1) > 0", "future = ones(T, T).triu(1) < 0"), "the pseudocode and the module disagree"),
])
def test_verify_catches_wrong_attention_pseudocode(head_gain, tmp_path, flaw, expect):
    assert flaw[0] in FORWARD
    result = verify_entry(_entry(tmp_path, forward=FORWARD.replace(*flaw)))
    assert not result.ok and expect in "\n".join(c.detail for c in result.failures)


def test_verify_refuses_single_weight_claims_for_a_method_changing_several(head_gain, tmp_path):
    result = verify_entry(_entry(tmp_path, properties="  rank_bound: n_heads\n  preserves_neuron_gram: false\n"))
    failed = {c.field for c in result.failures}
    assert failed == {"properties.rank_bound", "properties.preserves_neuron_gram"}
    assert all("no single weight update" in c.detail for c in result.failures)
    (tmp_path / "b").mkdir()
    wrong = verify_entry(_entry(tmp_path / "b", formula="2 * d_model"))
    assert {c.field for c in wrong.failures} == {"properties.trainable_parameters"}


def test_verify_refuses_a_module_whose_output_differs_in_shape_from_its_base(head_gain, tmp_path, monkeypatch):
    monkeypatch.setattr(HeadGain, "forward", lambda self, x: Adapter.forward(self, x)[:, 1:])  # drops a position
    result = verify_entry(_entry(tmp_path))
    assert [c.name for c in result.failures] == ["output shape [d_model=16, n_heads=4]"]
    assert "(3, 4, 16) where its base returns (3, 5, 16)" in result.failures[0].detail
