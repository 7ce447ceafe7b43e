r"""C3A — Circular Convolution Adaptation (Chen et al., arXiv:2407.19342)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from adapterspec import ops
from adapterspec.adapter import Adapter


class C3A(Adapter):
    r"""The update is a block-circulant matrix: every ``b × b`` block is a circular convolution with its own kernel.

    $$W' = W_0 + s\, C_{blk}(\Delta w),\qquad
      C_{blk}(\Delta w) = \begin{pmatrix} C(\Delta w_{11}) & \cdots & C(\Delta w_{1n}) \\ \vdots & & \vdots \\
      C(\Delta w_{m1}) & \cdots & C(\Delta w_{mn}) \end{pmatrix},\qquad m = d_{out}/b,\ n = d_{in}/b$$

    $$C(v)_{jt} = v_{(t - j) \bmod b}\quad(\text{first row } v\text{, each row the one above shifted right}),$$

    $$C(v)\,x = \operatorname{FFT}\big(\operatorname{FFT}(v) \circ \operatorname{iFFT}(x)\big)$$

    $\Delta w \in \mathbb{R}^{m \times n \times b}$ holds one length-$b$ kernel per block (Eq. 3 and 4): output block $i$
    is $\sum_j \Delta w_{ij} \star x_j$. The paper's $C(\cdot)$ is defined by its first *row*, so it is the transpose
    of ``ops.circulant`` (first column). The forward never builds the matrix: it runs the block convolution with FFTs
    (Eq. 1). There are $d_{in} d_{out} / b$ trainable numbers whatever the rank: a random kernel gives a full-rank
    update. The paper initialises $\Delta w$ Xavier-uniform (Tables A4, A5), so the layer does *not* start at $W_0$.

    Args:
        base: the frozen layer.
        b: block size, a common divisor of ``d_in`` and ``d_out``; ``None`` takes their greatest common divisor
            (the rule Section 3.5 states, although the paper's main GLUE and LLaMA runs use ``b = 128``; peft's default
            is 256, and its help suggests the gcd over all target layers).
        init: ``"xavier_uniform"`` (the paper's, and peft's default: $U(-a, a)$, $a = \sqrt{6/(d_{in}+d_{out})}$),
            ``"kaiming_uniform"`` ($a = \sqrt{1/d_{in}}$), ``"gaussian"`` ($\mathcal{N}(0, 1)$) or ``"zeros"``
            (starts at $W_0$; peft's ``init_weights=True``): the four inits of the paper's ablation (Figure 3).
        scaling: ``"paper"``: $s = 1$, as in Eq. 3 and Algorithm A1. ``"peft"``: $s = 1/d_{in}$, which peft's layer
            applies in its forward and merge.
        precision: ``"exact"`` computes in the weight's dtype. ``"peft"`` reproduces peft 0.21.2, which runs the
            convolution in float32 whatever the layer's dtype.
    """

    capacity = "b"  # block size: d_in * d_out / b trainable

    def __init__(self, base: nn.Linear, b: int | None = None, init: str = "xavier_uniform",
                 scaling: str = "paper", precision: str = "exact") -> None:
        super().__init__(base)
        b = math.gcd(self.d_in, self.d_out) if b is None else b
        if b < 1 or self.d_in % b or self.d_out % b:
            raise ValueError(f"b={b} must be a common divisor of d_in={self.d_in} and d_out={self.d_out} "
                             f"(their gcd is {math.gcd(self.d_in, self.d_out)})")
        if init not in ("xavier_uniform", "kaiming_uniform", "gaussian", "zeros"):
            raise ValueError(f"init must be 'xavier_uniform', 'kaiming_uniform', 'gaussian' or 'zeros', got {init!r}")
        if scaling not in ("paper", "peft"):
            raise ValueError(f"scaling must be 'paper' (s = 1) or 'peft' (s = 1/d_in), got {scaling!r}")
        if precision not in ("exact", "peft"):
            raise ValueError(f"precision must be 'exact' or 'peft', got {precision!r}")
        self.b, self.init, self.scaling, self.precision = b, init, scaling, precision
        self.m, self.n = self.d_out // b, self.d_in // b  # blocks along the output and the input
        self.s = 1.0 if scaling == "paper" else 1.0 / self.d_in
        self.delta_w = nn.Parameter(torch.empty(self.m, self.n, b, **self.factory))  # (m, n, b): Δw_ij
        self.reset_parameters()

    # --8<-- [start:init]
    @torch.no_grad()
    def reset_parameters(self) -> None:
        if self.init == "zeros":
            nn.init.zeros_(self.delta_w)  # ΔW = 0: W' = W0
        elif self.init == "gaussian":
            nn.init.normal_(self.delta_w)  # N(0, 1) per kernel entry
        else:
            # uniform, with the fans of the whole (d_out, d_in) layer,
            # not of the (m, n, b) kernel tensor
            a = (math.sqrt(6.0 / (self.d_in + self.d_out)) if self.init == "xavier_uniform"
                 else math.sqrt(1.0 / self.d_in))
            nn.init.uniform_(self.delta_w, -a, a)  # ΔW ≠ 0 at init
    # --8<-- [end:init]

    # --8<-- [start:update]
    def blocks(self) -> Tensor:
        """``C_blk(Δw)`` without the scale, ``(d_out, d_in)``, built entry by entry (no FFT)."""
        C = ops.circulant(self.delta_w).transpose(-1, -2)  # (m, n, b, b): C(Δw_ij), first row Δw_ij
        # (d_out, d_in): block (i, j) = C(Δw_ij)
        return C.permute(0, 2, 1, 3).reshape(self.d_out, self.d_in)

    def convolve(self, x: Tensor, w: Tensor) -> Tensor:
        """``C_blk(w) x`` along the last dimension of ``x (..., d_in)`` by FFT (Eq. 1),
        ``(..., d_out)``."""
        # (..., n, b) iFFT of every input block
        X = torch.fft.ifft(x.unflatten(-1, (self.n, self.b)))
        # (..., m, b): Σ_j FFT(Δw_ij) ∘ iFFT(x_j)
        Z = torch.einsum("...jk,ijk->...ik", X, torch.fft.fft(w))
        return torch.fft.fft(Z).real.flatten(-2)  # (..., d_out)

    def delta(self) -> Tensor:
        """``ΔW = s C_blk(Δw)``, ``(d_out, d_in)``."""
        if self.precision == "peft":
            # float32 convolution of the identity's columns, cast back, then scaled
            # (d_in, d_in)
            eye = torch.eye(self.d_in, dtype=torch.float32, device=self.delta_w.device)
            blocks = self.convolve(eye, self.delta_w.float()).T  # (d_out, d_in) float32
            return self._peft_scale(blocks.to(self.delta_w.dtype))
        return self.s * self.blocks()  # (d_out, d_in)

    def _peft_scale(self, t: Tensor) -> Tensor:
        # peft divides by d_in (rounds unlike × 1/d_in)
        return t if self.scaling == "paper" else t / self.d_in

    def adapted_weight(self, W0: Tensor) -> Tensor:
        return W0 + self.delta()  # (d_out, d_in)

    def forward(self, x: Tensor) -> Tensor:
        if self.merged:
            return self.base(x)
        if self.precision == "peft":
            # float32 throughout, scaled in float32, as peft's forward does
            # (..., d_out) float32
            dz = self._peft_scale(self.convolve(x.float(), self.delta_w.float()))
            return self.base(x) + dz.to(x.dtype)
        return self.base(x) + self.s * self.convolve(x, self.delta_w)  # (..., d_out)
    # --8<-- [end:update]

    def symbols(self) -> dict:
        return {**super().symbols(), "Δw": self.delta_w, "delta_w": self.delta_w, "b": self.b, "m": self.m,
                "n": self.n, "s": self.s, "scaling": self.scaling, "init": self.init}
