"""Tier 1: one layer, a teacher and a student.

The teacher is a fixed pretrained-looking weight ``W0`` (a decaying singular spectrum) changed by one known structure,
``W* = W0 + ΔW*``; the student is a method wrapped around ``W0``, trained to reproduce ``W* x`` on inputs with an
anisotropic covariance. Every target changes the layer's output by the same relative amount
(`settings.RELATIVE_SIZE`), so the error of different structures is on one scale:

    relative error = ‖f(x) − W* x‖ / ‖(W* − W0) x‖   (0: exact; 1: no better than leaving W0 alone)

over a test batch the student never trained or chose its learning rate on. Nothing here knows any method: a method
is a slug, its capacity hyperparameter and a value (`adapterspec.arena.budget`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from functools import lru_cache

import torch
from torch import Tensor
from torch.nn import functional as F

from adapterspec.arena import settings

LAYER_SEED = 20240  # W0 and the input covariance: one fixed "pretrained" layer for every run
TRAIN_POOL = 8192  # training inputs drawn once per seed; each step samples a batch from them

# Each target: a name, the structure in words (shown on the page), and the rank of ΔW* it has by construction.
TARGETS: dict[str, str] = {
    "low-rank": "ΔW* = B A of rank 4",
    "input-rotation": "W* = W0 R, R a dense rotation of the input space (neuron norms and angles kept)",
    "output-rotation": "W* = R W0, R a dense rotation of the output space",
    "output-gain": "W* = diag(g) W0: one gain per output neuron",
    "input-gain": "W* = W0 diag(g): one gain per input feature",
    "top-subspace": "ΔW* = U_k M V_kᵀ inside the top k = 8 singular directions of W0",
    "sparse": "ΔW* has 1% non-zero entries at random positions",
    "block-circulant": "ΔW* made of 64 × 64 circulant blocks, each with its own kernel",
    "kronecker": "ΔW* = A ⊗ B with A 16 × 16 and B 16 × 32",
    "hadamard": "ΔW* = (B1 A1) ⊙ (B2 A2), two rank-4 products multiplied entry by entry",
    "dense": "ΔW* a dense Gaussian matrix (full rank, no structure)",
}
LOW_RANK, TOP_K, SPARSE_DENSITY, CIRCULANT_BLOCK, HADAMARD_RANK = 4, 8, 0.01, 64, 4


@lru_cache(maxsize=4)
def layer(d_in: int, d_out: int) -> tuple[Tensor, Tensor]:
    """``(W0, L)`` in float64: the pretrained weight ``(d_out, d_in)``, singular values ``1/(1 + i/8)``, random
    singular vectors; and ``L`` ``(d_in, d_in)`` with ``x = L z``, ``z ~ N(0, I)``: an input covariance ``L Lᵀ`` with
    eigenvalues ``(1 + j/16)^(-1.5)`` along random directions (unrelated to W0's)."""
    g = torch.Generator().manual_seed(LAYER_SEED)
    k = min(d_in, d_out)
    U, _ = torch.linalg.qr(torch.randn(d_out, k, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(d_in, k, generator=g, dtype=torch.float64))
    s = 1.0 / (1.0 + torch.arange(k, dtype=torch.float64) / 8)
    W0 = (U * s) @ V.T
    Q, _ = torch.linalg.qr(torch.randn(d_in, d_in, generator=g, dtype=torch.float64))
    lam = (1.0 + torch.arange(d_in, dtype=torch.float64) / 16) ** -1.5
    L = Q * lam.sqrt()
    return W0, L


def _size(delta: Tensor, L: Tensor) -> float:
    """‖ΔW L‖_F = sqrt(E‖ΔW x‖²): the size of a change as the inputs see it."""
    return float(torch.linalg.matrix_norm(delta @ L))


def _rotation(d: int, g: Tensor) -> Tensor:
    G = torch.randn(d, d, generator=g, dtype=torch.float64)
    return (G - G.T) / math.sqrt(2 * d)  # skew-symmetric generator, eigen-angles of order 1


def _circulant_blocks(m: int, n: int, b: int, g: torch.Generator) -> Tensor:
    kernels = torch.randn(m, n, b, generator=g, dtype=torch.float64)
    idx = (torch.arange(b)[None, :] - torch.arange(b)[:, None]) % b  # C[j, t] = v[(t - j) mod b]
    blocks = kernels[:, :, idx]  # (m, n, b, b)
    return blocks.permute(0, 2, 1, 3).reshape(m * b, n * b)


@lru_cache(maxsize=16)
def target_weight(name: str, d_in: int, d_out: int, seed: int) -> Tensor:
    """``W*`` (float64, ``(d_out, d_in)``) for target ``name`` and ``seed``, scaled so that
    ‖(W* − W0) L‖ = RELATIVE_SIZE ‖W0 L‖."""
    W0, L = layer(d_in, d_out)
    g = torch.Generator().manual_seed(1000 * seed + list(TARGETS).index(name) + 1)
    goal = settings.RELATIVE_SIZE * _size(W0, L)
    rn = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    if name in ("input-rotation", "output-rotation"):
        K = _rotation(d_in if name == "input-rotation" else d_out, g)
        rotate = (lambda R: W0 @ R) if name == "input-rotation" else (lambda R: R @ W0)
        lo, hi = 0.0, 1.0
        while _size(rotate(torch.linalg.matrix_exp(hi * K)) - W0, L) < goal:
            hi *= 2
        for _ in range(32):  # bisection on the angle: the rotation itself stays exactly orthogonal
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if _size(rotate(torch.linalg.matrix_exp(mid * K)) - W0, L) < goal else (lo, mid)
        return rotate(torch.linalg.matrix_exp((lo + hi) / 2 * K))
    if name == "low-rank":
        delta = rn(d_out, LOW_RANK) @ rn(LOW_RANK, d_in)
    elif name == "output-gain":
        delta = rn(d_out, 1) * W0
    elif name == "input-gain":
        delta = W0 * rn(1, d_in)
    elif name == "top-subspace":
        U, _, Vh = torch.linalg.svd(W0, full_matrices=False)
        delta = U[:, :TOP_K] @ rn(TOP_K, TOP_K) @ Vh[:TOP_K]
    elif name == "sparse":
        delta = rn(d_out, d_in) * (torch.rand(d_out, d_in, generator=g, dtype=torch.float64) < SPARSE_DENSITY)
    elif name == "block-circulant":
        b = math.gcd(CIRCULANT_BLOCK, d_in, d_out)
        delta = _circulant_blocks(d_out // b, d_in // b, b, g)
    elif name == "kronecker":
        p = math.isqrt(d_out)
        while d_out % p:
            p -= 1
        q = p if d_in % p == 0 else 1
        delta = torch.kron(rn(p, q), rn(d_out // p, d_in // q))
    elif name == "hadamard":
        r = HADAMARD_RANK
        delta = (rn(d_out, r) @ rn(r, d_in)) * (rn(d_out, r) @ rn(r, d_in))
    elif name == "dense":
        delta = rn(d_out, d_in)
    else:
        raise KeyError(f"no target {name!r}; targets: {', '.join(TARGETS)}")
    return W0 + delta * (goal / _size(delta, L))


@lru_cache(maxsize=8)
def _data(d_in: int, d_out: int, seed: int) -> dict[str, Tensor]:
    """Inputs for one seed (float32): a training pool, a validation batch and a separate test batch."""
    _, L = layer(d_in, d_out)
    g = torch.Generator().manual_seed(7919 * (seed + 1))
    draw = lambda n: (torch.randn(n, d_in, generator=g, dtype=torch.float64) @ L.T).float()  # noqa: E731
    return {"train": draw(TRAIN_POOL), "val": draw(settings.EVAL_SAMPLES), "test": draw(settings.EVAL_SAMPLES)}


@lru_cache(maxsize=8)
def _problem(name: str, d_in: int, d_out: int, seed: int) -> dict[str, Tensor]:
    """What every fit of one (target, seed) shares, computed once per worker: the pool's targets ``Y`` and residual
    norms ``‖(W* − W0)x‖²``, and the validation and test batches with their targets and error denominators."""
    W0 = layer(d_in, d_out)[0].float()
    W_star = target_weight(name, d_in, d_out, seed).float()
    data = _data(d_in, d_out, seed)
    out = {"W_star": W_star, "W0": W0, "X": data["train"], "Y": data["train"] @ W_star.T,
           "R2": (data["train"] @ (W_star - W0).T).pow(2).sum(1)}  # (pool,)
    for split in ("val", "test"):
        X = data[split]
        Y = X @ W_star.T
        out[split] = (X, Y, torch.linalg.matrix_norm(Y - X @ W0.T))
    return out


def apply(module: torch.nn.Module, x: Tensor) -> Tensor:
    """The adapted layer's output. A weight-space method is applied through its effective weight ``W'``
    (`Adapter.adapted_weight`), which the catalog checks equal to its forward (merged == unmerged); that is one
    matrix product per step whatever the method's own forward does. Other modules run their forward."""
    if getattr(module, "mergeable", False) and getattr(module, "base", None) is not None:
        W = module.adapted_weight(module.base.weight)
        b = module.adapted_bias(module.base.bias)
        return F.linear(x, W, b)
    return module(x)


def relative_error(module: torch.nn.Module, X: Tensor, W_star: Tensor, W0: Tensor,
                   known: tuple[Tensor, Tensor] | None = None) -> float:
    """‖f(X) − X W*ᵀ‖ / ‖X (W* − W0)ᵀ‖ over the batch ``X`` ``(n, d_in)``; for a weight-space method
    ``f(X) = X W'ᵀ``, so this is ‖(W' − W*) x‖ / ‖(W* − W0) x‖. ``known``: ``(X W*ᵀ, the denominator)``,
    when already computed."""
    with torch.no_grad():
        Y, den = known if known is not None else (X @ W_star.T, torch.linalg.matrix_norm(X @ (W_star - W0).T))
        out = apply(module, X)
        return float(torch.linalg.matrix_norm(out - Y) / den)


def train(params: list[Tensor], lr: float, steps: int, loss: Callable[[], Tensor]) -> bool:
    """The optimiser protocol of both tiers: Adam on ``params`` for ``steps`` steps, the learning rate decayed from
    ``lr`` to zero on a cosine, each step on a fresh ``loss()``. False if the loss stopped being finite."""
    opt = torch.optim.Adam(params, lr=lr)
    for t in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * t / steps))
        value = loss()
        if not torch.isfinite(value):
            return False
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
    return True


def fit(slug: str, hyper: dict, target: str, seed: int, lr: float, steps: int, d_in: int, d_out: int,
        batch: int | None = None) -> dict:
    """Train method ``slug`` (built with ``hyper``) towards target ``target``; Adam, a cosine-decayed learning rate
    from ``lr``, ``steps`` steps of ``batch`` fresh inputs. Returns the real trainable count, the validation and test
    relative errors (None when the loss stopped being finite) and the time taken."""
    from adapterspec.registry import create

    batch = batch or settings.BATCH
    start, cpu = time.perf_counter(), time.process_time()  # CPU time: the fit's own cost on a shared machine
    problem = _problem(target, d_in, d_out, seed)
    W0, W_star = problem["W0"], problem["W_star"]
    base = torch.nn.Linear(d_in, d_out, bias=False)
    with torch.no_grad():
        base.weight.copy_(W0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the adapter's own init draws from the global generator
        module = create(slug, base, **hyper)
    params = list(module.trainable_parameters().values())
    count = module.num_trainable()
    g = torch.Generator().manual_seed(104729 * (seed + 1))
    X_pool, Y_pool, R2_pool = problem["X"], problem["Y"], problem["R2"]

    def loss() -> Tensor:
        idx = torch.randint(0, X_pool.shape[0], (batch,), generator=g)
        return (apply(module, X_pool[idx]) - Y_pool[idx]).pow(2).sum() / R2_pool[idx].sum()

    finite = train(params, lr, steps, loss)
    val = test = None
    if finite:
        val = relative_error(module, problem["val"][0], W_star, W0, problem["val"][1:])
        test = relative_error(module, problem["test"][0], W_star, W0, problem["test"][1:])
        if not math.isfinite(val) or not math.isfinite(test):
            val = test = None
    return {"params": count, "val_error": val, "test_error": test, "seconds": time.perf_counter() - start,
            "cpu_seconds": time.process_time() - cpu}


def facts(d_in: int, d_out: int, targets: tuple[str, ...], seed: int = 0) -> dict[str, dict]:
    """What each target is, measured on seed 0's instance (float64), for predictions made without rerunning anything:
    the rank of ΔW*, whether W* keeps W0's neuron Gram matrix (W*W*ᵀ = W0W0ᵀ) or input Gram matrix
    (W*ᵀW* = W0ᵀW0), and ``floor[k]``: the smallest relative error any update of rank at most k can reach,
    ‖tail_k(ΔW* L)‖ / ‖ΔW* L‖ (Eckart–Young on ΔW* L, since the error is measured through the inputs
    x = L z)."""
    W0, L = layer(d_in, d_out)
    out = {}
    for name in targets:
        W = target_weight(name, d_in, d_out, seed)
        delta = W - W0
        s = torch.linalg.svdvals(delta @ L)
        tail = torch.flip(torch.cumsum(torch.flip(s**2, [0]), 0), [0])  # tail[k] = Σ_{i ≥ k} s_i²
        floor = (torch.cat([tail, tail.new_zeros(1)]) / tail[0]).sqrt()
        gram = lambda A, B: float(torch.linalg.matrix_norm(A - B) / torch.linalg.matrix_norm(B))  # noqa: E731
        out[name] = {"rank": int((s > s[0] * 1e-9).sum()), "full_rank": min(d_in, d_out),
                     "neuron_gram": gram(W @ W.T, W0 @ W0.T) < 1e-9, "input_gram": gram(W.T @ W, W0.T @ W0) < 1e-9,
                     "floor": [float(f"{float(v):.4g}") for v in floor]}
    return out
