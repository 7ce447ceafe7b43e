"""adapterspec: executable reference implementations of parameter-efficient fine-tuning methods.

Each method wraps one frozen ``nn.Linear`` in an `Adapter`; its update rule is in the class docstring, its code
follows the paper's symbols, and the catalog (``entries/``) verifies its pseudocode against it.

Example:
    ```python
    import torch, adapterspec

    adapterspec.available()                          # the method slugs, e.g. ["dora", "ia3", "lora", ...]
    layer = torch.nn.Linear(64, 64)
    dora = adapterspec.create("dora", layer, r=4)    # identity at init: dora(x) == layer(x)
    adapterspec.randomize_(dora)                     # a random, non-identity adapter state
    W = dora.merged_weight()                         # (64, 64)
    ```
"""

from adapterspec import ops
from adapterspec.adapter import Adapter
from adapterspec.registry import adapter_class, available, create, hyperparameters, randomize_

__all__ = ["Adapter", "adapter_class", "available", "create", "hyperparameters", "ops", "randomize_"]
__version__ = "0.1.0"
