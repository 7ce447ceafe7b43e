"""SHiRA ⇄ peft 0.21.2's ``peft.tuners.shira.layer.Linear``.

peft stores the adapter as SHiRA does: a value vector ``shira_weight`` ``(k,)`` and the positions ``shira_indices``
``(2, k)`` (int32, row-major), with ``k = r (d_in + d_out)``. Both are copied, so any mask converts, including a
user-supplied ``mask_fn``; the reference module's own mask draw is overwritten.
"""

from __future__ import annotations

import torch

from adapterspec.interop.peft import PeftConversionError
from adapterspec.methods.shira import SHiRA

LAYER = "peft.tuners.shira.layer.Linear"
CASES = [
    dict(r=2, random_seed=42),
    dict(r=3),  # random_seed=None: peft's unseeded generator, i.e. its fixed default seed
    dict(r=1, random_seed=0),
    dict(r=4, mask_type="weight_magnitude"),  # SHiRA-WM, given to peft as a custom mask_fn
]
BENCH = dict(r=32, random_seed=42)  # the independent benchmark's setting, for scripts/bench_peft.py


def _weight_magnitude_mask(base_layer, r: int, **kwargs) -> torch.Tensor:
    """SHiRA-WM for peft's ``mask_fn`` hook: ones on the ``r (d_in + d_out)`` largest ``|W0|``."""
    W = base_layer.weight
    k = r * (W.shape[0] + W.shape[1])
    mask = torch.zeros(W.numel(), dtype=W.dtype, device=W.device)
    mask[torch.topk(W.detach().abs().flatten(), k).indices] = 1
    return mask.view_as(W)


def peft_config(**kwargs):
    import warnings

    from peft import ShiraConfig
    if kwargs.get("mask_type") == "weight_magnitude":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # peft warns that it does not know the mask type: we supply it
            config = ShiraConfig(**kwargs)
        config.mask_fn = _weight_magnitude_mask
        return config
    return ShiraConfig(**kwargs)


@torch.no_grad()
def convert(layer, base, name: str) -> SHiRA:
    module = SHiRA(base, r=layer.r[name], alpha=float(layer.scaling[name]))
    indices = layer.shira_indices[name]  # (2, k): (row = output, column = input) of each value
    if indices.shape != module.indices.shape:
        raise PeftConversionError(f"peft's SHiRA indices have shape {tuple(indices.shape)}, expected "
                                  f"{tuple(module.indices.shape)} = (2, r * (d_in + d_out))")
    module.indices.copy_(indices.long())
    module.s.copy_(layer.shira_weight[name])  # (k,)
    return module
