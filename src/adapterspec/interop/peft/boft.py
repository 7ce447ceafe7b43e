"""BOFT ⇄ peft 0.21.2's ``peft.tuners.boft.layer.Linear``.

peft's layer differs from the paper in three ways, and the conversion reproduces each:

* it learns an output scale ``boft_s`` (one number per output neuron, 1 at init) that the paper does not have:
  ``scale=True``;
* it stores a full ``b × b`` matrix per block and uses ``S = (A − Aᵀ)/2`` (``full_skew=True``), then solves for
  ``(I − S)(I + S)⁻¹``, the paper's Cayley map of ``−S``: we store ``−A``;
* its factors ``B_i = P_i BD_i P_iᵀ`` (``boft_P``) pair the same half-blocks as ours, and its rotation
  ``B_m ⋯ B_1`` multiplies ``x`` from the right, as ours does.

peft builds factors 2 to m with a CUDA kernel (``fbd_cuda``, compiled on first use). Where it cannot compile it (any
machine without CUDA; also an H200 with torch 2.11 and CUDA 13, whose dispatch macros reject the kernel's
``input.type()``) peft warns and silently sets ``boft_n_butterfly_factor`` to 1: a config asking for three factors
gets one. The equality matrix and the speed benchmark run on CPUs, so `peft_config` installs, for peft's
own code to call, a plain-torch kernel computing what ``fbd_cuda`` computes (a batched block-diagonal matrix,
``(N, D, H, H) → (N, D·H, D·H)``, and its gradient). Everything else that runs is peft's.
"""

from __future__ import annotations

import torch

from adapterspec.interop.peft import PeftConversionError
from adapterspec.methods.boft import BOFT

LAYER = "peft.tuners.boft.layer.Linear"
CONFIG = "BOFTConfig"
SHAPES = [(32, 24), (48, 20)]
BENCH = dict(boft_block_size=8, boft_n_butterfly_factor=2)  # the paper's BOFT(m=2, b=8)
CASES = [
    dict(boft_block_size=4),  # peft's defaults: b = 4, one factor (OFT)
    dict(boft_block_size=4, boft_n_butterfly_factor=2),
    dict(boft_block_size=4, boft_n_butterfly_factor=3),
    dict(boft_block_size=0, boft_block_num=8, boft_n_butterfly_factor=2),  # b = d_in / 8
    dict(boft_block_size=0, boft_block_num=4, boft_n_butterfly_factor=3, boft_dropout=0.1),  # dropout: training only
]


class TorchBlockDiag:
    """What peft's ``fbd_cuda`` extension computes, in torch: ``forward(x)[0]`` is the batched block-diagonal
    matrix of ``x (N, D, H, H)``, ``backward(g, x)[0]`` the gradient with respect to ``x``."""

    @staticmethod
    def forward(x: torch.Tensor) -> list[torch.Tensor]:
        N, D, H, _ = x.shape
        eye = torch.eye(D, dtype=x.dtype, device=x.device)
        out = torch.einsum("ndij,de->ndiej", x, eye)  # (N, D, H, D, H): block (d, e) is x[n, d] if d = e
        return [out.reshape(N, D * H, D * H)]

    @staticmethod
    def backward(grad: torch.Tensor, x: torch.Tensor) -> list[torch.Tensor]:
        N, D, H, _ = x.shape
        g = grad.reshape(N, D, H, D, H)
        return [torch.einsum("ndidj->ndij", g)]  # the diagonal blocks


def use_torch_kernel() -> None:
    """Make peft's BOFT build every butterfly factor on a machine without CUDA (see the module docstring)."""
    from peft.tuners.boft import layer

    if layer._FBD_CUDA is None and not torch.cuda.is_available():
        layer._FBD_CUDA = TorchBlockDiag


def peft_config(**kwargs):
    """peft's ``BOFTConfig``; on a machine without CUDA, first `use_torch_kernel`."""
    import peft

    use_torch_kernel()
    return peft.BOFTConfig(**kwargs)


@torch.no_grad()
def convert(layer, base, name: str) -> BOFT:
    A = layer.boft_R[name].detach()  # (m, d_in/b, b, b); peft uses S = (A − Aᵀ)/2 and (I − S)(I + S)⁻¹
    m, r, b, _ = A.shape
    module = BOFT(base, b=b, m=m, scale=True, full_skew=True)
    if module.r != r:
        raise PeftConversionError(f"peft's layer has {r} blocks of {b}, which do not tile d_in={module.d_in}")
    module.q.copy_(-A.flatten(-2))  # the paper's map of −S
    module.s.copy_(layer.boft_s[name].detach().flatten())  # (d_out, 1) → (d_out,)
    return module
