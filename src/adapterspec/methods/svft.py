r"""SVFT — Singular Vectors guided Fine-Tuning (Lingam et al., arXiv:2405.19597)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from adapterspec import ops
from adapterspec.adapter import Adapter

PATTERNS = ("plain", "banded", "random", "top_k")


class SVFT(Adapter):
    r"""A sparse, trainable matrix of couplings between the pretrained weight's own singular vectors.

    $$W_0 = U \operatorname{diag}(S)\, V^\top,\qquad
      W' = W_0 + U M V^\top = U\big(\operatorname{diag}(S) + M\big)V^\top,\qquad
      M_{ij} = 0 \text{ for } (i, j) \notin \Omega$$

    $U$ ``(d_out, n)`` and $V^\top$ ``(n, d_in)`` are the thin SVD of $W_0$, $n = \min(d_{in}, d_{out})$, frozen.
    Only the entries of $M$ ``(n, n)`` on the fixed pattern $\Omega$ train (Eqs. 1-2): $\Delta W = \sum_{(i,j)\in\Omega}
    m_{ij}\, u_i v_j^\top$. They start at zero, so $W' = W_0$ at init. The patterns of Section 3.1:

    * ``plain`` ($\text{SVFT}^P$): the diagonal, $|\Omega| = n$; only the singular values move.
    * ``banded`` ($\text{SVFT}^B_d$): $|i - j| \le d$, $|\Omega| = n(2d + 1) - d(d + 1)$ (Table 7). The default:
      with ``d = 0`` it is the diagonal, ``plain``, and ``d`` alone then sets the size.
    * ``random`` ($\text{SVFT}^R_d$): as many positions as ``banded``, drawn uniformly without replacement from
      ``seed``.
    * ``top_k`` ($\text{SVFT}^T_d$): as many positions as ``banded``, those of largest alignment $|u_i^\top v_j|$;
      defined only when $u_i$ and $v_j$ have the same size, $d_{in} = d_{out}$.

    Args:
        base: the frozen layer.
        pattern: ``"plain"``, ``"banded"``, ``"random"`` or ``"top_k"``.
        d: off-diagonals on each side of the band (``banded``), or the band whose size ``random`` and ``top_k``
            match; ``0`` for ``plain``.
        seed: seed of the generator for the ``random`` pattern.
    """

    capacity = "d"

    def __init__(self, base: nn.Linear, pattern: str = "banded", d: int = 0, seed: int = 0) -> None:
        super().__init__(base)
        n = min(self.d_in, self.d_out)
        if pattern not in PATTERNS:
            raise ValueError(f"pattern must be one of {', '.join(PATTERNS)}, got {pattern!r}")
        if pattern == "plain" and d != 0:
            raise ValueError(
                f"pattern='plain' trains the diagonal of M only, so d must be 0, got d={d} "
                "(use pattern='banded' for off-diagonals)"
            )
        if not 0 <= d < n:
            raise ValueError(
                f"d must be between 0 and min(d_in, d_out) - 1 = {n - 1} (off-diagonals of an "
                f"{n}×{n} M), got {d}"
            )
        if pattern == "top_k" and self.d_in != self.d_out:
            raise ValueError(
                f"pattern='top_k' scores u_iᵀ v_j, which needs d_in = d_out; got a {self.d_out}×"
                f"{self.d_in} layer (use 'banded' or 'random')"
            )
        self.pattern, self.d, self.seed, self.n = pattern, d, seed, n
        self.k = n * (2 * d + 1) - d * (d + 1)  # |Ω|, Table 7
        self.register_buffer(
            "U", torch.empty(self.d_out, n, **self.factory)
        )  # (d_out, n) left singular vectors
        self.register_buffer(
            "S", torch.empty(n, **self.factory)
        )  # (n,) singular values, descending
        self.register_buffer(
            "Vh", torch.empty(n, self.d_in, **self.factory)
        )  # (n, d_in) right singular vectors
        self.register_buffer(
            "indices", torch.empty(2, self.k, dtype=torch.long, device=base.weight.device)
        )  # Ω
        self.m = nn.Parameter(
            torch.empty(self.k, **self.factory)
        )  # (k,) the trainable entries of M
        self.reset_parameters()

    # --8<-- [start:init]
    @torch.no_grad()
    def reset_parameters(self) -> None:
        # canonical signs: any correct caller gets the same U, V
        U, S, Vh = ops.svd(self.base.weight.double())
        self.U.copy_(U)
        self.S.copy_(S)
        self.Vh.copy_(Vh)
        n, i = self.n, torch.arange(self.n)
        if self.pattern in ("plain", "banded"):
            # |i - j| ≤ d
            flat = ((i[:, None] - i[None, :]).abs() <= self.d).flatten().nonzero().squeeze(1)
        elif self.pattern == "random":
            g = torch.Generator().manual_seed(self.seed)
            flat = torch.randperm(n * n, generator=g)[: self.k]  # k distinct positions, uniform
        # top_k: the k pairs (u_i, v_j) most aligned, |u_iᵀ v_j| (signs of singular pairs are
        # arbitrary)
        else:
            flat = torch.topk((U.T @ Vh.T).abs().flatten(), self.k).indices
        flat = flat.sort().values.to(self.indices.device)  # (k,) row-major
        # (2, k): (i, j) of each trainable m_ij
        self.indices.copy_(torch.stack([flat // n, flat % n]))
        nn.init.zeros_(self.m)  # M = 0: W' = W0

    # --8<-- [end:init]

    # --8<-- [start:update]
    def coefficients(self) -> Tensor:
        """``M`` as a dense ``(n, n)`` matrix, zero off the pattern Ω."""
        M = self.m.new_zeros(self.n, self.n)  # (n, n)
        return M.index_put((self.indices[0], self.indices[1]), self.m)

    def adapted_weight(self, W0: Tensor) -> Tensor:
        return W0 + self.U @ self.coefficients() @ self.Vh  # (d_out, d_in): W0 + U M Vᵀ

    def forward(self, x: Tensor) -> Tensor:
        if self.merged:
            return self.base(x)
        # Through the n-dimensional singular coordinates, never forming U M Vᵀ: x ↦ U M (Vᵀ x).
        return self.base(x) + ((x @ self.Vh.T) @ self.coefficients().T) @ self.U.T  # (..., d_out)

    # --8<-- [end:update]

    def symbols(self) -> dict:
        return {
            **super().symbols(),
            "U": self.U,
            "S": self.S,
            "Vh": self.Vh,
            "m": self.m,
            "rows": self.indices[0],
            "cols": self.indices[1],
            "M": self.coefficients(),
            "n": self.n,
            "k": self.k,
            "d": self.d,
            "pattern": self.pattern,
            "seed": self.seed,
        }
