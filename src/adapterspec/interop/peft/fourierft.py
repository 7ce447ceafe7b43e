"""FourierFT ⇄ peft 0.21.2's ``peft.tuners.fourierft.layer.FourierFTLinear``.

peft builds the dense spectrum in torch's default dtype (float32) whatever the adapter's dtype, so a float64 peft layer
computes ΔW in float32; the converted module reproduces that with ``precision="peft"``. The entries are copied from
the layer (peft keeps them in a plain dict, regenerated from ``random_loc_seed``; our module draws the same ones from
the same seed).
"""

from __future__ import annotations

import torch

from adapterspec.interop.peft import PeftConversionError
from adapterspec.methods.fourierft import FourierFT

LAYER = "peft.tuners.fourierft.layer.FourierFTLinear"
CONFIG = "FourierFTConfig"
CASES = [
    dict(n_frequency=30, scaling=150.0),  # peft's default scaling and seed
    dict(n_frequency=200, scaling=300.0, random_loc_seed=2024),  # the paper's alpha and seed
    dict(n_frequency=960, scaling=20.0, init_weights=True),  # every entry of the 24 × 40 spectrum; zero init
    dict(n_frequency=5, scaling=1000.0, random_loc_seed=0),
]
BENCH = dict(n_frequency=1000, scaling=300.0)  # the paper's LLaMA setting, for scripts/bench_peft.py


@torch.no_grad()
def convert(layer, base, name: str) -> FourierFT:
    seed = layer.fourierft_random_loc_seed[name]
    module = FourierFT(base, n=layer.fourierft_n_frequency[name], alpha=float(layer.fourierft_scaling[name]),
                       seed=0 if seed is None else int(seed), precision="peft")
    indices = layer.indices[name]  # (2, n): row (output) and column (input) frequency of each coefficient
    if indices.shape != module.E.shape:
        raise PeftConversionError(f"peft's entry matrix has shape {tuple(indices.shape)}, "
                                  f"expected {tuple(module.E.shape)}")
    module.E.copy_(indices)
    module.c.copy_(layer.fourierft_spectrum[name])  # (n,)
    return module
