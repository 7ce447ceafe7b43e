r"""AdaLoRA — Adaptive Budget Allocation for Parameter-Efficient Fine-Tuning (Zhang et al., arXiv:2303.10512).

The layer is an SVD-shaped low-rank update (`AdaLoRA`); the method is that layer *plus* a training procedure that
moves rank between layers. The procedure is written here as plain functions with the paper's symbols, so that it is
verified against the pseudocode like the forward is (`AdaLoRA.procedure_cases`):

* `sensitivity_step` and `AdaLoRA.importance` — the smoothed sensitivity of every entry, Eqs. (8)-(11);
* `triplet_score` — the score of each triplet $(P_{*i}, \lambda_i, Q_{i*})$, Eq. (7);
* `prune` — keep the $b(t)$ top-scored triplets of *all* adapted matrices, zero the other $\lambda_i$, Eq. (6);
* `budget` — the cubic budget schedule $b(t)$, Eq. (12) (Appendix A);
* `allocate` — one step of Algorithm 1 over a list of adapted layers, with the masking interval $\Delta_T$ and the
  final phase in which the allocation is frozen.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from adapterspec.adapter import Adapter


class AdaLoRA(Adapter):
    r"""A low-rank update in the form of an SVD, $P \Lambda Q$, whose singular values are pruned during training.

    $$W' = W_0 + \frac{\alpha}{r}\, P \Lambda Q,\qquad P \in \mathbb{R}^{d_{out}\times r},\
      \Lambda = \operatorname{diag}(\lambda_1, \dots, \lambda_r),\ Q \in \mathbb{R}^{r\times d_{in}}$$

    (Eq. 3, scaled by $\alpha/r$ as in LoRA, Section 4). $\Lambda = 0$ at init, so $W' = W_0$; $P$ and $Q$ are
    Gaussian. $P$ and $Q$ are not constrained: training adds $\gamma\, R(P, Q)$ (`orthogonality_regularizer`, Eq. 4)
    to the loss, which only pushes them towards orthonormal columns and rows. The rank is set by the schedule: a
    pruned triplet has $\lambda_i = 0$ (`prune`, `allocate`), while $P_{*i}$ and $Q_{i*}$ keep training, so it can
    come back. $r$ is the initial rank and the scale stays $\alpha / r$ however many triplets are pruned.

    Args:
        base: the frozen layer.
        r: initial rank of the update (the paper's $r = b^{(0)}/n$; peft's ``init_r``).
        alpha: scale numerator; the update is multiplied by ``alpha / r``.
    """

    capacity = "r"

    def __init__(self, base: nn.Linear, r: int = 12, alpha: float = 8.0) -> None:
        super().__init__(base)
        if not isinstance(r, int) or r < 1:
            raise ValueError(f"r (the initial rank) must be a positive integer, got {r!r}")
        self.r, self.alpha = r, alpha
        self.scaling = alpha / r
        self.P = nn.Parameter(
            torch.empty(self.d_out, r, **self.factory)
        )  # (d_out, r) left singular vectors
        self.Lambda = nn.Parameter(torch.empty(r, **self.factory))  # (r,) singular values λ_i
        self.Q = nn.Parameter(
            torch.empty(r, self.d_in, **self.factory)
        )  # (r, d_in) right singular vectors
        # The schedule's state (not parameters): Ī and Ū per tensor, and the allocation frozen in
        # the final phase.
        self.I_bar: dict[str, Tensor] = {}
        self.U_bar: dict[str, Tensor] = {}
        self.keep: Tensor | None = None  # (r,) bool, set once the final budget is reached
        self.reset_parameters()

    # --8<-- [start:init]
    def reset_parameters(self) -> None:
        # Λ = 0 makes ΔW = PΛQ = 0; P and Q random so that ∂L/∂λ_i = (α/r) P_{*i}ᵀ (∂L/∂W) Q_{i*}ᵀ ≠
        # 0.
        nn.init.zeros_(self.Lambda)
        # σ as peft and the official code; the paper gives none
        nn.init.normal_(self.P, mean=0.0, std=0.02)
        nn.init.normal_(self.Q, mean=0.0, std=0.02)
        self.I_bar, self.U_bar, self.keep = {}, {}, None

    # --8<-- [end:init]

    # --8<-- [start:update]
    def adapted_weight(self, W0: Tensor) -> Tensor:
        return W0 + self.scaling * (self.P * self.Lambda) @ self.Q  # (d_out, d_in); P diag(Λ) Q

    def forward(self, x: Tensor) -> Tensor:
        if self.merged:
            return self.base(x)
        # Same value as adapted_weight, through the r-dimensional bottleneck.
        # (..., d_out)
        return self.base(x) + self.scaling * ((x @ self.Q.T) * self.Lambda) @ self.P.T

    def orthogonality_regularizer(self) -> Tensor:
        r"""$R(P, Q) = \lVert P^\top P - I\rVert_F^2 + \lVert QQ^\top - I\rVert_F^2$ (Eq. 4): a
        *training loss* term
        (the objective is $C + \gamma \sum_k R(P_k, Q_k)$), not part of the forward."""
        I = torch.eye(self.r, **self.factory)  # (r, r)
        return (self.P.T @ self.P - I).pow(2).sum() + (self.Q @ self.Q.T - I).pow(2).sum()

    # --8<-- [end:update]

    @torch.no_grad()
    def update_importance(self, beta1: float = 0.85, beta2: float = 0.85) -> None:
        """Eqs. (8)-(10) for every entry of P, Λ and Q, from their current values and ``.grad``."""
        for name, w in (("P", self.P), ("Lambda", self.Lambda), ("Q", self.Q)):
            if w.grad is None:
                raise RuntimeError(
                    f"AdaLoRA.update_importance: {name} has no gradient; call it after backward()"
                )
            zero = torch.zeros_like(w)
            self.I_bar[name], self.U_bar[name] = sensitivity_step(
                w, w.grad, self.I_bar.get(name, zero), self.U_bar.get(name, zero), beta1, beta2
            )

    def importance(self) -> dict[str, Tensor]:
        """s(w) = Ī(w) · Ū(w) for every entry (Eq. 11), by tensor name."""
        return {name: self.I_bar[name] * self.U_bar[name] for name in self.I_bar}

    def triplet_scores(self) -> Tensor:
        """S_i of each triplet (Eq. 7), ``(r,)``."""
        s = self.importance()
        return triplet_score(s["P"], s["Lambda"], s["Q"])

    def symbols(self) -> dict:
        return {
            **super().symbols(),
            "P": self.P,
            "Q": self.Q,
            "Λ": self.Lambda,
            "Lambda": self.Lambda,
            "r": self.r,
            "alpha": self.alpha,
            "scaling": self.scaling,
        }

    def procedure_cases(self, generator: torch.Generator) -> list[tuple[str, dict[str, Any], Any]]:
        """The schedule, checked against the pseudocode on a short synthetic training run: the regulariser on this
        state; the importance of P, Λ and Q after five steps of synthetic parameters and gradients, and the triplet
        scores they give; the triplets `prune` keeps among this layer and two others at several budgets; and $b(t)$
        through all three phases of a schedule."""
        beta1, beta2 = 0.85, 0.6  # different, so that swapping them is caught
        cases: list[tuple[str, dict[str, Any], Any]] = [
            ("R", {}, self.orthogonality_regularizer().detach())
        ]
        layers = [copy.deepcopy(self)]
        for d_in, d_out in ((self.d_in + 3, self.d_out), (self.d_in, self.d_out + 5)):
            with torch.random.fork_rng(
                devices=[]
            ):  # its init draws from torch's generator: leave that as it was
                other = AdaLoRA(
                    self.example_base(d_in, d_out, generator, self.base.weight.dtype),
                    self.r,
                    self.alpha,
                )
            with (
                torch.no_grad()
            ):  # a trained-looking state, drawn from the generator (not torch's global one)
                for w in (other.P, other.Lambda, other.Q):
                    w.copy_(0.3 * torch.randn(w.shape, generator=generator, dtype=w.dtype))
            layers.append(other)
        for k, layer in enumerate(layers):
            steps = _synthetic_steps(layer, generator, beta1, beta2)
            if k == 0:
                s = layer.importance()
                for name, (theta, grads) in steps.items():
                    cases.append(
                        (
                            "importance",
                            {"θ": theta, "grads": grads, "β1": beta1, "β2": beta2},
                            s[name],
                        )
                    )
                cases.append(
                    (
                        "triplet_score",
                        {"s_P": s["P"], "s_λ": s["Lambda"], "s_Q": s["Q"]},
                        layer.triplet_scores(),
                    )
                )
        Lambda = torch.cat(
            [layer.Lambda.detach() for layer in layers]
        )  # every triplet of the three layers
        S = torch.cat([layer.triplet_scores() for layer in layers])
        for b in (1, self.r, 2 * self.r + 1, len(S)):
            pruned = copy.deepcopy(layers)
            mask_to_budget(pruned, b)
            cases.append(
                (
                    "prune",
                    {"Λ": Lambda, "S": S, "b": b},
                    torch.cat([m.Lambda.detach() for m in pruned]),
                )
            )
        schedule = dict(
            b_0=216, b_T=144, t_i=3, t_f=4, T=20
        )  # the paper's b(0) = 1.5 b(T), b(T) = 144
        for t in (0, 2, 3, 4, 5, 7, 9, 11, 13, 15, 16, 18, 20):
            cases.append(("budget", {"t": t, **schedule}, budget(t, **schedule)))
        return cases


def _synthetic_steps(
    layer: AdaLoRA, generator: torch.Generator, beta1: float, beta2: float, n: int = 5
) -> dict[str, tuple[list[Tensor], list[Tensor]]]:
    """``n`` steps of made-up training on ``layer``: each step its tensors drift and get a random gradient, and
    `AdaLoRA.update_importance` runs. Returns, per tensor, the values and the gradients it saw."""
    seen: dict[str, tuple[list[Tensor], list[Tensor]]] = {
        "P": ([], []),
        "Lambda": ([], []),
        "Q": ([], []),
    }
    for _ in range(n):
        for name, w in (("P", layer.P), ("Lambda", layer.Lambda), ("Q", layer.Q)):
            with torch.no_grad():
                w.add_(0.1 * torch.randn(w.shape, generator=generator, dtype=w.dtype))
            w.grad = torch.randn(w.shape, generator=generator, dtype=w.dtype)
            seen[name][0].append(w.detach().clone())
            seen[name][1].append(w.grad.clone())
        layer.update_importance(beta1, beta2)
    return seen


# --8<-- [start:procedure]
def sensitivity_step(
    w: Tensor, grad: Tensor, I_bar: Tensor, U_bar: Tensor, beta1: float, beta2: float
) -> tuple[Tensor, Tensor]:
    """One step of Eqs. (8)-(10) for every entry of a tensor: the new (Ī, Ū)."""
    I = (w * grad).abs()  # Eq. (8): sensitivity |w ∇_w L|
    I_bar = beta1 * I_bar + (1 - beta1) * I  # Eq. (9): smoothed by an exponential moving average
    # Eq. (10): uncertainty, |I − Ī| smoothed
    U_bar = beta2 * U_bar + (1 - beta2) * (I - I_bar).abs()
    return I_bar, U_bar


def triplet_score(s_P: Tensor, s_Lambda: Tensor, s_Q: Tensor) -> Tensor:
    """Eq. (7): S_i = s(λ_i) + mean_j s(P_ji) + mean_j s(Q_ij), ``(r,)``: the means keep S_i
    independent of d."""
    return s_Lambda + s_P.mean(dim=0) + s_Q.mean(dim=1)


def prune(Lambda: Tensor, S: Tensor, b: int) -> Tensor:
    """Eq. (6): keep λ_i where S_i is among the ``b`` largest scores, zero the rest. ``Lambda`` and
    ``S`` hold every
    triplet of every adapted matrix (concatenated): the budget is global, so one layer can take
    rank from another.
    Ties with the b-th largest score are pruned, as in peft."""
    if b >= S.numel():
        return Lambda
    tau = S.sort().values[S.numel() - b - 1]  # the largest score that is pruned
    return Lambda * (S > tau)


def budget(t: int, b_0: int, b_T: int, t_i: int, t_f: int, T: int) -> int:
    """Eq. (12): the number of triplets kept at step ``t``: ``b_0`` for the first ``t_i`` steps,
    then a cubic
    decrease to ``b_T``, reached ``t_f`` steps before the end ``T``. Rounded down, as peft does
    (the paper does not
    say how b(t) is rounded)."""
    if T - t_i - t_f <= 0:
        raise ValueError(
            f"the budget schedule needs T > t_i + t_f (a phase in which the budget falls); "
            f"got T={T}, t_i={t_i}, t_f={t_f}"
        )
    if t < t_i:
        return b_0
    if t >= T - t_f:
        return b_T
    u = 1 - (t - t_i) / (T - t_i - t_f)  # 1 → 0 over the pruning phase
    return int(b_T + (b_0 - b_T) * u**3)


@torch.no_grad()
def mask_to_budget(layers: list[AdaLoRA], b: int) -> list[Tensor]:
    """`prune` applied to the layers' Λ in place (Eq. 6) with their current triplet scores; returns
    each layer's
    ``(r,)`` mask of kept triplets."""
    S = torch.cat([layer.triplet_scores() for layer in layers])
    kept = prune(torch.ones_like(S), S, b).bool()
    masks = list(kept.split([layer.r for layer in layers]))
    for layer, keep in zip(layers, masks):
        layer.Lambda.mul_(keep)
    return masks


def allocate(
    layers: list[AdaLoRA],
    t: int,
    b_T: int,
    t_i: int,
    t_f: int,
    T: int,
    delta_T: int = 1,
    beta1: float = 0.85,
    beta2: float = 0.85,
) -> int:
    """One step of Algorithm 1, after the gradient step of step ``t``: update the importance (until
    the final
    phase), and mask Λ to the budget b(t) every ``delta_T`` steps while it falls; at ``t = T −
    t_f`` the allocation
    is fixed and re-applied at every later step. ``b_0`` is the layers' total initial rank. Returns
    b(t).

    The regulariser is the caller's: ``loss = task_loss + γ · Σ_k
    layer.orthogonality_regularizer()``."""
    b_0 = sum(layer.r for layer in layers)
    if not 0 <= b_T <= b_0:
        raise ValueError(
            f"b_T (the final budget) must lie between 0 and the total initial rank {b_0}; got {b_T}"
        )
    if delta_T < 1:
        raise ValueError(
            f"delta_T (steps between two allocations) must be a positive integer, got {delta_T}"
        )
    b = budget(t, b_0, b_T, t_i, t_f, T)
    if t < T - t_f:
        for layer in layers:
            layer.update_importance(beta1, beta2)
        if t_i < t and t % delta_T == 0:
            mask_to_budget(layers, b)
    elif t == T - t_f:
        for layer, keep in zip(layers, mask_to_budget(layers, b)):
            layer.keep = keep
    else:
        with torch.no_grad():
            for layer in layers:
                if layer.keep is not None:
                    layer.Lambda.mul_(layer.keep)
    return b


# --8<-- [end:procedure]
