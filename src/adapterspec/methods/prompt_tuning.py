r"""Prompt tuning — soft prompts (Lester, Al-Rfou & Constant, arXiv:2104.08691)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from adapterspec.tiny import ModelAdapter, TinyTransformer

INITS = ("vocab", "uniform")


def prepend(P: Tensor, e: Tensor) -> Tensor:
    """``[P; e]``: the soft prompt ``P (n, d)`` before each sequence of embeddings ``e (B, T, d)`` → ``(B, n + T, d)``.
    The one step of the method; the tiny-model module and the Hugging Face formulation
    (`adapterspec.interop.peft.prompt_tuning`) both call it."""
    return torch.cat([P.to(e.dtype).expand(e.shape[0], -1, -1), e], dim=1)


class PromptTuning(ModelAdapter):
    r"""Learn $n$ input embeddings, prepended to every sequence; the model is frozen, its embedding table included.

    $$X = [x_1, \dots, x_T],\qquad [P_e;\, X_e] \in \mathbb{R}^{(n + T) \times d},\qquad
      P_e \in \mathbb{R}^{n \times d},\qquad \text{logits}' = f_{\theta}([P_e;\, X_e])_{n+1 \dots n+T}$$

    $X_e$ are the token embeddings of the input, $f_\theta$ the frozen transformer (which adds its position embeddings
    to all $n + T$ inputs, so the real tokens sit at positions $n \dots n + T - 1$) and only $P_e$ trains. The logits
    of the $n$ virtual positions are dropped: the output has the base model's shape.

    Not the identity at init: every real token can attend to the prompt positions, so the output changes as soon as
    there is a prompt, whatever its values (a zero prompt still takes a share of each softmax).

    Args:
        base: the frozen `adapterspec.tiny.TinyTransformer`.
        n: number of soft-prompt tokens (the paper's prompt length $P$: 1 to 150).
        init: ``"vocab"``, the embeddings of $n$ token ids drawn uniformly from the vocabulary (the paper samples
            from the 5,000 most common tokens; peft's ``SAMPLE_VOCAB`` from all of them), or ``"uniform"``, entries
            drawn from $U(-0.5, 0.5)$ (the paper's random init).
    """

    capacity = "n"

    def __init__(self, base: TinyTransformer, n: int = 4, init: str = "vocab") -> None:
        super().__init__(base)
        if not (isinstance(n, int) and n >= 1):
            raise ValueError(
                f"n (the number of soft-prompt tokens) must be a positive integer, got {n!r}"
            )
        if init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
        self.n, self.init = n, init
        self.P = nn.Parameter(torch.empty(n, base.config.d_model, **self.factory))  # (n, d)
        self.reset_parameters()

    # --8<-- [start:init]
    def reset_parameters(self) -> None:
        with torch.no_grad():
            if self.init == "vocab":  # start from real words: n rows of the frozen embedding table
                ids = torch.randint(self.base.config.vocab_size, (self.n,))  # (n,)
                self.P.copy_(self.base.embed.weight[ids])  # (n, d)
            else:
                self.P.uniform_(-0.5, 0.5)  # (n, d)

    # --8<-- [end:init]

    # --8<-- [start:update]
    def forward(self, tokens: Tensor) -> Tensor:
        e = self.base.embed(tokens)  # (B, T, d) frozen token embeddings
        logits = self.base(inputs_embeds=prepend(self.P, e))  # (B, n + T, V)
        return logits[:, self.n :]  # (B, T, V): the real tokens only

    # --8<-- [end:update]

    def symbols(self) -> dict:
        return {**super().symbols(), "P": self.P, "n": self.n}
