"""OFTv2's compute claim, counted rather than timed: FLOPs (torch's FLOP counter) and the new tensors autograd saves
for the backward pass, for one forward + backward of three ways to compute the same layer:

* ``dense``: weight-centric with the block-diagonal R formed as a d_in × d_in matrix (what the original OFT code did;
  the paper's "cubic" Eq. 1);
* ``blockwise``: weight-centric, W0 Rᵀ formed block by block (the reference module's ``adapted_weight``);
* ``input``: OFTv2's input-centric forward (Eq. 2), the reference module's ``forward``.

The input ``x`` requires grad, as for every layer inside a network. Findings pinned here (and stated on the OFTv2
page): the weight-centric paths save the weight-sized ``W0 Rᵀ`` for the backward pass and need three N·d_in·d_out
products (forward, grad of x, grad of ``W0 Rᵀ`` — the same as full fine-tuning), the input-centric one saves only
activations and needs two (forward, grad of the rotated input), so it wins by about N·d_in·d_out whatever N is. For a
first layer (``x`` without grad) both need two, and the input side wins only when N < d_out. ``dense`` pays about
d_in / b times more than ``blockwise`` for the rotation.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from adapterspec import ops, randomize_
from adapterspec.methods.oftv2 import OFTv2

D_IN, D_OUT, B = 256, 192, 16


def _module():
    base = torch.nn.Linear(D_IN, D_OUT, dtype=torch.float32)
    return randomize_(OFTv2(base, b=B, k=3), torch.Generator().manual_seed(0))


def _run(mode: str, m: OFTv2, x: torch.Tensor) -> torch.Tensor:
    if mode == "input":
        return m(x)
    if mode == "blockwise":
        return F.linear(x, m.adapted_weight(m.base.weight), m.base.bias)
    R = ops.block_diag(m.blocks())  # (d_in, d_in), mostly zeros
    return F.linear(x, m.base.weight @ R.T, m.base.bias)


def _flops(mode: str, N: int, x_grad: bool = True) -> int:
    m, x = _module(), torch.randn(N, D_IN, requires_grad=x_grad)
    with FlopCounterMode(display=False) as counter:
        _run(mode, m, x).sum().backward()
    return counter.get_total_flops()


def _saved_new_bytes(mode: str, N: int) -> tuple[int, int]:
    """Bytes of tensors saved for backward that are not already held as parameters, and the largest one (elements)."""
    m, x = _module(), torch.randn(N, D_IN, requires_grad=True)
    held = {t.untyped_storage().data_ptr() for t in [*m.parameters(), *m.buffers()]}
    sizes: list[int] = []

    def pack(t):
        if t.untyped_storage().data_ptr() not in held:
            sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        _run(mode, m, x).sum().backward()
    return 4 * sum(sizes), max(sizes)


def test_the_three_paths_compute_the_same_layer():
    m, x = _module(), torch.randn(6, D_IN)
    with torch.no_grad():
        ys = [_run(mode, m, x) for mode in ("input", "blockwise", "dense")]
    assert max(float((y - ys[0]).abs().max()) for y in ys) < 1e-4 and (ys[0] - m.base(x)).abs().max() > 1e-2


@pytest.mark.parametrize("N", [8, 64, 1024])
def test_input_centric_saves_no_weight_sized_tensor(N):
    size_in, largest_in = _saved_new_bytes("input", N)
    size_w, largest_w = _saved_new_bytes("blockwise", N)
    assert largest_w >= D_OUT * D_IN  # W0 Rᵀ is kept for the backward pass
    assert largest_in <= max(N, B) * D_IN  # only x, its rotation and the (d_in/b, b, b) blocks
    if N * D_IN < D_OUT * D_IN:
        assert size_in < size_w


@pytest.mark.parametrize("N", [16, 192, 2048])
def test_input_centric_skips_the_weight_gradient_product(N):
    """Inside a network: weight-centric = 2[2·d_out·d_in·b + 3·N·d_in·d_out], input-centric = 2[3·N·d_in·b +
    2·N·d_in·d_out] FLOPs (plus the same Neumann series)."""
    f_in, f_block, f_dense = _flops("input", N), _flops("blockwise", N), _flops("dense", N)
    assert f_in < f_block < f_dense  # the dense d_in × d_in product is the paper's "cubic" cost
    predicted = 2 * D_IN * (2 * D_OUT * B + N * D_OUT - 3 * N * B)
    assert abs((f_block - f_in) - predicted) <= 1e-3 * f_block


@pytest.mark.parametrize("N", [16, 64, 128, 512, 2048])
def test_first_layer_input_centric_wins_exactly_when_tokens_are_fewer_than_outputs(N):
    """x without grad: both paths need two big products; the rotation costs N·d_in·b (input) against d_out·d_in·b
    (weight), twice each (forward and grad of R), so the input side wins iff N < d_out."""
    f_in, f_block = _flops("input", N, x_grad=False), _flops("blockwise", N, x_grad=False)
    assert (f_in < f_block) == (N < D_OUT)
    assert abs((f_block - f_in) - 4 * B * D_IN * (D_OUT - N)) <= 1e-3 * f_block
