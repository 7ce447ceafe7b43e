r"""CLOVER — Cross-Layer Orthogonal Vectors (Meng, Tang, Jiang & Zhang, arXiv:2411.17426)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from adapterspec import ops
from adapterspec.adapter import Adapter
from adapterspec.tiny import Attention, PrefixKV, example_attention


class CLOVER(Adapter):
    r"""Each head's Q-K and V-O pairs, read as two low-rank products and re-factored by their SVDs; only the small
    core matrix between the two orthonormal factors of each product trains.

    Head $i$ (rows $ih \dots (i+1)h-1$ of ``q_proj``, ``k_proj``, ``v_proj``; the same columns of ``o_proj``;
    $h$ = ``head_dim``), with the bias read as the weight of a constant input, $\tilde x = [x, 1]$,
    $\tilde W = [W \mid b] \in \mathbb{R}^{h\times(D+1)}$:

    $$\tilde W_{Q,i}^\top \tilde W_{K,i} = U^i_{QK} S^i_{QK} V^{i\top}_{QK},\qquad
      \tilde W_{V,i}^\top W_{O,i}^\top = U^i_{VO} S^i_{VO} V^{i\top}_{VO}$$

    (both of rank $\le h$; the top $r$ singular triplets are kept). The block computes

    $$A_i = \tilde x U^i_{QK}\, S^i_{QK}\, (\tilde x V^i_{QK})^\top / \sqrt{h},\qquad
      y = b_O + \textstyle\sum_i \operatorname{softmax}(A_i + M)\; \tilde x U^i_{VO} S^i_{VO} V^{i\top}_{VO}$$

    with $M$ the causal mask. $U$ and $V$ (orthonormal columns) are frozen; $S_{QK}, S_{VO} \in \mathbb{R}^{r\times r}$
    per head train, starting at the diagonal of singular values (with ``diagonal``, only that diagonal trains). With
    $r = h$ the init reproduces the block exactly; $r < h$ prunes each head's smallest singular directions (the
    paper's pruning). Merging writes $W'_{Q,i} = U^{i\top}_{QK}$, $W'_{K,i} = S^i_{QK} V^{i\top}_{QK}$ (the core goes
    to the key side), $W'_{V,i} = S^{i\top}_{VO} U^{i\top}_{VO}$, $W'_{O,i} = V^i_{VO}$ (weights and biases; the
    rows of a pruned head beyond $r$ are zero), so the merged block has the base's shapes and no extra cost.

    Args:
        base: the attention block (`adapterspec.tiny.Attention`); it is not modified until `merge`.
        r: singular directions kept per head and pair (``None``: all ``head_dim``, no pruning).
        diagonal: train only the ``r`` singular values of each pair (a literal reading of "fine-tune the singular
            values"); the default trains the full ``r × r`` core, the paper's parameter count.
    """

    base_type = Attention
    shape_names = ("d_model", "n_heads")
    capacity = "r"

    def __init__(self, base: Attention, r: int | None = None, diagonal: bool = False) -> None:
        super().__init__(base)
        h, H, D = base.head_dim, base.n_heads, base.d_model
        r = h if r is None else r
        if isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= h:
            raise ValueError(
                f"r={r!r} must be an integer from 1 to head_dim={h} (a head's Q-K and V-O products "
                "have rank at most head_dim), or None for all of them"
            )
        if diagonal not in (True, False):
            raise ValueError(f"diagonal must be True or False, got {diagonal!r}")
        biases = {p.bias is not None for p in (base.q_proj, base.k_proj, base.v_proj)}
        if len(biases) != 1:
            raise ValueError("q_proj, k_proj and v_proj must all have a bias or all have none")
        self.r, self.diagonal, self.has_bias = r, diagonal, biases.pop()
        Dt = D + self.has_bias  # width of x̃ = [x, 1]
        # Frozen orthonormal factors, one per head: buffers, so that they are neither trained nor
        # counted.
        self.register_buffer(
            "U_qk", torch.empty(H, Dt, r, **self.factory)
        )  # (H, D+1, r) query side
        self.register_buffer("V_qk", torch.empty(H, Dt, r, **self.factory))  # (H, D+1, r) key side
        self.register_buffer(
            "U_vo", torch.empty(H, Dt, r, **self.factory)
        )  # (H, D+1, r) value side
        self.register_buffer("V_vo", torch.empty(H, D, r, **self.factory))  # (H, D, r) output side
        core = (H, r) if diagonal else (H, r, r)
        self.S_qk = nn.Parameter(torch.empty(core, **self.factory))  # (H, r, r) or (H, r)
        self.S_vo = nn.Parameter(torch.empty(core, **self.factory))  # (H, r, r) or (H, r)
        self.reset_parameters()

    @property
    def d_in(self) -> int:
        return self.base.d_model

    @property
    def d_out(self) -> int:
        return self.base.n_heads

    @classmethod
    def example_base(cls, d_in, d_out, generator, dtype):
        return example_attention(d_in, d_out, generator, dtype)  # (d_model, n_heads)

    @classmethod
    def example_inputs(cls, base, n, generator, dtype):
        return torch.randn(n, 5, base.d_model, generator=generator, dtype=dtype)  # (n, T, d_model)

    def _tilde(self, proj: nn.Linear, rows: slice) -> Tensor:
        """Head rows of ``[W | b]``: the bias as the weight of a constant input 1, ``(h, D+1)`` (``(h, D)`` without
        bias)."""
        W = proj.weight[rows]  # (h, D)
        return torch.cat([W, proj.bias[rows, None]], dim=1) if self.has_bias else W

    # --8<-- [start:init]
    @torch.no_grad()
    def reset_parameters(self) -> None:
        b, h, r = self.base, self.base.head_dim, self.r
        for i in range(b.n_heads):
            rows = slice(i * h, (i + 1) * h)
            # (h, D+1) each
            Wq, Wk, Wv = (self._tilde(p, rows) for p in (b.q_proj, b.k_proj, b.v_proj))
            Wo = b.o_proj.weight[:, rows]  # (D, h): head i's columns of W_O
            # W_QK^i = W̃_qᵀ W̃_k (D+1, D+1) has rank ≤ h: its top-r triplets hold all of it when r
            # = h
            U, S, Vh = ops.svd(Wq.T @ Wk)
            self.U_qk[i], self.V_qk[i] = U[:, :r], Vh[:r].T
            S_qk = S[:r]  # (r,) singular values, descending
            # W_VO^i = W̃_vᵀ W_Oᵀ (D+1, D)
            U, S, Vh = ops.svd(Wv.T @ Wo.T)
            self.U_vo[i], self.V_vo[i] = U[:, :r], Vh[:r].T
            S_vo = S[:r]  # (r,)
            self.S_qk[i] = S_qk if self.diagonal else torch.diag(S_qk)
            self.S_vo[i] = S_vo if self.diagonal else torch.diag(S_vo)

    # --8<-- [end:init]

    # --8<-- [start:update]
    def cores(self) -> tuple[Tensor, Tensor]:
        """``S_qk``, ``S_vo`` as matrices ``(H, r, r)`` (diagonal ones with ``diagonal``)."""
        if self.diagonal:
            return torch.diag_embed(self.S_qk), torch.diag_embed(self.S_vo)
        return self.S_qk, self.S_vo

    def forward(self, x: Tensor, prefix: PrefixKV | None = None) -> Tensor:
        if self.merged:
            return self.base(x, prefix)
        # prefix keys/values: run the block on the merged weights (the same function)
        if prefix is not None:
            return torch.func.functional_call(self.base, self.adapted_weights(), (x, prefix))
        S_qk, S_vo = self.cores()  # (H, r, r)
        T = x.shape[1]
        # (B, T, D+1): x̃
        xt = torch.cat([x, x.new_ones(*x.shape[:-1], 1)], dim=-1) if self.has_bias else x
        # (B, H, T, r) in the orthonormal query basis
        q = torch.einsum("btd,hdr->bhtr", xt, self.U_qk)
        # (B, H, T, r) in the orthonormal key basis
        k = torch.einsum("btd,hdr->bhtr", xt, self.V_qk)
        A = q @ S_qk @ k.mT / math.sqrt(self.base.head_dim)  # (B, H, T, T): the base's scale, 1/√h
        future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        P = F.softmax(A.masked_fill(future, float("-inf")), dim=-1)  # (B, H, T, T)
        v = torch.einsum("btd,hdr->bhtr", xt, self.U_vo) @ S_vo  # (B, H, T, r)
        y = torch.einsum("bhtr,hdr->btd", P @ v, self.V_vo)  # (B, T, D): Σ_i P_i v_i V_voᵀ
        return y if self.base.o_proj.bias is None else y + self.base.o_proj.bias

    # --8<-- [end:update]

    def adapted_weights(self) -> dict[str, Tensor]:
        """The merged block: per head, ``W̃_q' = U_qkᵀ``, ``W̃_k' = S_qk V_qkᵀ``, ``W̃_v' = S_voᵀ U_voᵀ``,
        ``W_o' = V_vo`` (a pruned head's rows beyond ``r`` zero); ``o_proj.bias`` is unchanged."""
        b, H, h, r, D = self.base, self.base.n_heads, self.base.head_dim, self.r, self.base.d_model
        S_qk, S_vo = self.cores()
        new = {}
        for name, rows in (
            ("q_proj", self.U_qk.mT),
            ("k_proj", S_qk @ self.V_qk.mT),
            ("v_proj", S_vo.mT @ self.U_vo.mT),
        ):  # (H, r, D+1) each
            Wt = rows.new_zeros(H, h, rows.shape[-1])
            Wt[:, :r] = rows
            Wt = Wt.reshape(D, -1)  # (D, D+1): heads stacked as in the base
            new[f"{name}.weight"] = Wt[:, :D]
            if self.has_bias:
                new[f"{name}.bias"] = Wt[:, D]
        Wo = self.V_vo.new_zeros(H, D, h)
        Wo[:, :, :r] = self.V_vo
        new["o_proj.weight"] = Wo.permute(1, 0, 2).reshape(D, D)  # (D, H·h): head i's columns
        return new

    def symbols(self) -> dict:
        b = self.base
        S_qk, S_vo = self.cores()
        bias = {p: getattr(b, f"{p[-1]}_proj").bias for p in ("b_q", "b_k", "b_v", "b_o")}
        return {
            "W_q": b.q_proj.weight,
            "W_k": b.k_proj.weight,
            "W_v": b.v_proj.weight,
            "W_o": b.o_proj.weight,
            **bias,
            "U_qk": self.U_qk,
            "S_qk": S_qk,
            "V_qk": self.V_qk,
            "U_vo": self.U_vo,
            "S_vo": S_vo,
            "V_vo": self.V_vo,
            "H": b.n_heads,
            "h": b.head_dim,
            "r": self.r,
            "diagonal": self.diagonal,
            "d_model": b.d_model,
            "n_heads": b.n_heads,
        }

    def extra_repr(self) -> str:
        return (
            f"d_model={self.base.d_model}, n_heads={self.base.n_heads}, r={self.r}, diagonal={self.diagonal}, "
            f"trainable={self.num_trainable()}"
        )
