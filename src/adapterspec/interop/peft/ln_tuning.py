"""LN Tuning ⇄ peft 0.21.2's `peft.tuners.ln_tuning.layer.LNTuningLayer`."""

from __future__ import annotations

import torch
from torch import nn

from adapterspec.interop.peft import PeftConversionError
from adapterspec.methods.ln_tuning import LNTuning

LAYER = "peft.tuners.ln_tuning.layer.LNTuningLayer"
CONFIG = "LNTuningConfig"

# LNTuningConfig has no option that changes the layer (only target_modules, exclude_modules, modules_to_save): one
# case. The harness builds the base from LNTuning.example_base, an nn.LayerNorm, so the shapes are square.
CASES = [{}]
SHAPES = [(24, 24), (40, 40)]


def convert(layer, base, name: str) -> LNTuning:
    """Our module with the tuned gain and shift of `layer`'s adapter `name`; `base` is a copy of its frozen norm."""
    if not isinstance(base, nn.LayerNorm):
        raise PeftConversionError(
            f"peft's LNTuningLayer trains a full copy of whatever module it wraps; this one wraps a "
            f"{type(base).__name__}, so LN tuning on it is full fine-tuning of that layer, not LayerNorm tuning. "
            "adapterspec's LN tuning converts adapters on an nn.LayerNorm only")
    tuned = layer.ln_tuning_layers[name]  # peft: a deep copy of the base LayerNorm, all of it trainable
    if (not isinstance(tuned, nn.LayerNorm) or tuned.normalized_shape != base.normalized_shape
            or tuned.eps != base.eps or (tuned.bias is None) != (base.bias is None)):
        raise PeftConversionError(f"adapter {name!r} is not a tuned copy of its base LayerNorm ({tuned!r} vs "
                                  f"{base!r}): only the weight and bias may differ")
    module = LNTuning(base)
    with torch.no_grad():
        module.gamma.copy_(tuned.weight)  # (d,)
        if module.beta is not None:
            module.beta.copy_(tuned.bias)  # (d,)
    return module
