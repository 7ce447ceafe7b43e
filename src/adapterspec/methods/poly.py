r"""Polytropon and Multi-Head Routing — a per-task average of an inventory of LoRA skills (Ponti et al.,
arXiv:2202.13914; Caccia et al., arXiv:2211.03831)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from adapterspec.adapter import Adapter


class Poly(Adapter):
    r"""An inventory of ``S`` low-rank skills per layer, mixed per task (and per head) by learned routing weights.

    For task $t$, head $q$ of $h$ (``n_splits``) averages the skills with weights
    $w_{t,q,s} = \sigma(Z_{t,q,s}) / \sum_{s'} \sigma(Z_{t,q,s'})$, and owns the input slice $I_q$ (columns
    $q\,d_{in}/h \dots$) of $A$ and the output slice $O_q$ (rows $q\,d_{out}/h \dots$) of $B$:

    $$A_t[:, I_q] = \sum_s w_{t,q,s} A_s[:, I_q],\qquad B_t[O_q, :] = \sum_s w_{t,q,s} B_s[O_q, :],\qquad
      W'_t = W_0 + \tfrac{1}{r} B_t A_t$$

    with $A_s \in \mathbb{R}^{r\times d_{in}}$, $B_s \in \mathbb{R}^{d_{out}\times r}$. $h = 1$ is Polytropon (one
    routing vector per task); $h > 1$ is MHR. The weights are the deterministic (evaluation) routing: during training
    the papers and peft replace $\sigma(Z)$ by a sample of a relaxed Bernoulli (Gumbel-sigmoid) with logits $Z$, which is
    training-time noise like dropout and is not part of this module's function.

    For one task the update is one rank-$r$ LoRA, so it merges into $W_0$ *for that task* (``task``); a batch mixing
    tasks needs the unmerged forward with ``task_ids``.

    Args:
        base: the frozen layer.
        r: rank of every skill's LoRA (and of the routed update).
        n_tasks: rows of the routing logits $Z$, one per training task.
        n_skills: size ``S`` of the inventory.
        n_splits: heads ``h`` (1: Polytropon; more: MHR); must divide ``d_in`` and ``d_out``.
        task: the task the module computes (and merges) by default; ``forward(x, task_ids=...)`` overrides it per
            example.
    """

    capacity = "r"

    def __init__(
        self,
        base: nn.Linear,
        r: int = 8,
        n_tasks: int = 1,
        n_skills: int = 4,
        n_splits: int = 1,
        task: int = 0,
    ) -> None:
        super().__init__(base)
        for name, value in (
            ("r", r),
            ("n_tasks", n_tasks),
            ("n_skills", n_skills),
            ("n_splits", n_splits),
        ):
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.d_in % n_splits or self.d_out % n_splits:
            raise ValueError(
                f"n_splits must divide d_in and d_out (each head owns an equal slice of both); got "
                f"n_splits={n_splits} for d_in={self.d_in}, d_out={self.d_out}"
            )
        if not 0 <= task < n_tasks:
            raise ValueError(
                f"task must be a task id in 0 … n_tasks − 1 = {n_tasks - 1}, got {task!r}"
            )
        self.r, self.n_tasks, self.n_skills, self.n_splits, self.task = (
            r,
            n_tasks,
            n_skills,
            n_splits,
            task,
        )
        self.A = nn.Parameter(torch.empty(n_skills, r, self.d_in, **self.factory))  # (S, r, d_in)
        self.B = nn.Parameter(torch.empty(n_skills, self.d_out, r, **self.factory))  # (S, d_out, r)
        self.Z = nn.Parameter(
            torch.empty(n_tasks, n_splits, n_skills, **self.factory)
        )  # (n_tasks, h, S) logits
        self.reset_parameters()

    # --8<-- [start:init]
    @torch.no_grad()
    def reset_parameters(self) -> None:
        # Each skill and head is a LoRA A block of width d_in/h, Kaiming-uniform on its own fan-in:
        # bound 1/√(d_in/h). B = 0, so every skill, hence every mixture, is ΔW = 0 at init.
        bound = 1.0 / math.sqrt(self.d_in // self.n_splits)
        nn.init.uniform_(self.A, -bound, bound)
        nn.init.zeros_(self.B)
        # Logits near 0: σ(Z) ≈ 1/2 for every skill, so every task starts from the plain average.
        nn.init.uniform_(self.Z, -1e-3, 1e-3)

    # --8<-- [end:init]

    # --8<-- [start:update]
    def routing(self, task_ids: Tensor) -> Tensor:
        """The mixing weights ``w (len(task_ids), h, S)``: for each task and head, σ(Z) normalised
        over the skills."""
        z = torch.sigmoid(self.Z[task_ids])  # (n, h, S)
        return z / z.sum(-1, keepdim=True)

    def factors(self, task_ids: Tensor) -> tuple[Tensor, Tensor]:
        """The routed LoRA pair of each task, ``A_t (n, r, d_in)`` and ``B_t (n, d_out, r)``."""
        S, h, r = self.n_skills, self.n_splits, self.r
        w = self.routing(task_ids)  # (n, h, S)
        A = self.A.view(S, r, h, self.d_in // h)  # head q owns input columns q·d_in/h …
        B = self.B.view(S, h, self.d_out // h, r)  # and output rows q·d_out/h …
        A_t = torch.einsum("nqs,srqi->nrqi", w, A).reshape(-1, r, self.d_in)  # (n, r, d_in)
        B_t = torch.einsum("nqs,sqor->nqor", w, B).reshape(-1, self.d_out, r)  # (n, d_out, r)
        return A_t, B_t

    def delta_weight(self) -> Tensor:
        """``ΔW_t = B_t A_t / r`` for task ``task``, formed directly (not as ``W' − W0``, which
        would lose the digits
        of a small update to cancellation)."""
        A_t, B_t = self.factors(torch.tensor([self.task], device=self.A.device))
        return B_t[0] @ A_t[0] / self.r  # (d_out, d_in), rank ≤ r

    def adapted_weight(self, W0: Tensor) -> Tensor:
        return W0 + self.delta_weight()  # (d_out, d_in), for task `task`

    def forward(self, x: Tensor, task_ids: Tensor | None = None) -> Tensor:
        """``x (..., d_in)``; ``task_ids (B,)``, one task per row of the first dimension of ``x``
        (default: ``task``
        for every row)."""
        if task_ids is None:
            return self.base(x) if self.merged else super().forward(x)
        if self.merged:
            raise RuntimeError(
                f"Poly is merged for task {self.task}; unmerge() before passing task_ids"
            )
        if task_ids.numel() and not 0 <= int(task_ids.min()) <= int(task_ids.max()) < self.n_tasks:
            raise ValueError(
                f"task_ids must lie in 0 … n_tasks − 1 = {self.n_tasks - 1}; "
                f"got {task_ids.tolist()}"
            )
        A_t, B_t = self.factors(task_ids.to(self.Z.device))  # (B, r, d_in), (B, d_out, r)
        u = torch.einsum("b...i,bri->b...r", x, A_t)  # (B, ..., r)
        return self.base(x) + torch.einsum("b...r,bor->b...o", u, B_t) / self.r  # (B, ..., d_out)

    # --8<-- [end:update]

    def symbols(self) -> dict:
        return {
            **super().symbols(),
            "A": self.A,
            "B": self.B,
            "Z": self.Z,
            "r": self.r,
            "task": self.task,
            "n_tasks": self.n_tasks,
            "n_skills": self.n_skills,
            "n_splits": self.n_splits,
            "S": self.n_skills,
            "h": self.n_splits,
        }
