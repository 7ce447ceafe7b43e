r"""LLaMA-Adapter — zero-gated adaption prompts (Zhang et al., arXiv:2303.16199)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from adapterspec.tiny import ModelAdapter, PrefixKV, TinyTransformer


def prompt_kv(
    P: Tensor, k_proj: nn.Module, v_proj: nn.Module, n_heads: int
) -> tuple[Tensor, Tensor]:
    """The adaption prompt ``P (n, d)`` of one layer through that layer's own frozen key and value projections, per
    head: ``(H, n, h)`` each. The tiny-model module and the Hugging Face formulation
    (`adapterspec.interop.peft.llama_adapter`) both call this."""
    n = P.shape[0]
    K, V = k_proj(P), v_proj(P)  # (n, d)
    return (
        K.reshape(n, n_heads, -1).transpose(0, 1),
        V.reshape(n, n_heads, -1).transpose(0, 1),
    )  # (H, n, h)


def adaption_term(q: Tensor, K: Tensor, V: Tensor, g: Tensor) -> Tensor:
    """``g ⊙ softmax(q Kᵀ/√h) V``: what the prompt adds to each head's output, with a softmax of its own over the
    prompt positions, scaled by the gate ``g`` (``(H,)``, or ``(1,)`` shared by the heads). ``q (..., H, T, h)``,
    ``K``, ``V (H, n, h)`` → ``(..., H, T, h)``. Used by the Hugging Face formulation; the tiny model's attention
    computes the same (`adapterspec.tiny.PrefixKV` with a gate, checked equal in ``tests/test_prompts.py``)."""
    S = q @ K.mT / math.sqrt(q.shape[-1])  # (..., H, T, n)
    return g.reshape(-1, 1, 1) * (F.softmax(S, dim=-1) @ V)


class LLaMAAdapter(ModelAdapter):
    r"""Learn an adaption prompt for each of the top ``layers`` blocks, which the block's queries read through a
    separate softmax scaled by a gate that starts at zero; the model is frozen.

    $$S_l = \frac{Q_l\,[K^P_l;\, K_l]^\top}{\sqrt{h}},\qquad
      S^g_l = \big[\operatorname{softmax}(S^P_l)\cdot g_l;\ \operatorname{softmax}(S^{T}_l)\big],\qquad
      \text{head}_l = S^g_l\,[V^P_l;\, V_l]$$

    $P_l \in \mathbb{R}^{n \times d}$ is layer $l$'s prompt, $K^P_l = P_l W_{K,l}^\top$, $V^P_l = P_l W_{V,l}^\top$
    (the block's own frozen projections, `prompt_kv`); $S^P_l$ are the queries' scores on the prompt and $S^T_l$ those
    on the tokens (causal). The two softmaxes are taken separately (Eq. 8), so the tokens' attention is exactly what it
    was and the prompt only adds $g_l \operatorname{softmax}(S^P_l) V^P_l$ (`adaption_term`) to each head, before the
    output projection. $g_l$ starts at 0, so the adapted model starts as the pretrained one.

    Args:
        base: the frozen `adapterspec.tiny.TinyTransformer`.
        n: prompt length per layer (the paper's $K = 10$).
        layers: number of topmost blocks that get a prompt (the paper's $L = 30$ of LLaMA-7B's 32).
        per_head: one gate per head (``(H,)``) instead of one per layer (peft's ``adaption_gate``, ``(1,)``).
    """

    capacity = "n"

    def __init__(
        self, base: TinyTransformer, n: int = 4, layers: int = 2, per_head: bool = False
    ) -> None:
        super().__init__(base)
        c = base.config
        if not (isinstance(n, int) and n >= 1):
            raise ValueError(
                f"n (the adaption prompt's length) must be a positive integer, got {n!r}"
            )
        if not (isinstance(layers, int) and 1 <= layers <= c.n_layers):
            raise ValueError(
                f"layers (how many top blocks get a prompt) must be between 1 and the model's "
                f"n_layers={c.n_layers}, got {layers!r}"
            )
        self.n, self.layers, self.per_head = n, layers, per_head
        self.P = nn.Parameter(torch.empty(layers, n, c.d_model, **self.factory))  # (layers, n, d)
        self.g = nn.Parameter(
            torch.empty(layers, c.n_heads if per_head else 1, **self.factory)
        )  # (layers, H or 1)
        self.reset_parameters()

    # --8<-- [start:init]
    def reset_parameters(self) -> None:
        with torch.no_grad():
            nn.init.normal_(self.P)  # random prompts, N(0, 1), as the official code's embedding
            nn.init.zeros_(self.g)  # zero gate: the prompts add nothing at first

    # --8<-- [end:init]

    # --8<-- [start:update]
    def forward(self, tokens: Tensor) -> Tensor:
        c = self.base.config
        first = c.n_layers - self.layers  # the prompts sit in the top `layers` blocks
        prefix = {}
        for j in range(self.layers):
            attn = self.base.blocks[first + j].attn
            K, V = prompt_kv(self.P[j], attn.k_proj, attn.v_proj, c.n_heads)  # (H, n, h)
            # its own softmax, gated
            prefix[first + j] = PrefixKV(K, V, gate=self.g[j].expand(c.n_heads))
        return self.base(tokens, prefix=prefix)  # (B, T, V)

    # --8<-- [end:update]

    def symbols(self) -> dict:
        blocks = [b.attn for b in self.base.blocks]
        W_k = torch.stack([a.k_proj.weight for a in blocks])  # (L, d, d)
        b_k = torch.stack([a.k_proj.bias for a in blocks])  # (L, d)
        W_v = torch.stack([a.v_proj.weight for a in blocks])
        b_v = torch.stack([a.v_proj.bias for a in blocks])
        return {
            **super().symbols(),
            "P": self.P,
            "g": self.g,
            "n": self.n,
            "layers": self.layers,
            "W_k": W_k,
            "b_k": b_k,
            "W_v": W_v,
            "b_v": b_v,
        }
