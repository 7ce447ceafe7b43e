r"""P-tuning — continuous prompts from a prompt encoder (Liu et al., arXiv:2103.10385)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from adapterspec.methods.prompt_tuning import prepend
from adapterspec.tiny import ModelAdapter, TinyTransformer


def mlp_encoder(
    E_p: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor, W3: Tensor, b3: Tensor
) -> Tensor:
    """``h_i = W3 ReLU(W2 ReLU(W1 e_i + b1) + b2) + b3``, each prompt embedding on its own: ``(n, d) → (n, d)``."""
    return torch.relu(torch.relu(E_p @ W1.T + b1) @ W2.T + b2) @ W3.T + b3


def lstm_encoder(
    E_p: Tensor,
    W_ih: list[Tensor],
    W_hh: list[Tensor],
    b_ih: list[Tensor],
    b_hh: list[Tensor],
    W1: Tensor,
    b1: Tensor,
    W2: Tensor,
    b2: Tensor,
) -> Tensor:
    """A bidirectional LSTM over the ``n`` prompt embeddings (``len(W_ih) // 2`` layers; index ``2k`` is layer
    ``k`` forwards, ``2k + 1`` backwards; gates in the order input, forget, cell, output), then
    ``W2 ReLU(W1 [→h_i; ←h_i] + b1) + b2``: ``(n, d) → (n, d)``. Every prompt vector depends on all the others."""
    x = E_p  # (n, d_in)
    n = x.shape[0]
    for k in range(len(W_ih) // 2):
        outs = []
        for direction in (0, 1):
            i = 2 * k + direction
            seq = x if direction == 0 else x.flip(0)
            h = x.new_zeros(W_hh[i].shape[1])  # (hidden,)
            c = x.new_zeros(W_hh[i].shape[1])
            hs = []
            for t in range(n):
                gi, gf, gg, go = (W_ih[i] @ seq[t] + b_ih[i] + W_hh[i] @ h + b_hh[i]).chunk(4)
                c = torch.sigmoid(gf) * c + torch.sigmoid(gi) * torch.tanh(gg)
                h = torch.sigmoid(go) * torch.tanh(c)
                hs.append(h)
            out = torch.stack(hs)  # (n, hidden)
            outs.append(out if direction == 0 else out.flip(0))
        x = torch.cat(outs, dim=1)  # (n, 2·hidden)
    return torch.relu(x @ W1.T + b1) @ W2.T + b2  # (n, d)


class PTuning(ModelAdapter):
    r"""Produce the soft prompt with a small trainable network (the prompt encoder) from $n$ trainable embeddings,
    and prepend it to every input sequence; the model is frozen.

    $$[h_1, \dots, h_n] = f([e_1, \dots, e_n]),\qquad \tilde{X}_e = [h_1; \dots; h_n;\, X_e],\qquad
      \text{logits}' = f_\theta(\tilde{X}_e)_{\,n+1 \dots n+T}$$

    $f$ is the prompt encoder: an MLP applied to each $e_i$ (`mlp_encoder`, peft's recommended default) or a
    bidirectional LSTM followed by a two-layer MLP (`lstm_encoder`, the paper's choice), which makes the prompt vectors
    depend on each other. The prompt is then used exactly as in prompt tuning (`adapterspec.methods.prompt_tuning`):
    all $n$ vectors before the input, their logits dropped. The paper interleaves prompt vectors with the input's
    tokens in a template; peft, and this module, put them all first.

    Not the identity at init: the real tokens attend to the prompt positions.

    Args:
        base: the frozen `adapterspec.tiny.TinyTransformer`.
        n: number of prompt vectors.
        lstm: the LSTM encoder instead of the MLP.
        hidden: the encoder's hidden width (peft's ``encoder_hidden_size``).
        lstm_layers: stacked bidirectional LSTM layers (peft's ``encoder_num_layers``, default 2).
    """

    capacity = "n"

    def __init__(
        self,
        base: TinyTransformer,
        n: int = 4,
        lstm: bool = False,
        hidden: int = 16,
        lstm_layers: int = 2,
    ) -> None:
        super().__init__(base)
        for name, value in (("n", n), ("hidden", hidden), ("lstm_layers", lstm_layers)):
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        d, f = base.config.d_model, self.factory
        self.n, self.lstm, self.hidden, self.lstm_layers = n, lstm, hidden, lstm_layers
        self.E_p = nn.Parameter(torch.empty(n, d, **f))  # (n, d) the encoder's inputs
        if lstm:
            sizes = [
                d if k == 0 else 2 * hidden for k in range(lstm_layers) for _ in (0, 1)
            ]  # per layer, direction
            self.W_ih = nn.ParameterList(
                nn.Parameter(torch.empty(4 * hidden, s, **f)) for s in sizes
            )
            self.W_hh = nn.ParameterList(
                nn.Parameter(torch.empty(4 * hidden, hidden, **f)) for _ in sizes
            )
            self.b_ih = nn.ParameterList(nn.Parameter(torch.empty(4 * hidden, **f)) for _ in sizes)
            self.b_hh = nn.ParameterList(nn.Parameter(torch.empty(4 * hidden, **f)) for _ in sizes)
            shapes = [(2 * hidden, 2 * hidden), (d, 2 * hidden)]  # the MLP head on [→h; ←h]
        else:
            shapes = [(hidden, d), (hidden, hidden), (d, hidden)]
        self.Ws = nn.ParameterList(nn.Parameter(torch.empty(*s, **f)) for s in shapes)
        self.bs = nn.ParameterList(nn.Parameter(torch.empty(s[0], **f)) for s in shapes)
        self.reset_parameters()

    # --8<-- [start:init]
    def reset_parameters(self) -> None:
        with torch.no_grad():
            nn.init.normal_(self.E_p)  # N(0, 1), peft's embedding init
            for W, b in zip(self.Ws, self.bs):  # nn.Linear's default init
                bound = 1 / math.sqrt(W.shape[1])
                nn.init.uniform_(W, -bound, bound)
                nn.init.uniform_(b, -bound, bound)
            if self.lstm:  # nn.LSTM's default init: U(-1/√hidden, 1/√hidden) for every tensor
                bound = 1 / math.sqrt(self.hidden)
                for p in (*self.W_ih, *self.W_hh, *self.b_ih, *self.b_hh):
                    nn.init.uniform_(p, -bound, bound)

    # --8<-- [end:init]

    # --8<-- [start:update]
    def prompt(self) -> Tensor:
        """The soft prompt ``(n, d)``: the encoder applied to the trainable embeddings ``E_p``."""
        if self.lstm:
            W1, W2 = self.Ws
            b1, b2 = self.bs
            return lstm_encoder(
                self.E_p,
                list(self.W_ih),
                list(self.W_hh),
                list(self.b_ih),
                list(self.b_hh),
                W1,
                b1,
                W2,
                b2,
            )
        return mlp_encoder(self.E_p, *(t for pair in zip(self.Ws, self.bs) for t in pair))

    def forward(self, tokens: Tensor) -> Tensor:
        e = self.base.embed(tokens)  # (B, T, d)
        # (B, T, V): real tokens only
        return self.base(inputs_embeds=prepend(self.prompt(), e))[:, self.n :]

    # --8<-- [end:update]

    def symbols(self) -> dict:
        ws = {f"W{i + 1}": W for i, W in enumerate(self.Ws)} | {
            f"b{i + 1}": b for i, b in enumerate(self.bs)
        }
        own = {"W3": None, "b3": None, "W_ih": None, "W_hh": None, "b_ih": None, "b_hh": None, **ws}
        if self.lstm:
            own.update(
                W_ih=list(self.W_ih),
                W_hh=list(self.W_hh),
                b_ih=list(self.b_ih),
                b_hh=list(self.b_hh),
            )
        return {**super().symbols(), **own, "E_p": self.E_p, "n": self.n}
