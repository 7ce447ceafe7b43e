r"""SHiRA — Sparse High Rank Adapters (Bhardwaj et al., arXiv:2406.13175)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from adapterspec.adapter import Adapter

MASK_TYPES = ("random", "weight_magnitude")


class SHiRA(Adapter):
    r"""Fine-tune a fixed, sparse subset of the pretrained weight's entries and nothing else.

    $$W' = W_0 + \alpha\, S,\qquad S_{ij} = 0 \text{ where } M_{ij} = 0,\qquad M \in \{0, 1\}^{d_{out}\times d_{in}},\
      \lVert M \rVert_0 = k = r\,(d_{in} + d_{out})$$

    $M$ is chosen once, before training, and frozen; the $k$ entries of $S$ on it are trained, starting at zero (the
    masked weights start at their pretrained values). Like the paper's Fig. 3a they are stored as ``k`` values and their
    positions, ``s`` ``(k,)`` and ``indices`` ``(2, k)`` (row = output, column = input), in row-major order; here the
    values are the changes $S$, not the new weights that Fig. 3a writes over $W_0$.
    $k = r(d_{in} + d_{out})$ is peft's sizing, the parameter count of a rank-$r$ LoRA; the paper speaks of 1–2 % of
    each weight instead. $S$ is not low rank: with generic values its rank equals the largest number of mask entries
    with no two in the same row or column, which is full for all but very sparse or crowded masks. $\alpha = 1$ in
    training (the paper's Lemma 4.3); other values rescale the adapter at inference.

    Args:
        base: the frozen layer.
        r: sets the number of trainable entries, ``k = r * (d_in + d_out)`` (not a rank: it does not bound
            rank(ΔW)).
        mask_type: ``"random"`` (SHiRA-Rand: ``k`` distinct entries drawn uniformly from ``seed``; peft's only mask) or
            ``"weight_magnitude"`` (SHiRA-WM: the ``k`` entries of largest ``|W0|``). The paper's gradient masks
            (SHiRA-Grad, ``|∇W L|``; SHiRA-SNIP, ``|W0 ⊙ ∇W L|``) need calibration data: compute the scores and call
            `select_mask`.
        seed: seed of the generator for the random mask.
        alpha: scale of the sparse update.
    """

    capacity = "r"  # k = r (d_in + d_out) trainable entries

    def __init__(self, base: nn.Linear, r: int = 32, mask_type: str = "random", seed: int = 0,
                 alpha: float = 1.0) -> None:
        super().__init__(base)
        if r < 1:
            raise ValueError(f"r must be a positive integer (k = r * (d_in + d_out) trainable entries), got {r}")
        k = r * (self.d_in + self.d_out)
        if k > self.d_in * self.d_out:
            raise ValueError(f"r={r} asks for k = r * (d_in + d_out) = {k} entries, more than the {self.d_out}×"
                             f"{self.d_in} weight has; use r <= {self.d_in * self.d_out // (self.d_in + self.d_out)}")
        if mask_type not in MASK_TYPES:
            raise ValueError(f"mask_type must be one of {', '.join(MASK_TYPES)}, got {mask_type!r} (for SHiRA-Grad or "
                             "SHiRA-SNIP, compute the scores and call select_mask)")
        self.r, self.k, self.mask_type, self.seed, self.alpha = r, k, mask_type, seed, alpha
        self.register_buffer("indices", torch.empty(2, k, dtype=torch.long, device=base.weight.device))  # (2, k)
        self.s = nn.Parameter(torch.empty(k, **self.factory))  # (k,)
        self.reset_parameters()

    # --8<-- [start:init]
    @torch.no_grad()
    def reset_parameters(self) -> None:
        if self.mask_type == "random":
            g = torch.Generator().manual_seed(self.seed)
            # (k,) distinct, uniform
            flat = torch.randperm(self.d_out * self.d_in, generator=g)[: self.k]
            self._set_indices(flat.to(self.indices.device))
        else:
            self.select_mask(self.base.weight.abs())  # SHiRA-WM: top-k |W0|
        # S = 0: W' = W0; the masked weights start at their pretrained values
        nn.init.zeros_(self.s)

    @torch.no_grad()
    def select_mask(self, scores: Tensor) -> None:
        """Put the mask on the ``k`` largest entries of ``scores (d_out, d_in)`` and zero ``S``.

        ``|W0|`` gives SHiRA-WM, accumulated ``|∇W L|`` SHiRA-Grad, ``|W0 ⊙ ∇W L|`` SHiRA-SNIP.
        """
        if scores.shape != (self.d_out, self.d_in):
            raise ValueError(f"scores must have the weight's shape ({self.d_out}, {self.d_in}), "
                             f"got {tuple(scores.shape)}")
        flat = torch.topk(scores.flatten(), self.k).indices  # (k,)
        self._set_indices(flat.to(self.indices.device))
        self.s.zero_()

    def _set_indices(self, flat: Tensor) -> None:
        flat = flat.sort().values  # (k,) row-major order
        # (2, k): (row i, column j)
        self.indices.copy_(torch.stack([flat // self.d_in, flat % self.d_in]))
    # --8<-- [end:init]

    # --8<-- [start:update]
    def sparse_update(self) -> Tensor:
        """``S`` as a dense ``(d_out, d_in)`` matrix, zero off the mask."""
        S = self.s.new_zeros(self.d_out, self.d_in)  # (d_out, d_in)
        return S.index_put((self.indices[0], self.indices[1]), self.s)  # (d_out, d_in)

    def adapted_weight(self, W0: Tensor) -> Tensor:
        # Scatter-add the k values onto a copy of W0 (no dense S is formed): (d_out, d_in).
        rows, cols = self.indices[0], self.indices[1]
        return W0.index_put((rows, cols), self.alpha * self.s, accumulate=True)
    # --8<-- [end:update]

    def mask(self) -> Tensor:
        """``M``, the 0/1 mask ``(d_out, d_in)`` in the weight's dtype."""
        M = torch.zeros(self.d_out, self.d_in, **self.factory)  # (d_out, d_in)
        M[self.indices[0], self.indices[1]] = 1
        return M

    def symbols(self) -> dict:
        return {**super().symbols(), "s": self.s, "indices": self.indices, "rows": self.indices[0],
                "cols": self.indices[1], "M": self.mask(), "S": self.sparse_update(), "r": self.r, "k": self.k,
                "alpha": self.alpha, "mask_type": self.mask_type, "seed": self.seed}
