r"""FourierFT — Parameter-Efficient Fine-Tuning with Discrete Fourier Transform (Gao et al., arXiv:2405.03003)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F_

from adapterspec import ops
from adapterspec.adapter import Adapter


class FourierFT(Adapter):
    r"""The update is the real part of an inverse 2-D DFT of a spectrum with only ``n`` trainable entries.

    $$W' = W_0 + \alpha\, \operatorname{Re}\big(\operatorname{IDFT2}(F)\big),\qquad
      F_{j,k} = \begin{cases} c_l & (j, k) = (E_{0,l}, E_{1,l}) \\ 0 & \text{otherwise} \end{cases}$$

    $$\Delta W_{p,q} = \frac{\alpha}{d_{out} d_{in}} \sum_{l=1}^{n} c_l
      \cos\!\Big(2\pi\Big(\frac{p\, E_{0,l}}{d_{out}} + \frac{q\, E_{1,l}}{d_{in}}\Big)\Big)$$

    $F \in \mathbb{R}^{d_{out}\times d_{in}}$ is the dense spectral matrix (``TODENSE(E, c)``, Eq. 2), $E$ the
    frozen ``(2, n)`` entry matrix (row frequency $j$ on the output axis, column frequency $k$ on the input axis), $c$
    the ``n`` trainable coefficients. IDFT2 carries the $1/(d_{out} d_{in})$ of ``torch.fft.ifft2``, as the paper's
    Algorithm 1 and peft do (its Eq. 3 omits it; $\alpha$ absorbs the difference). Each coefficient adds one real 2-D
    cosine wave of rank at most 2, so $\operatorname{rank}(\Delta W) \le 2n$. Only cosines appear, so every update
    is even: $\Delta W_{-p,-q} = \Delta W_{p,q}$ (indices modulo the dimensions); even with every entry selected
    the updates span only the even matrices, about half the dimensions of $\mathbb{R}^{d_{out}\times d_{in}}$.
    The paper draws $c \sim \mathcal{N}(0, 1)$: the layer does *not* start at $W_0$.

    Args:
        base: the frozen layer.
        n: number of trainable spectral coefficients (distinct entries of the ``d_out × d_in`` spectrum).
        alpha: scale of the update (the paper's $\alpha$, peft's ``scaling``).
        seed: seed of the generator that draws the entry matrix $E$; equal seeds and shapes give the same entries
            (the paper shares $E$ across layers).
        zero_init: start from $c = 0$ (so $W' = W_0$) instead of the paper's $c \sim \mathcal{N}(0, 1)$; peft's
            ``init_weights=True``.
        precision: ``"exact"`` computes in the weight's dtype. ``"peft"`` reproduces peft 0.21.2, which builds the
            dense spectrum in torch's default dtype (float32) whatever the weight dtype and casts $\Delta W$ back.
    """

    capacity = "n"  # one trainable number per spectral entry

    def __init__(self, base: nn.Linear, n: int = 1000, alpha: float = 300.0, seed: int = 777,
                 zero_init: bool = False, precision: str = "exact") -> None:
        super().__init__(base)
        if not 1 <= n <= self.d_in * self.d_out:
            raise ValueError(f"n={n} must be between 1 and d_out*d_in={self.d_out * self.d_in} (the number of "
                             "spectral entries)")
        if precision not in ("exact", "peft"):
            raise ValueError(f"precision must be 'exact' or 'peft', got {precision!r}")
        self.n, self.alpha, self.seed, self.zero_init, self.precision = n, alpha, seed, zero_init, precision
        # E: n distinct entries of the spectrum, uniform (no frequency bias), frozen and reproducible from the seed.
        g = torch.Generator().manual_seed(seed)
        flat = torch.randperm(self.d_out * self.d_in, generator=g)[:n]  # (n,) positions in the flattened spectrum
        self.register_buffer("E", torch.stack([flat // self.d_in, flat % self.d_in]).to(base.weight.device))  # (2, n)
        self.c = nn.Parameter(torch.empty(n, **self.factory))  # (n,)
        self.reset_parameters()

    # --8<-- [start:init]
    def reset_parameters(self) -> None:
        if self.zero_init:
            nn.init.zeros_(self.c)  # ΔW = 0: W' = W0
        else:
            nn.init.normal_(self.c)  # the paper's c ~ N(0, 1): ΔW ≠ 0 at init
    # --8<-- [end:init]

    # --8<-- [start:update]
    def spectrum(self, dtype: torch.dtype | None = None) -> Tensor:
        """The dense spectral matrix ``F = TODENSE(E, c)``, ``(d_out, d_in)``."""
        # (n,) peft rounds c to float32 first
        c = self.c if dtype is None else self.c.float().to(dtype)
        F = c.new_zeros(self.d_out, self.d_in)  # (d_out, d_in)
        return F.index_put((self.E[0], self.E[1]), c)  # (d_out, d_in), c_l at (E_0l, E_1l)

    def delta(self) -> Tensor:
        """``ΔW = α Re(IDFT2(F))``, ``(d_out, d_in)``."""
        if self.precision == "peft":
            # (d_out, d_in), float32 unless the default changed
            F = self.spectrum(torch.get_default_dtype())
            return (ops.ifft2(F).real * self.alpha).to(self.c.dtype)  # (d_out, d_in)
        return self.alpha * ops.ifft2(self.spectrum()).real  # (d_out, d_in)

    def adapted_weight(self, W0: Tensor) -> Tensor:
        return W0 + self.delta()  # (d_out, d_in)

    def forward(self, x: Tensor) -> Tensor:
        if self.merged:
            return self.base(x)
        if self.precision == "peft":
            return self.base(x) + F_.linear(x, self.delta())  # (..., d_out)
        # ΔW x without forming ΔW: a 1-D inverse DFT of x over the input axis, read at the n column
        # frequencies, weighted by c, summed into the n row frequencies, then a 1-D inverse DFT over
        # the output axis, (ΔW x)_p = α Re((1/d_out) Σ_l c_l e^{2πi p j_l/d_out} · S_l) with
        # S_l = (1/d_in) Σ_q x_q e^{2πi q k_l/d_in}.
        j, k = self.E  # (n,), (n,)
        X = torch.fft.ifft(x, dim=-1)  # (..., d_in) complex
        Z = X[..., k] * self.c  # (..., n)
        # (..., d_out) spectrum of the output
        G = Z.new_zeros(*Z.shape[:-1], self.d_out).index_add(-1, j, Z)
        return self.base(x) + self.alpha * torch.fft.ifft(G, dim=-1).real  # (..., d_out)
    # --8<-- [end:update]

    def symbols(self) -> dict:
        return {**super().symbols(), "c": self.c, "E": self.E, "F": self.spectrum(), "n": self.n,
                "alpha": self.alpha, "seed": self.seed}
