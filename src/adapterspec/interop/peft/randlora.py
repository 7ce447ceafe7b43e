"""RandLoRA ⇄ peft 0.21.2's ``peft.tuners.randlora.layer.Linear``.

Three things differ between peft's layer and the paper's notation that this module uses; the conversion handles each
(all documented on the RandLoRA page):

* scaling: peft multiplies by ``randlora_alpha / r`` with no ``1/√n``; the converted module uses ``scaling="peft"`` and
  peft's factor as it is.
* pairing: peft flattens its ``B (D, n, r)`` basis-major but its scaled ``A`` rank-major, so the column of the B stack
  that meets ``λ[k, j]`` and ``γ_j`` is ``k·n + j``: our ``B_j[:, k]`` is that column.
* shared bases: peft holds one ``A (r, 1, d_max)`` and ``B (D_max, n_max, r)`` for the whole model (bf16 at draw time)
  and slices them per layer; the slices are copied, so the result is exact. ``projection_prng_key`` and the
  sparse/very_sparse choice are not recorded on the layer: the module keeps ``seed=0``, ``sparsity=0``, and
  ``reset_parameters()`` would redraw its own bases.
"""

from __future__ import annotations

import torch

from adapterspec.interop.peft import PeftConversionError
from adapterspec.methods.randlora import RandLoRA

LAYER = "peft.tuners.randlora.layer.Linear"
CONFIG = "RandLoraConfig"
BENCH = dict()  # peft's defaults (r = 32), for scripts/bench_peft.py
CASES = [
    dict(r=4, randlora_alpha=8),
    dict(r=5, randlora_alpha=100, projection_prng_key=3),  # r divides neither 24 nor 40: n = ⌈d/r⌉
    dict(r=32),  # peft's defaults (randlora_alpha=640): one basis, s = 20
    dict(r=6, randlora_alpha=12, sparse=True),
    dict(r=8, randlora_alpha=16, very_sparse=True, randlora_dropout=0.1),  # dropout: off in eval
]


@torch.no_grad()
def convert(layer, base, name: str) -> RandLoRA:
    r = layer.r[name]
    module = RandLoRA(base, r=r, alpha=layer.scaling[name] * r, scaling="peft")
    if layer.num_bases != module.n:
        raise PeftConversionError(f"peft layer has {layer.num_bases} bases, expected ⌈d/r⌉ = {module.n}")
    module.s = layer.scaling[name]  # α/r exactly as peft computed it
    n, d, D = module.n, module.d, module.D
    A = layer.randlora_A[name][:, 0, :d]  # (r, d): peft's (r, 1, d_max), sliced to this layer
    B = layer.randlora_B[name][:D, :n, :]  # (D, n, r), flattened by peft to column j·r + k …
    B_pairs = B.reshape(D, n * r).reshape(D, r, n)  # … which meets λ[k, j], γ_j when it equals k·n + j
    module.A.copy_(A)
    module.B.copy_(B_pairs.permute(2, 0, 1))  # (n, D, r): our B_j[:, k] = peft column k·n + j
    module.Lambda.copy_(layer.randlora_lambda[name].T)  # peft (r, n) → (n, r)
    module.Gamma.copy_(layer.randlora_gamma[name])  # (n, d)
    return module
