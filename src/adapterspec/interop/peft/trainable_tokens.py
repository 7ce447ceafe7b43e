"""Trainable Tokens ⇄ peft 0.21.2's ``peft.tuners.trainable_tokens.layer.TrainableTokensLayer``.

peft keeps the trained rows in ``trainable_tokens_delta[name]`` (shape ``(k, d)``): despite the name they are the rows'
*values*, written over the table with ``index_copy``, so they are copied into `TrainableTokens.E` as they are, with
``token_indices[name]`` as the indices. Only the layer wrapping the ``nn.Embedding`` converts; the tied copy peft puts
on a tied ``lm_head`` (an ``nn.Linear`` sharing the same tensors) is the same update read by the output layer, and
is refused with a pointer to the embedding.
"""

from __future__ import annotations

import torch
from torch import nn

from adapterspec.interop.peft import PeftConversionError
from adapterspec.methods.trainable_tokens import TrainableTokens

LAYER = "peft.tuners.trainable_tokens.layer.TrainableTokensLayer"
CONFIG = "TrainableTokensConfig"
SHAPES = [(40, 24), (24, 40)]  # (vocab_size, d_model)
CASES = [
    dict(token_indices=[1, 5, 9]),
    dict(token_indices=[0, 23]),  # the first and the last id of the smaller vocabulary
    dict(token_indices=[7, 2, 19, 11], init_weights=False),  # unsorted; random rows at init
]
BENCH = dict(token_indices=[1, 5, 9])


def convert(layer, base, name: str) -> TrainableTokens:
    if not isinstance(base, nn.Embedding):
        raise PeftConversionError(f"this TrainableTokensLayer wraps a {type(base).__name__} (a tied lm_head): convert "
                                  "the layer on the input embedding, whose rows it shares")
    module = TrainableTokens(base, token_indices=list(layer.token_indices[name]))
    with torch.no_grad():
        module.E.copy_(layer.trainable_tokens_delta[name])  # values of the rows, not differences
    return module
