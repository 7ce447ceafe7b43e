r"""Prefix tuning — per-layer key/value prefixes (Li & Liang, arXiv:2101.00190)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from adapterspec.tiny import ModelAdapter, PrefixKV, TinyTransformer


def reparameterize(P_prime: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor) -> Tensor:
    """``P = tanh(P' W1ᵀ + b1) W2ᵀ + b2``: the MLP that produces the prefix during training (Section 4.3),
    ``(n, d) → (n, 2·L·d)``."""
    return torch.tanh(P_prime @ W1.T + b1) @ W2.T + b2


def split_prefix(P: Tensor, n_layers: int, n_heads: int) -> Tensor:
    """The prefix ``P (n, 2·L·d)``, one row per virtual token holding every layer's key and value (layer-major, key
    before value, head-major), as ``(L, 2, H, n, h)``: ``[l, 0]`` are block ``l``'s prefix keys per head and
    ``[l, 1]`` its values. The layout is peft's, so its ``PrefixEncoder`` weight is our ``P`` as it is. The tiny-model
    module and the Hugging Face formulation (`adapterspec.interop.peft.prefix_tuning`) both call this."""
    n = P.shape[0]
    h = P.shape[1] // (2 * n_layers * n_heads)
    return P.reshape(n, n_layers, 2, n_heads, h).permute(1, 2, 3, 0, 4)  # (L, 2, H, n, h)


class PrefixTuning(ModelAdapter):
    r"""Learn $n$ key and value vectors for every attention layer, which every real token attends to as if $n$ tokens
    had come before the sequence; the model is frozen.

    $$h_i = P_\theta[i, :] \ \text{ for } i \in P_{idx},\qquad h_i = \mathrm{LM}_\phi(z_i, h_{<i}) \text{ otherwise}$$

    $$\text{head}_l = \operatorname{softmax}\!\Big(\frac{q\,[K^P_l;\,K_l]^\top}{\sqrt{h}} + M\Big)\,[V^P_l;\,V_l]$$

    $P_\theta \in \mathbb{R}^{n \times 2Ld}$ holds, for each of the $n$ prefix positions, the keys and values of all
    $L$ layers (the paper's activations $h_i$ of the prefix positions, as a Transformer's cache stores them); its rows
    are split per layer and head into $K^P_l, V^P_l \in \mathbb{R}^{H \times n \times h}$ (`split_prefix`). $M$ is the
    causal mask on the real tokens; the prefix is visible to every query. The real tokens sit at positions
    $n \dots n+T-1$, after the prefix, as they do in the paper's sequence $z = [\text{PREFIX}; x; y]$ (and in a
    Transformer cache holding the prefix).

    With ``projection=True`` the prefix is produced by an MLP from a smaller matrix during training,
    $P_\theta = \mathrm{MLP}_\theta(P'_\theta)$ (Section 4.3, `reparameterize`), which the paper reports stabilises
    optimisation; after training only $P_\theta$ is kept.

    Not the identity at init: the prefix takes a share of every softmax, whatever its values (even all-zero keys and
    values draw weight $e^0$ per position and dilute the real tokens' attention).

    Args:
        base: the frozen `adapterspec.tiny.TinyTransformer`.
        n: prefix length (the paper uses 5 to 200; 10 for table-to-text, 200 for summarisation).
        projection: produce the prefix with the MLP reparameterisation.
        hidden: width of that MLP's hidden layer (peft's ``encoder_hidden_size``; the paper's 512 or 800).
    """

    capacity = "n"

    def __init__(
        self, base: TinyTransformer, n: int = 4, projection: bool = False, hidden: int = 16
    ) -> None:
        super().__init__(base)
        if not (isinstance(n, int) and n >= 1):
            raise ValueError(f"n (the prefix length) must be a positive integer, got {n!r}")
        if projection and not (isinstance(hidden, int) and hidden >= 1):
            raise ValueError(
                f"hidden (the reparameterisation MLP's width) must be a positive integer, got {hidden!r}"
            )
        c = base.config
        self.n, self.projection, self.hidden = n, projection, hidden
        width = 2 * c.n_layers * c.d_model  # one row: every layer's key and value
        if projection:
            self.P_prime = nn.Parameter(torch.empty(n, c.d_model, **self.factory))  # (n, d)
            self.W1 = nn.Parameter(torch.empty(hidden, c.d_model, **self.factory))  # (hidden, d)
            self.b1 = nn.Parameter(torch.empty(hidden, **self.factory))  # (hidden,)
            self.W2 = nn.Parameter(torch.empty(width, hidden, **self.factory))  # (2Ld, hidden)
            self.b2 = nn.Parameter(torch.empty(width, **self.factory))  # (2Ld,)
        else:
            self.P = nn.Parameter(torch.empty(n, width, **self.factory))  # (n, 2Ld)
        self.reset_parameters()

    # --8<-- [start:init]
    def reset_parameters(self) -> None:
        with torch.no_grad():
            if not self.projection:
                nn.init.normal_(self.P)  # random prefix, N(0, 1) (peft's embedding init)
                return
            nn.init.normal_(self.P_prime)  # (n, d)
            for W, b in ((self.W1, self.b1), (self.W2, self.b2)):  # nn.Linear's default init
                bound = 1 / math.sqrt(W.shape[1])
                nn.init.uniform_(W, -bound, bound)
                nn.init.uniform_(b, -bound, bound)

    # --8<-- [end:init]

    # --8<-- [start:update]
    def prefix_matrix(self) -> Tensor:
        """``P_θ (n, 2·L·d)``: the trained prefix, or the MLP's output during reparameterised
        training."""
        if not self.projection:
            return self.P
        return reparameterize(self.P_prime, self.W1, self.b1, self.W2, self.b2)  # (n, 2Ld)

    def forward(self, tokens: Tensor) -> Tensor:
        c = self.base.config
        kv = split_prefix(self.prefix_matrix(), c.n_layers, c.n_heads)  # (L, 2, H, n, h)
        # joins each block's softmax
        prefix = {l: PrefixKV(kv[l, 0], kv[l, 1]) for l in range(c.n_layers)}
        # (B, T, V); real tokens after the prefix
        return self.base(tokens, prefix=prefix, start=self.n)

    # --8<-- [end:update]

    def symbols(self) -> dict:
        own = {"P": None, "P_prime": None, "W1": None, "b1": None, "W2": None, "b2": None}
        own.update({k: getattr(self, k) for k in own if k in self._parameters})
        return {**super().symbols(), **own, "n": self.n}
