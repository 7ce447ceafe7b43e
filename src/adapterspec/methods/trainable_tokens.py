r"""Trainable Tokens — train only chosen rows of the token embedding (peft's ``TrainableTokensConfig``; no paper)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from adapterspec.adapter import Adapter


class TrainableTokens(Adapter):
    r"""Replace the embedding rows of a few chosen tokens by trainable vectors; every other row stays frozen.

    $$W'_{t} = \begin{cases} E_j & t = t_j \in \{t_1, \dots, t_k\} \\ W_{0,t} & \text{otherwise} \end{cases}
      \qquad \Delta W = \textstyle\sum_j e_{t_j} (E_j - W_{0,t_j})^\top$$

    ``W0 (V, d)`` is the frozen table of an ``nn.Embedding``; the trained tensor ``E (k, d)`` holds the *values* of
    the chosen rows (as peft stores them), not differences, so a row of ``W0`` changed later (a resized vocabulary)
    does not leak into it. The update touches ``k`` rows, so ``rank(ΔW) ≤ k``, and it merges into the table exactly.

    Args:
        base: the frozen ``nn.Embedding`` (``V`` tokens of width ``d``).
        token_indices: the ``k`` distinct token ids whose rows are trained.
        init_weights: ``True`` (peft's default): ``E`` starts as a copy of those rows, so the layer is unchanged at
            init; ``False``: ``E`` starts as standard normal noise (peft's ``init_weights=False``).
    """

    base_type = nn.Embedding
    shape_names = ("vocab_size", "d_model")

    def __init__(
        self, base: nn.Embedding, token_indices: Sequence[int] = (0,), init_weights: bool = True
    ) -> None:
        super().__init__(base)
        V = base.num_embeddings
        indices = [int(t) for t in token_indices]
        if not indices:
            raise ValueError("token_indices must name at least one token id (the rows to train)")
        if any(not 0 <= t < V for t in indices):
            raise ValueError(
                f"token_indices must be token ids in 0 … {V - 1} (vocab_size={V}), got {indices}"
            )
        if len(set(indices)) != len(indices):
            raise ValueError(
                f"token_indices must be distinct; {indices} repeats an id (two trained rows for one token "
                "would be ambiguous)"
            )
        self.token_indices, self.init_weights = tuple(indices), init_weights
        self.register_buffer(
            "t", torch.tensor(indices, dtype=torch.long, device=base.weight.device)
        )  # (k,)
        self.E = nn.Parameter(
            torch.empty(len(indices), base.embedding_dim, **self.factory)
        )  # (k, d)
        self.reset_parameters()

    @property
    def d_in(self) -> int:
        return self.base.num_embeddings

    @property
    def d_out(self) -> int:
        return self.base.embedding_dim

    @classmethod
    def example_base(
        cls, d_in: int, d_out: int, generator: torch.Generator, dtype: torch.dtype
    ) -> nn.Embedding:
        """An ``nn.Embedding(vocab_size=d_in, d_model=d_out)`` with ``N(0, 1)`` rows drawn from ``generator``."""
        with torch.random.fork_rng(
            devices=[]
        ):  # nn.Embedding's own init draws from the global generator
            base = nn.Embedding(d_in, d_out, dtype=dtype)
        with torch.no_grad():
            base.weight.copy_(torch.randn(d_in, d_out, generator=generator, dtype=dtype))
        return base

    @classmethod
    def example_inputs(
        cls, base: nn.Embedding, n: int, generator: torch.Generator, dtype: torch.dtype
    ) -> Tensor:
        """``n`` sequences, each a random permutation of every token id, ``(n, V)``: every row is read."""
        V = base.num_embeddings
        return torch.stack([torch.randperm(V, generator=generator) for _ in range(n)])

    # --8<-- [start:init]
    def reset_parameters(self) -> None:
        with torch.no_grad():
            if self.init_weights:  # the current rows: W' = W0 at init
                self.E.copy_(self.base.weight[self.t])
            else:
                self.E.normal_()

    # --8<-- [end:init]

    # --8<-- [start:update]
    def adapted_weight(self, W0: Tensor) -> Tensor:
        return W0.index_copy(0, self.t, self.E.to(W0.dtype))  # (V, d): rows t_j replaced by E_j

    # --8<-- [end:update]

    def symbols(self) -> dict:
        return {
            **super().symbols(),
            "E": self.E,
            "indices": self.t,
            "k": len(self.token_indices),
            "vocab_size": self.d_in,
            "d_model": self.d_out,
        }

    def extra_repr(self) -> str:
        return f"vocab_size={self.d_in}, d_model={self.d_out}, token_indices={list(self.token_indices)}"
