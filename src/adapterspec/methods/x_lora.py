r"""X-LoRA — a mixture of frozen LoRA experts, scaled per token and per layer by a classifier on the hidden states
(Buehler & Buehler, arXiv:2402.07148)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from adapterspec.tiny import ModelAdapter, TinyTransformer


class XLoRA(ModelAdapter):
    r"""Frozen LoRA experts on every MLP projection of a `TinyTransformer`, mixed by a trained scaling head.

    Two forward passes per input. The *scaling pass* runs the model with every expert scaled by the constant
    ``scaling_pass_value`` ($0$ by default: the pretrained model) and reads its last hidden state $z_t$ (after the
    final LayerNorm); the scaling head (``depth`` linear layers with ReLU between them) maps $z_t$ to logits, one per
    expert $i$ (and per adapted layer $\ell$ when ``layerwise``), and

    $$\lambda_{t,\ell} = \operatorname{softmax}(c_{t,\ell}/\tau) \in \Delta^{n-1},\qquad
      y_{t,\ell} = W_\ell x_{t,\ell} + b_\ell + \gamma \sum_{i=1}^{n} \lambda_{t,\ell,i}\,\tfrac{\alpha}{r}
      B_{\ell,i} A_{\ell,i}\, x_{t,\ell}$$

    is what the adapted layer $\ell$ computes for token $t$ in the second, real pass ($\gamma$ =
    ``global_scaling_weight``; optionally only the ``top_k`` largest $\lambda$ are kept, and renormalised by a softmax
    over them with ``softmax_topk``). The adapted layers are each block's ``mlp.up`` and ``mlp.down``, in that order,
    so ``2 L`` of them. The experts (``A_up``, ``B_up``, ``A_down``, ``B_down``) are frozen buffers standing for
    LoRAs trained beforehand, drawn here from ``seed``; only the scaling head trains.

    Not mergeable: the mixture changes from token to token.

    Args:
        base: the frozen transformer.
        n_experts: number of LoRA experts ``n``.
        r: rank of each expert.
        alpha: each expert's LoRA scale numerator (``alpha / r``).
        depth: layers of the scaling head (1: one linear map).
        size: hidden width of the scaling head (``depth > 1`` only).
        layerwise: one set of scalings per adapted layer (else one set broadcast to every layer).
        enable_softmax: softmax over experts (with ``temperature``); off: the raw logits scale the experts.
        temperature: softmax temperature ``τ``.
        top_k: keep only the ``top_k`` largest scalings of each token and layer (0: all).
        softmax_topk: softmax over the kept (non-zero) scalings.
        scaling_pass_value: the constant every expert is scaled by in the scaling pass.
        global_scaling_weight: ``γ``, multiplies every expert's output in both passes.
        seed: seed of the frozen experts.
    """


    def __init__(
        self,
        base: TinyTransformer,
        n_experts: int = 2,
        r: int = 2,
        alpha: float = 4.0,
        depth: int = 1,
        size: int = 16,
        layerwise: bool = False,
        enable_softmax: bool = True,
        temperature: float = 1.0,
        top_k: int = 0,
        softmax_topk: bool = False,
        scaling_pass_value: float = 0.0,
        global_scaling_weight: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__(base)
        for name, value in (("n_experts", n_experts), ("r", r), ("depth", depth), ("size", size)):
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0 <= top_k <= n_experts:
            raise ValueError(
                f"top_k must be 0 (keep every expert) or 1 … n_experts = {n_experts}, got {top_k!r}"
            )
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature!r}")
        c = base.config
        self.n_experts, self.r, self.alpha, self.depth, self.size = n_experts, r, alpha, depth, size
        self.layerwise, self.enable_softmax, self.temperature = (
            layerwise,
            enable_softmax,
            temperature,
        )
        self.top_k, self.softmax_topk, self.seed = top_k, softmax_topk, seed
        self.scaling_pass_value, self.global_scaling_weight = (
            scaling_pass_value,
            global_scaling_weight,
        )
        self.n_lora_layers = 2 * c.n_layers  # mlp.up and mlp.down of every block
        L, n, d, f = c.n_layers, n_experts, c.d_model, c.d_ff
        self.register_buffer(
            "A_up", torch.empty(L, n, r, d, **self.factory)
        )  # (L, n, r, d), frozen
        self.register_buffer("B_up", torch.empty(L, n, f, r, **self.factory))  # (L, n, d_ff, r)
        self.register_buffer("A_down", torch.empty(L, n, r, f, **self.factory))  # (L, n, r, d_ff)
        self.register_buffer("B_down", torch.empty(L, n, d, r, **self.factory))  # (L, n, d, r)
        widths = [d] + [size] * (depth - 1) + [n * (self.n_lora_layers if layerwise else 1)]
        self.head = nn.ModuleList(
            nn.Linear(a, b, **self.factory) for a, b in zip(widths[:-1], widths[1:])
        )
        self.reset_parameters()

    @classmethod
    def sizes(cls, base: nn.Module) -> dict[str, int]:
        return {**super().sizes(base), "d_ff": base.config.d_ff}  # formulas may also use d_ff

    # --8<-- [start:init]
    @torch.no_grad()
    def reset_parameters(self) -> None:
        # Stand-ins for experts trained beforehand: LoRA A Kaiming-uniform (bound 1/√fan_in), and B
        # non-zero
        # (a trained B), drawn from `seed`. They stay frozen.
        g = torch.Generator().manual_seed(self.seed)
        for name in ("A_up", "B_up", "A_down", "B_down"):
            t = getattr(self, name)
            bound = 1.0 / math.sqrt(t.shape[-1])
            t.copy_((torch.rand(t.shape, generator=g, dtype=torch.float64) * 2 - 1) * bound)
        # The scaling head is an ordinary freshly initialised MLP (nn.Linear's default init), as in
        # peft: at init the
        # mixture is whatever it happens to say, not zero, so the model is NOT the pretrained one at
        # init.
        for layer in self.head:
            layer.reset_parameters()

    # --8<-- [end:init]

    # --8<-- [start:update]
    def route(self, c: Tensor) -> Tensor:
        """Per token and layer, keep the ``top_k`` largest scalings (if set), then softmax over the
        kept ones (if
        ``softmax_topk``); ``c (..., n)``."""
        if self.top_k:
            keep = torch.zeros_like(c, dtype=torch.bool).scatter_(
                -1, c.topk(self.top_k, dim=-1).indices, True
            )
            c = c * keep
        if self.softmax_topk:
            zero = c == 0
            c = torch.softmax(c.masked_fill(zero, float("-inf")), dim=-1).masked_fill(zero, 0.0)
        return c

    def mix(self, x: Tensor, A: Tensor, B: Tensor, s: Tensor) -> Tensor:
        """``γ Σ_i s_i (α/r) B_i A_i x`` per token: ``x (Bt, T, d_in)``, ``A (n, r, d_in)``, ``B
        (n, d_out, r)``,
        ``s (Bt, T, n)``."""
        u = torch.einsum("bti,nri->btnr", x, A) * s.unsqueeze(-1)  # (Bt, T, n, r)
        return torch.einsum("btnr,nor->bto", u, B) * (
            self.alpha / self.r * self.global_scaling_weight
        )

    def run(self, tokens: Tensor, s: Tensor) -> Tensor:
        """The model with expert scalings ``s (Bt, T, 2L, n)``; returns the last hidden state after
        the final
        LayerNorm, ``(Bt, T, d)``."""
        m, T = self.base, tokens.shape[1]
        h = m.embed(tokens) + m.pos.weight[:T]  # (Bt, T, d)
        for l, block in enumerate(m.blocks):
            h = h + block.attn(block.norm1(h))
            a = block.norm2(h)
            # (Bt, T, d_ff)
            u = block.mlp.up(a) + self.mix(a, self.A_up[l], self.B_up[l], s[:, :, 2 * l])
            g = F.gelu(u)
            h = (
                h
                + block.mlp.down(g)
                + self.mix(g, self.A_down[l], self.B_down[l], s[:, :, 2 * l + 1])
            )
        return m.norm(h)

    def scalings(self, tokens: Tensor) -> Tensor:
        """Pass 1: the scalings ``λ (Bt, T, 2L, n)`` the scaling head reads off the hidden
        states."""
        Bt, T = tokens.shape
        n, n_l = self.n_experts, self.n_lora_layers
        s0 = self.route(torch.full((Bt, T, n_l, n), self.scaling_pass_value, **self.factory))
        with torch.no_grad():  # as peft: no gradient through the scaling pass
            z = self.run(tokens, s0)  # (Bt, T, d)
        for i, layer in enumerate(self.head):
            z = layer(z) if i == len(self.head) - 1 else F.relu(layer(z))
        # broadcast to every layer unless layerwise
        c = z.reshape(Bt, T, -1, n).expand(Bt, T, n_l, n)
        return torch.softmax(c / self.temperature, dim=-1) if self.enable_softmax else c

    def forward(self, tokens: Tensor) -> Tensor:
        """Logits ``(Bt, T, V)``: pass 2 runs the model with the routed scalings."""
        return self.base.lm_head(self.run(tokens, self.route(self.scalings(tokens))))

    # --8<-- [end:update]

    def symbols(self) -> dict:
        m = self.base

        def block(b) -> dict:
            return {
                "g1": b.norm1.weight,
                "b1": b.norm1.bias,
                "Wq": b.attn.q_proj.weight,
                "bq": b.attn.q_proj.bias,
                "Wk": b.attn.k_proj.weight,
                "bk": b.attn.k_proj.bias,
                "Wv": b.attn.v_proj.weight,
                "bv": b.attn.v_proj.bias,
                "Wo": b.attn.o_proj.weight,
                "bo": b.attn.o_proj.bias,
                "g2": b.norm2.weight,
                "b2": b.norm2.bias,
                "W_up": b.mlp.up.weight,
                "b_up": b.mlp.up.bias,
                "W_down": b.mlp.down.weight,
                "b_down": b.mlp.down.bias,
            }

        detach = lambda t: t.detach().clone()  # noqa: E731
        return {
            "E": m.embed.weight,
            "P": m.pos.weight,
            "g_f": m.norm.weight,
            "b_f": m.norm.bias,
            "W_lm": m.lm_head.weight,
            "H": m.config.n_heads,
            "L": m.config.n_layers,
            "blocks": [{k: detach(v) for k, v in block(b).items()} for b in m.blocks],
            "A_up": self.A_up,
            "B_up": self.B_up,
            "A_down": self.A_down,
            "B_down": self.B_down,
            "W_c": [detach(layer.weight) for layer in self.head],
            "b_c": [detach(layer.bias) for layer in self.head],
            "n": self.n_experts,
            "r": self.r,
            "alpha": self.alpha,
            "tau": self.temperature,
            "enable_softmax": self.enable_softmax,
            "top_k": self.top_k,
            "softmax_topk": self.softmax_topk,
            "scaling_pass_value": self.scaling_pass_value,
            "gamma": self.global_scaling_weight,
            "d_model": m.config.d_model,
            "n_heads": m.config.n_heads,
        }

    def extra_repr(self) -> str:
        c = self.base.config
        return (
            f"d_model={c.d_model}, n_layers={c.n_layers}, n_experts={self.n_experts}, "
            f"trainable={self.num_trainable()}"
        )
