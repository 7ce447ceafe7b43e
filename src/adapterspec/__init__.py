"""adapterspec: executable reference implementations of parameter-efficient fine-tuning methods.

Each method wraps one frozen ``nn.Linear`` in an :class:`Adapter`; its update rule is in the class docstring, its code
follows the paper's symbols, and the catalog (``entries/``) verifies its pseudocode against it.

Example:
    >>> import torch, adapterspec
    >>> adapterspec.available()[:3]
    ['dora', 'ia3', 'lora']
    >>> layer = torch.nn.Linear(64, 64)
    >>> dora = adapterspec.create("dora", layer, r=4)
    >>> torch.allclose(dora(torch.ones(64)), layer(torch.ones(64)))
    True
"""

from adapterspec import ops
from adapterspec.adapter import Adapter
from adapterspec.registry import adapter_class, available, create, hyperparameters, randomize_

__all__ = ["Adapter", "adapter_class", "available", "create", "hyperparameters", "ops", "randomize_"]
__version__ = "0.1.0"
