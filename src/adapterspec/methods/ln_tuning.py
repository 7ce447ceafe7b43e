r"""LN Tuning — LayerNorm Tuning (Zhao et al., arXiv:2312.11420)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from adapterspec.adapter import Adapter


class LNTuning(Adapter):
    r"""Train the affine gain and shift of a LayerNorm, and nothing else.

    $$\hat{x} = \frac{x - \mu(x)}{\sqrt{\sigma^2(x) + \epsilon}},\qquad
      y = \gamma \odot \hat{x} + \beta,\qquad \gamma, \beta \in \mathbb{R}^{d},\
      \gamma_{\text{init}} = \gamma_0,\ \beta_{\text{init}} = \beta_0$$

    $\mu(x)$ and $\sigma^2(x)$ are the mean and the (biased) variance of the $d$ features of one token; $\gamma_0$,
    $\beta_0$ are the pretrained LayerNorm's weight and bias, kept frozen in ``base``; $\gamma$, $\beta$ are trainable
    copies of them, so the layer starts exactly at the pretrained one. The wrapped layer is an ``nn.LayerNorm``, not a
    linear map: ``adapted_weight`` is the adapted gain $\gamma$ and ``adapted_bias`` the adapted shift $\beta$, and
    merging writes them into the LayerNorm. Seen from the linear layer $W$ that reads this output,
    $W(\gamma \odot \hat{x} + \beta) = W\operatorname{diag}(\gamma)\,\hat{x} + W\beta$, so tuning $\gamma$ is an
    input-side gain on $W\operatorname{diag}(\gamma_0)$ and tuning $\beta$ adds $W(\beta - \beta_0)$ to its bias.

    Args:
        base: the frozen ``nn.LayerNorm`` over one feature dimension (``normalized_shape = (d,)``), with an
            elementwise affine (a weight, and a bias if it has one: a bias-free LayerNorm tunes $\gamma$ only).
    """

    base_type = nn.LayerNorm
    capacity = None  # a gain and a bias per feature, fixed by the layer

    def __init__(self, base: nn.LayerNorm) -> None:
        super().__init__(base)
        if len(base.normalized_shape) != 1:
            raise ValueError(f"LN tuning here wraps a LayerNorm over one feature dimension; got normalized_shape="
                             f"{tuple(base.normalized_shape)}: normalise over the last dimension only")
        if base.weight is None:
            raise ValueError("the LayerNorm has no elementwise affine (elementwise_affine=False): there is no gain or "
                             "shift to tune; build it with elementwise_affine=True")
        d = base.normalized_shape[0]
        self.gamma = nn.Parameter(torch.empty(d, **self.factory))  # (d,)
        if base.bias is not None:
            self.beta = nn.Parameter(torch.empty(d, **self.factory))  # (d,)
        else:
            self.register_parameter("beta", None)
        self.reset_parameters()

    @property
    def d_in(self) -> int:
        return self.base.normalized_shape[-1]

    @property
    def d_out(self) -> int:
        return self.base.normalized_shape[-1]

    @classmethod
    def example_base(cls, d_in: int, d_out: int, generator: torch.Generator, dtype: torch.dtype) -> nn.LayerNorm:
        """A pretrained-looking LayerNorm of width ``d = d_in = d_out``: positive gains ``γ0 = exp(0.3 ε)`` around 1
        and shifts ``β0 ~ N(0, 0.1²)``, so that neither is the trivial (1, 0)."""
        if d_in != d_out:
            raise ValueError(f"a LayerNorm maps d features to d features; got d_in={d_in}, d_out={d_out}: "
                             "verify LN tuning on square shapes such as [16, 16]")
        base = nn.LayerNorm(d_in, dtype=dtype)
        with torch.no_grad():
            base.weight.copy_(torch.exp(0.3 * torch.randn(d_in, generator=generator, dtype=dtype)))  # (d,)
            base.bias.copy_(0.1 * torch.randn(d_in, generator=generator, dtype=dtype))  # (d,)
        return base

    # --8<-- [start:init]
    def reset_parameters(self) -> None:
        with torch.no_grad():
            gamma0 = self.original("weight")  # (d,) the pretrained gain
            self.gamma.copy_(gamma0)  # (d,) trainable copy: the layer starts at the pretrained one
            if self.beta is not None:
                beta0 = self.original("bias")  # (d,) the pretrained shift
                self.beta.copy_(beta0)  # (d,)
    # --8<-- [end:init]

    # --8<-- [start:update]
    def adapted_weight(self, W0: Tensor) -> Tensor:
        return self.gamma  # (d,): the tuned gain replaces γ0

    def adapted_bias(self, b0: Tensor | None) -> Tensor | None:
        return self.beta  # (d,): the tuned shift replaces β0 (None for a bias-free LayerNorm)

    def forward(self, x: Tensor) -> Tensor:
        if self.merged:
            return self.base(x)
        # (..., d)
        return F.layer_norm(x, self.base.normalized_shape, self.gamma, self.beta, self.base.eps)
    # --8<-- [end:update]

    def symbols(self) -> dict:
        return {**super().symbols(), "gamma": self.gamma, "beta": self.beta, "gamma0": self.base.weight,
                "beta0": self.base.bias, "eps": self.base.eps, "d": self.d_in}
