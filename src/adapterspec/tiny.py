r"""A tiny decoder-only transformer that prompt-, prefix-, activation- and token-level methods act on.

Built from a `TinyConfig`, deterministic from ``config.seed``, nothing downloaded. Pre-norm (GPT-2 style): learned
token and position embeddings, ``n_layers`` blocks of causal multi-head attention and a GELU MLP, a final LayerNorm
and an untied ``lm_head``. It is small enough to train on a CPU in minutes (`pretrain`).

Shapes: ``B`` batch, ``T`` sequence length, ``d`` = ``d_model``, ``H`` = ``n_heads``, ``h`` = ``head_dim`` = d / H,
``P`` prefix length, ``V`` = ``vocab_size``, ``L`` = ``n_layers``.

The forward pass, and where a method can act on it (the *hook points*):

```text
tokens (B, T) int64 ──embed──► e (B, T, d)     inputs_embeds=(B, T, d) replaces e (1)
h_0 = e + pos.weight[:T]   (B, T, d)          interventions[0] replaces h_0 (2)
h_{l+1} = blocks[l](h_l, prefix=prefix[l])    interventions[l] replaces h_l before
                                              blocks[l] reads it; prefix[l] adds
                                              keys/values to its attention (3)
logits = lm_head(norm(h_L))   (B, T, V)       interventions[L] replaces h_L
                                              (before the final norm)
```

1. **Embeddings** (prompt tuning, trainable tokens). ``model.embed`` is the ``nn.Embedding`` (V → d); a method can
   wrap it, or pass ``inputs_embeds`` (for soft prompts, ``torch.cat([P, model.embed(tokens)], dim=1)``). Positions
   are added inside the model to whatever sequence it is given: position ``t`` of the input gets ``pos.weight[t]``.
   So prepending ``P`` soft tokens moves the real tokens to positions ``P … P+T−1`` and the logits come back for
   all ``P + T`` positions (drop the first ``P``).
2. **Hidden states** (ReFT, activation steering). ``interventions`` maps a layer index ``l`` in ``0 … L`` to a
   function ``(B, T, d) → (B, T, d)`` that replaces ``h_l``: ``h_0`` is the embedding output, ``h_l`` the residual
   stream entering block ``l``, ``h_L`` the last block's output. ``return_hidden=True`` also returns
   ``[h_0, …, h_L]`` (after interventions), each ``(B, T, d)``.
3. **Attention keys and values** (prefix tuning, LLaMA-Adapter). ``prefix`` maps a block index ``l`` in
   ``0 … L−1`` to a `PrefixKV` ``(k, v, gate)``, with ``k`` and ``v`` per head, ``(H, P, h)`` or ``(B, H, P, h)``,
   already projected (prefix tuning trains them directly; LLaMA-Adapter projects its prompt with the block's own
   ``attn.k_proj``/``attn.v_proj`` and `Attention.split_heads`). Every query sees every prefix position (no causal
   mask on the prefix). ``gate=None``: the prefix joins the softmax, ``softmax([q Kpᵀ, q Kᵀ]) [Vp; V]`` (prefix
   tuning). ``gate`` of shape ``(H,)``: the prefix gets a softmax of its own, scaled per head and added,
   ``softmax(q Kᵀ) V + gate ⊙ softmax(q Kpᵀ) Vp``, so ``gate = 0`` leaves the output unchanged (LLaMA-Adapter's
   zero-init attention). Either way the heads are merged and ``o_proj`` applied after.
4. **Weights.** Every projection is an ``nn.Linear`` at a fixed path (``blocks.{l}.attn.q_proj``, ``k_proj``,
   ``v_proj``, ``o_proj``; ``blocks.{l}.mlp.up``, ``down``; ``lm_head``), so a weight-space `Adapter` can wrap it,
   or wrap a whole `Attention` block (per-head Q, K, V, O: CLOVER) and merge into several weights at once
   (`Adapter.adapted_weights`).

Example:
    ```python
    from adapterspec.tiny import TinyConfig, TinyTransformer

    model = TinyTransformer(TinyConfig(vocab_size=16, d_model=32, n_heads=4, n_layers=2))
    tokens = torch.randint(16, (8, 10))
    logits = model(tokens)                                      # (8, 10, 16)
    logits, hidden = model(tokens, return_hidden=True)          # hidden: 3 tensors (8, 10, 32)
    steer = {1: lambda h: h + 0.1}                              # edit the residual stream entering block 1
    logits = model(tokens, interventions=steer)
    ```
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

Intervention = Callable[[Tensor], Tensor]  # (B, T, d) -> (B, T, d)


@dataclass(frozen=True)
class TinyConfig:
    """The sizes of a `TinyTransformer`, and the seed its weights are drawn from.

    Attributes:
        vocab_size: number of token ids ``V``.
        d_model: width ``d`` of the residual stream.
        n_heads: attention heads ``H``; must divide ``d_model`` (``head_dim = d_model // n_heads``).
        n_layers: number of blocks ``L``.
        d_ff: hidden width of each MLP.
        max_len: longest sequence (soft prompt included) the position embedding covers.
        eps: LayerNorm epsilon.
        bias: whether the linear layers have biases (GPT-2 has them, LLaMA does not).
        seed: the weights are a function of this seed (and of nothing else).
        dtype: parameter dtype.
    """

    vocab_size: int = 16
    d_model: int = 32
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int = 64
    max_len: int = 32
    eps: float = 1e-5
    bias: bool = True
    seed: int = 0
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_heads", "n_layers", "d_ff", "max_len"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"TinyConfig.{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"TinyConfig.n_heads must divide d_model; got d_model={self.d_model}, "
                             f"n_heads={self.n_heads}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


class PrefixKV(NamedTuple):
    """Keys and values prepended to one attention block's own (see hook point 3 in the module docstring).

    Attributes:
        k: prefix keys per head, ``(H, P, h)`` (shared by the batch) or ``(B, H, P, h)``.
        v: prefix values, the same shape as ``k``.
        gate: ``None`` (the prefix joins the softmax: prefix tuning) or ``(H,)`` (the prefix has its own softmax,
            scaled per head and added: LLaMA-Adapter).
    """

    k: Tensor
    v: Tensor
    gate: Tensor | None = None


class Attention(nn.Module):
    r"""Causal multi-head self-attention with separate ``q_proj``, ``k_proj``, ``v_proj``, ``o_proj`` (each
    ``nn.Linear(d, d)``).

    $$\text{head}_i = \operatorname{softmax}\!\Big(\frac{Q_i K_i^\top}{\sqrt{h}} + M\Big) V_i,\qquad
      y = W_O\,[\text{head}_1; \dots; \text{head}_H]$$

    with $Q_i = x W_{Q,i}^\top$ (rows ``i·h … (i+1)·h − 1`` of ``q_proj.weight``), likewise $K_i$, $V_i$, and $M$
    the causal mask (``−∞`` above the diagonal). Head ``i`` of ``o_proj`` reads columns ``i·h … (i+1)·h − 1``.

    Args:
        d_model: width ``d`` of the input and the output.
        n_heads: number of heads ``H`` (dividing ``d_model``).
        bias: whether the four projections have biases.
        dtype: parameter dtype.
    """

    def __init__(self, d_model: int, n_heads: int, bias: bool = True, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"n_heads must divide d_model; got d_model={d_model}, n_heads={n_heads}")
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model, bias=bias, dtype=dtype)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias, dtype=dtype)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias, dtype=dtype)
        self.o_proj = nn.Linear(d_model, d_model, bias=bias, dtype=dtype)

    def split_heads(self, t: Tensor) -> Tensor:
        """``(B, T, d) → (B, H, T, h)``."""
        B, T, _ = t.shape
        return t.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)

    def merge_heads(self, t: Tensor) -> Tensor:
        """``(B, H, T, h) → (B, T, d)``."""
        B, _, T, _ = t.shape
        return t.transpose(1, 2).reshape(B, T, self.d_model)

    def forward(self, x: Tensor, prefix: PrefixKV | None = None) -> Tensor:
        """``x (B, T, d) → (B, T, d)``; ``prefix`` adds keys and values every query attends to (`PrefixKV`)."""
        B, T, _ = x.shape
        q, k, v = (self.split_heads(proj(x)) for proj in (self.q_proj, self.k_proj, self.v_proj))  # (B, H, T, h)
        scale = 1.0 / math.sqrt(self.head_dim)
        scores = (q @ k.mT) * scale  # (B, H, T, T)
        future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        scores = scores.masked_fill(future, float("-inf"))
        if prefix is not None and prefix.gate is None:  # prefix tuning: one softmax over [prefix; own] positions
            pk, pv = prefix.k.expand(B, *prefix.k.shape[-3:]), prefix.v.expand(B, *prefix.v.shape[-3:])  # (B,H,P,h)
            scores = torch.cat([(q @ pk.mT) * scale, scores], dim=-1)  # (B, H, T, P + T)
            v = torch.cat([pv, v], dim=-2)  # (B, H, P + T, h)
        out = F.softmax(scores, dim=-1) @ v  # (B, H, T, h)
        if prefix is not None and prefix.gate is not None:  # LLaMA-Adapter: a softmax of its own, gated per head
            prefix_scores = (q @ prefix.k.mT) * scale  # (B, H, T, P)
            out = out + prefix.gate.view(-1, 1, 1) * (F.softmax(prefix_scores, dim=-1) @ prefix.v)  # (B, H, T, h)
        return self.o_proj(self.merge_heads(out))  # (B, T, d)


class MLP(nn.Module):
    """``down(GELU(up(x)))``: ``d → d_ff → d``."""

    def __init__(self, d_model: int, d_ff: int, bias: bool = True, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.up = nn.Linear(d_model, d_ff, bias=bias, dtype=dtype)
        self.down = nn.Linear(d_ff, d_model, bias=bias, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(F.gelu(self.up(x)))


class Block(nn.Module):
    """Pre-norm residual block: ``h + attn(norm1(h))``, then ``+ mlp(norm2(·))``."""

    def __init__(self, config: TinyConfig) -> None:
        super().__init__()
        c = config
        self.norm1 = nn.LayerNorm(c.d_model, eps=c.eps, dtype=c.dtype)
        self.attn = Attention(c.d_model, c.n_heads, bias=c.bias, dtype=c.dtype)
        self.norm2 = nn.LayerNorm(c.d_model, eps=c.eps, dtype=c.dtype)
        self.mlp = MLP(c.d_model, c.d_ff, bias=c.bias, dtype=c.dtype)

    def forward(self, h: Tensor, prefix: PrefixKV | None = None) -> Tensor:
        h = h + self.attn(self.norm1(h), prefix)
        return h + self.mlp(self.norm2(h))


class TinyTransformer(nn.Module):
    """A decoder-only transformer built from `TinyConfig`; its weights depend on ``config.seed`` only.

    Parts: ``embed`` (``nn.Embedding(V, d)``), ``pos`` (``nn.Embedding(max_len, d)``, learned positions),
    ``blocks`` (``nn.ModuleList`` of `Block`, each with ``norm1``, ``attn``, ``norm2``, ``mlp``), ``norm`` (final
    LayerNorm), ``lm_head`` (``nn.Linear(d, V, bias=False)``). Init: linear weights ``N(0, 1/fan_in)``, embeddings
    ``N(0, 1)``, biases 0, LayerNorms (1, 0); drawn from a generator seeded with ``config.seed`` (torch's global
    generator is left untouched).
    """

    def __init__(self, config: TinyConfig) -> None:
        super().__init__()
        c = self.config = config
        with torch.random.fork_rng(devices=[]):  # nn.Linear's own init draws from the global generator
            self.embed = nn.Embedding(c.vocab_size, c.d_model, dtype=c.dtype)
            self.pos = nn.Embedding(c.max_len, c.d_model, dtype=c.dtype)
            self.blocks = nn.ModuleList(Block(c) for _ in range(c.n_layers))
            self.norm = nn.LayerNorm(c.d_model, eps=c.eps, dtype=c.dtype)
            self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False, dtype=c.dtype)
        init_weights_(self, torch.Generator().manual_seed(c.seed))

    def forward(self, tokens: Tensor | None = None, *, inputs_embeds: Tensor | None = None,
                prefix: Mapping[int, PrefixKV] | None = None,
                interventions: Mapping[int, Intervention] | None = None,
                return_hidden: bool = False, start: int = 0) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Logits ``(B, T, V)`` for ``tokens (B, T)`` or for ``inputs_embeds (B, T, d)`` (exactly one of them).

        Args:
            tokens: token ids ``(B, T)``.
            inputs_embeds: embeddings used instead of ``embed(tokens)``; positions are still added (hook point 1).
            prefix: per block index ``l``, a `PrefixKV` for that block's attention (hook point 3).
            interventions: per layer index ``l`` in ``0 … L``, a function replacing ``h_l`` (hook point 2).
            return_hidden: also return ``[h_0, …, h_L]``.
            start: position of the first input (``pos.weight[start + t]`` is added to input ``t``): ``P`` when ``P``
                prefix keys and values stand for tokens that came before the sequence, as in a cache (prefix tuning).
        """
        if (tokens is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of tokens (B, T) and inputs_embeds (B, T, d_model)")
        e = self.embed(tokens) if inputs_embeds is None else inputs_embeds  # (B, T, d)
        T = e.shape[1]
        if start + T > self.config.max_len:
            raise ValueError(f"sequence of {start + T} positions (soft prompt or prefix included) exceeds "
                             f"TinyConfig.max_len={self.config.max_len}; build the model with a larger max_len")
        prefix, interventions = prefix or {}, interventions or {}
        h = e + self.pos.weight[start:start + T]  # (B, T, d)
        hidden = []
        for l in range(len(self.blocks) + 1):
            if l in interventions:
                h = interventions[l](h)
            hidden.append(h)
            if l < len(self.blocks):
                h = self.blocks[l](h, prefix.get(l))
        logits = self.lm_head(self.norm(h))  # (B, T, V)
        return (logits, hidden) if return_hidden else logits


# -- init, and pretrained-looking examples for verification and tests ---------------------------------------------
@torch.no_grad()
def init_weights_(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Draw every weight of ``module`` from ``generator``, in module order (the same generator state gives the same
    weights): linear weights ``N(0, 1/fan_in)``, embeddings ``N(0, 1)``, biases 0, LayerNorms (1, 0)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            m.weight.normal_(0.0, m.in_features**-0.5, generator=generator)
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, nn.Embedding):
            m.weight.normal_(0.0, 1.0, generator=generator)
        elif isinstance(m, nn.LayerNorm):
            m.weight.fill_(1.0)
            m.bias.zero_()
    return module


@torch.no_grad()
def pretrained_like_(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Move biases and LayerNorms away from their trivial init, in place (biases ``N(0, 0.1²)``, LayerNorm gains
    ``exp(0.3 ε)``, shifts ``N(0, 0.1²)``), so that a check cannot pass because a bias is zero or a gain one."""
    for m in module.modules():
        if isinstance(m, nn.LayerNorm):
            m.weight.copy_(torch.exp(0.3 * torch.randn(m.weight.shape, generator=generator, dtype=m.weight.dtype)))
            m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=generator, dtype=m.bias.dtype))
        elif isinstance(m, nn.Linear) and m.bias is not None:
            m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=generator, dtype=m.bias.dtype))
    return module


def example_attention(d_model: int, n_heads: int, generator: torch.Generator, dtype: torch.dtype,
                      bias: bool = True) -> Attention:
    """A pretrained-looking `Attention` block (weights ``N(0, 1/d)``, biases ``N(0, 0.1²)``), drawn from
    ``generator``: what an `Adapter` wrapping an attention block returns from ``example_base``."""
    with torch.random.fork_rng(devices=[]):  # nn.Linear's own init draws from the global generator
        attn = Attention(d_model, n_heads, bias=bias, dtype=dtype)
    return pretrained_like_(init_weights_(attn, generator), generator)


def example_model(d_model: int, n_heads: int, generator: torch.Generator, dtype: torch.dtype,
                  **config) -> TinyTransformer:
    """A pretrained-looking `TinyTransformer` of width ``d_model`` with ``n_heads`` heads (other `TinyConfig`
    fields from ``config``: by default V = 16, L = 2, d_ff = 2d, max_len = 32), drawn from ``generator``."""
    seed = int(torch.randint(2**31 - 1, (), generator=generator))
    config = {"d_ff": 2 * d_model, **config}
    model = TinyTransformer(TinyConfig(d_model=d_model, n_heads=n_heads, seed=seed, dtype=dtype, **config))
    return pretrained_like_(model, generator)



def model_symbols(model: TinyTransformer) -> dict:
    """The frozen model's tensors under the names pseudocode uses (`adapterspec.ops.tiny_block` reads a block's):
    ``E`` (token embedding ``(V, d)``), ``P`` (positions ``(max_len, d)``), ``blocks`` (one dict per block: ``g1 b1
    W_q b_q W_k b_k W_v b_v W_o b_o g2 b2 W_up b_up W_down b_down eps``), ``g_f``, ``b_f`` (final LayerNorm), ``U``
    (``lm_head.weight (V, d)``) and ``H`` (heads). A method's ``symbols()`` adds these to its own, so that its
    pseudocode can run the whole model: ``h = E[x] + P[:T]``, ``h = tiny_block(h, blocks[l], H)``, logits
    ``layer_norm(h, g_f, b_f) @ U.T``."""
    def block(b: Block) -> dict:
        a, m = b.attn, b.mlp
        return {"g1": b.norm1.weight, "b1": b.norm1.bias, "g2": b.norm2.weight, "b2": b.norm2.bias,
                "W_q": a.q_proj.weight, "b_q": a.q_proj.bias, "W_k": a.k_proj.weight, "b_k": a.k_proj.bias,
                "W_v": a.v_proj.weight, "b_v": a.v_proj.bias, "W_o": a.o_proj.weight, "b_o": a.o_proj.bias,
                "W_up": m.up.weight, "b_up": m.up.bias, "W_down": m.down.weight, "b_down": m.down.bias,
                "eps": b.norm1.eps}

    return {"E": model.embed.weight, "P": model.pos.weight, "blocks": [block(b) for b in model.blocks],
            "g_f": model.norm.weight, "b_f": model.norm.bias, "U": model.lm_head.weight,
            "H": model.config.n_heads}


# -- training ----------------------------------------------------------------------------------------------------
def next_token_loss(logits: Tensor, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean cross-entropy of predicting ``tokens[:, t]`` from ``logits[:, t − 1]``, over ``t ≥ 1`` where ``mask``
    (``(B, T)`` bool, True at a position whose token is a target) holds; all of them without a mask."""
    pred, target = logits[:, :-1], tokens[:, 1:]  # (B, T-1, V), (B, T-1)
    loss = F.cross_entropy(pred.reshape(-1, pred.shape[-1]), target.reshape(-1), reduction="none")  # (B*(T-1),)
    if mask is None:
        return loss.mean()
    keep = mask[:, 1:].reshape(-1).to(loss.dtype)
    return (loss * keep).sum() / keep.sum().clamp_min(1.0)


Task = Callable[[int, torch.Generator], "Tensor | tuple[Tensor, Tensor]"]


def pretrain(model: nn.Module, task: Task, steps: int = 500, batch_size: int = 32, lr: float = 3e-3,
             seed: int = 0, forward: Callable[[Tensor], Tensor] | None = None) -> list[float]:
    """Train ``model`` in place with Adam on next-token prediction; returns the loss of every step.

    Args:
        model: a `TinyTransformer` (or an `Adapter` around one: only parameters with ``requires_grad`` train).
        task: ``task(batch_size, generator)`` returns token ids ``(B, T)``, or ``(tokens, mask)`` with ``mask`` as
            in `next_token_loss` (e.g. only the answer positions of a synthetic task count).
        steps: optimizer steps.
        batch_size: sequences per step.
        lr: Adam learning rate.
        seed: seeds the generator ``task`` draws batches from; with the model's own seed, the run is a function of
            its arguments (on one machine, with a fixed number of torch threads).
        forward: how to get logits from tokens (default ``model(tokens)``).
    """
    generator = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no parameter with requires_grad=True: nothing to train")
    optimizer = torch.optim.Adam(params, lr=lr)
    run = forward or model
    losses = []
    model.train()
    for _ in range(steps):
        batch = task(batch_size, generator)
        tokens, mask = batch if isinstance(batch, tuple) else (batch, None)
        loss = next_token_loss(run(tokens), tokens, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


# -- a base for adapters that wrap a whole model -------------------------------------------------------------------
from adapterspec.adapter import Adapter  # noqa: E402 — after the model, which does not need it


class ModelAdapter(Adapter):
    """Base of the methods that wrap a whole `TinyTransformer` (soft prompts, prefixes, adaption prompts): what they
    wrap, how they are verified, and the symbols their pseudocode reads. Not a method itself.

    * ``base_type = TinyTransformer``; an entry's ``shapes`` pairs are ``(d_model, n_heads)`` (`example_model`, with
      `EXAMPLE` for the other sizes: 3 blocks, so that a formula in ``n_layers`` cannot pass by writing 2);
    * `example_inputs` are token ids ``(n, T)``; the module returns logits ``(n, T, V)`` on those tokens only, like
      its base (a method that prepends virtual positions drops their logits);
    * property formulas may use ``d_model``, ``n_heads``, ``n_layers`` and ``vocab_size`` (`Adapter.sizes`);
    * pseudocode symbols: ``θ`` (the model's weights by ``state_dict`` name, for `adapterspec.ops.transformer`),
      ``E`` (the token embedding table, ``(V, d)``), ``H``, ``L``, ``d_model``, ``n_heads``.
    """

    mergeable = False
    base_type = TinyTransformer
    shape_names = ("d_model", "n_heads")
    EXAMPLE: dict = {"vocab_size": 16, "n_layers": 3, "max_len": 32}
    T_EXAMPLE = 6  # tokens per verification input

    @property
    def d_in(self) -> int:
        return self.base.config.d_model

    @property
    def d_out(self) -> int:
        return self.base.config.n_heads

    @classmethod
    def example_base(cls, d_in: int, d_out: int, generator: torch.Generator, dtype: torch.dtype) -> TinyTransformer:
        return example_model(d_in, d_out, generator, dtype, **cls.EXAMPLE).eval()

    @classmethod
    def example_inputs(cls, base: nn.Module, n: int, generator: torch.Generator, dtype: torch.dtype) -> Tensor:
        return torch.randint(base.config.vocab_size, (n, cls.T_EXAMPLE), generator=generator)  # (n, T) token ids

    @classmethod
    def sizes(cls, base: nn.Module) -> dict[str, int]:
        return {"n_layers": base.config.n_layers, "vocab_size": base.config.vocab_size}

    def symbols(self) -> dict:
        c = self.base.config
        theta = {k: v.detach() for k, v in self.base.state_dict().items()}
        return {"θ": theta, "E": self.base.embed.weight, "H": c.n_heads, "L": c.n_layers, "d_model": c.d_model,
                "n_heads": c.n_heads}

    def extra_repr(self) -> str:
        c = self.base.config
        return f"d_model={c.d_model}, n_heads={c.n_heads}, n_layers={c.n_layers}, trainable={self.num_trainable()}"
