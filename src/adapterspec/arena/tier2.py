"""Tier 2: a small pretrained transformer, adapted to a shifted task.

**Tasks.** A sequence of ``n`` value tokens (values ``0 … K−1``), a query token, and the answer. The source model
(`adapterspec.tiny.TinyTransformer`, built from a config, nothing downloaded) is pretrained here on two source
queries, ``MAX`` (the largest value) and ``FIRST`` (the first value), at lengths ``SOURCE_LENGTHS``. Adaptation
teaches a new query, ``MIN`` (the smallest value), at the short lengths ``ID_LENGTHS`` only:

* **in distribution**: ``MIN`` accuracy at the training lengths;
* **out of distribution**: ``MIN`` accuracy at the long lengths ``OOD_LENGTHS``, which the model saw in pretraining
  (for ``MAX``) but never during adaptation;
* **forgetting**: the drop in ``MAX`` accuracy from the pretrained model to the adapted one.

Why these probe the five claims: ``MIN`` needs the ordering ``MAX`` already computes, reversed (a sign flip, which a
gain or a reflection can express and a small additive change can too), so methods differ in *how* they reach it; the
long lengths ask whether what was learned stays inside the pretrained geometry (claims 2 and 3: transfer and
robustness); forgetting asks how much the change disturbs what the model already does (claim 2); the comparison of
gain-only methods with low-rank ones is claim 5, and full-rank against low-rank is claim 4.

**Protocol** (the same for every method, as in tier 1): a method wraps every module of its ``base_type`` that tier 2
adapts (``nn.Linear``: the attention ``q_proj`` and ``v_proj`` of every block; another type: every module of that
type; the whole model if it wraps the model), with the capacity value whose total trainable count is closest to the
budget (a fraction of the whole model's parameters); Adam with a cosine-decayed learning rate chosen on seed 0 by
validation accuracy, three seeds, mean and spread.
"""

from __future__ import annotations

import copy
import math
import time
from functools import lru_cache

import torch
from torch import Tensor, nn

from adapterspec.arena import budget as _budget
from adapterspec.arena import settings
from adapterspec.arena.tier1 import train

# -- settings (kept here beside the tasks they describe; the runner records them) ------------------------------------
K = 16  # values 0 … K−1
MAX, FIRST, MIN = K, K + 1, K + 2  # query tokens (MIN is never seen in pretraining)
VOCAB = K + 3
SOURCE_LENGTHS, ID_LENGTHS, OOD_LENGTHS = (4, 24), (4, 10), (16, 24)  # inclusive ranges of n
CONFIG = {"vocab_size": VOCAB, "d_model": 64, "n_heads": 4, "n_layers": 2, "d_ff": 128, "max_len": 28, "seed": 0}
PRETRAIN_STEPS, PRETRAIN_LR, BATCH = settings.TIER2_PRETRAIN_STEPS, 3e-3, 64
STEPS = settings.TIER2_STEPS
EVAL = 1024  # sequences per accuracy


def batch(query: int, lengths: tuple[int, int], size: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """``(tokens, mask)``: ``size`` sequences of one length ``n`` drawn from ``lengths`` (inclusive): ``n`` values,
    the query token, the answer. For ``MAX`` and ``MIN`` the answer is drawn uniformly first and the other values on
    its side of it, so the answer is uniform over ``0 … K−1`` at every length (long sequences are not easier)."""
    n = int(torch.randint(lengths[0], lengths[1] + 1, (), generator=g))
    if query == FIRST:
        values = torch.randint(0, K, (size, n), generator=g)
        answer = values[:, 0]
    elif query in (MAX, MIN):
        answer = torch.randint(0, K, (size,), generator=g)
        u = torch.rand(size, n, generator=g)
        if query == MAX:  # others uniform in 0 … answer
            values = (u * (answer[:, None] + 1)).long()
        else:  # others uniform in answer … K−1
            values = answer[:, None] + (u * (K - answer[:, None])).long()
        at = torch.randint(0, n, (size,), generator=g)
        values[torch.arange(size), at] = answer
    else:
        raise ValueError(f"unknown query token {query}")
    q = torch.full((size, 1), query)
    tokens = torch.cat([values, q, answer[:, None]], 1)  # (size, n + 2)
    mask = torch.zeros_like(tokens, dtype=torch.bool)
    mask[:, -1] = True  # only the answer is a target
    return tokens, mask


def _mixed_source(size: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    return batch(MAX if bool(torch.rand((), generator=g) < 0.5) else FIRST, SOURCE_LENGTHS, size, g)


@lru_cache(maxsize=2)
def pretrained_state(steps: int = PRETRAIN_STEPS) -> dict[str, Tensor]:
    """The source model, pretrained once per process (deterministic from `CONFIG`, ``steps`` and the data seed)."""
    from adapterspec.tiny import TinyConfig, TinyTransformer, pretrain

    model = TinyTransformer(TinyConfig(**CONFIG))
    pretrain(model, _mixed_source, steps=steps, batch_size=BATCH, lr=PRETRAIN_LR, seed=12345)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def model_params() -> int:
    """Parameters of the tiny model (the denominator of the tier-2 budgets)."""
    from adapterspec.tiny import TinyConfig, TinyTransformer

    return sum(p.numel() for p in TinyTransformer(TinyConfig(**CONFIG)).parameters())


def source_model(pretrain_steps: int = PRETRAIN_STEPS) -> nn.Module:
    from adapterspec.tiny import TinyConfig, TinyTransformer

    model = TinyTransformer(TinyConfig(**CONFIG))
    model.load_state_dict(pretrained_state(pretrain_steps))
    model.eval()
    return model


@torch.no_grad()
def accuracy(model: nn.Module, query: int, lengths: tuple[int, int], seed: int) -> float:
    g = torch.Generator().manual_seed(seed)
    right = total = 0
    for _ in range(EVAL // 128):
        tokens, _ = batch(query, lengths, 128, g)
        pred = model(tokens[:, :-1])[:, -1].argmax(-1)
        right += int((pred == tokens[:, -1]).sum())
        total += tokens.shape[0]
    return right / total


def _selected(name: str, module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return name.endswith(("attn.q_proj", "attn.v_proj"))
    if isinstance(module, nn.Embedding):
        return name == "embed"
    return True


def attach(model: nn.Module, slug: str, hyper: dict) -> nn.Module:
    """``model`` (frozen) with method ``slug`` wrapped around every module tier 2 adapts; returns the model to run
    (the adapter itself when the method wraps the whole model)."""
    from adapterspec.registry import adapter_class, create

    model.requires_grad_(False)
    cls = adapter_class(slug)
    if isinstance(model, cls.base_type):
        return create(slug, model, **hyper)
    targets = [(n, m) for n, m in model.named_modules() if n and isinstance(m, cls.base_type) and _selected(n, m)]
    if not targets:
        raise ValueError(f"the tiny model has no {cls.base_type.__name__} for {slug} to wrap")
    for name, module in targets:
        parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
        setattr(parent, name.rsplit(".", 1)[-1], create(slug, module, **hyper))
    return model


def _count(slug: str, hyper: dict, base: nn.Module) -> int | None:
    """Trainable parameters of ``slug`` at ``hyper`` on the model, or None where the method cannot run there: its
    constructor refuses the value, or the longest sequence tier 2 feeds no longer fits (a soft prompt or prefix of
    ``n`` positions plus the tokens must fit the model's ``max_len``)."""
    longest = max(SOURCE_LENGTHS[1], ID_LENGTHS[1], OOD_LENGTHS[1]) + 1  # n values and the query (answer not fed)
    try:
        with torch.random.fork_rng(devices=[]):
            m = attach(copy.deepcopy(base), slug, hyper)
            with torch.no_grad():
                m(torch.zeros(1, longest, dtype=torch.long))
    except (ValueError, TypeError, RuntimeError):
        return None
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


def choose(slug: str, fraction: float, base: nn.Module) -> _budget.Choice | None:
    """The capacity value whose total trainable count over the wrapped modules is closest to ``fraction`` of the
    model's parameters (as in tier 1, by ratio)."""
    from adapterspec.registry import adapter_class

    name = adapter_class(slug).capacity
    total = sum(p.numel() for p in base.parameters())
    goal = fraction * total
    d = CONFIG["d_model"]
    values = [None] if name is None else _budget.candidates(d, d)
    found = []
    for v in values:
        hyper = {} if name is None else {name: v}
        n = _count(slug, hyper, base)
        if n is not None:
            found.append((hyper, n))
            if n > 2 * total:
                break
    if not found:
        return None
    hyper, n = min(found, key=lambda hn: (abs(math.log(max(hn[1], 1) / goal)), hn[1]))
    return _budget.Choice(hyper=tuple(hyper.items()), params=n)


def fit(slug: str, hyper: dict, seed: int, lr: float, steps: int = STEPS, pretrain_steps: int = PRETRAIN_STEPS) -> dict:
    """Adapt the pretrained model to ``MIN`` with method ``slug``; accuracies before and after."""
    start, cpu = time.perf_counter(), time.process_time()  # CPU time: the fit's own cost on a shared machine
    base = source_model(pretrain_steps)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = attach(base, slug, hyper)
    params = [p for p in model.parameters() if p.requires_grad]
    g = torch.Generator().manual_seed(777 + seed)

    def loss() -> Tensor:
        tokens, _ = batch(MIN, ID_LENGTHS, BATCH, g)
        return nn.functional.cross_entropy(model(tokens[:, :-1])[:, -1], tokens[:, -1])

    model.train()
    finite = train(params, lr, steps, loss)
    model.eval()
    out = {"params": sum(p.numel() for p in params), "seconds": 0.0, "diverged": not finite}
    if finite:
        out.update(val_id=accuracy(model, MIN, ID_LENGTHS, 10_000 + seed), id=accuracy(model, MIN, ID_LENGTHS, 20_000),
                   ood=accuracy(model, MIN, OOD_LENGTHS, 30_000), source=accuracy(model, MAX, SOURCE_LENGTHS, 40_000))
    out["seconds"] = time.perf_counter() - start
    out["cpu_seconds"] = time.process_time() - cpu
    return out


@lru_cache(maxsize=2)
def reference(pretrain_steps: int = PRETRAIN_STEPS) -> dict:
    """The pretrained model's own accuracies (before any adaptation)."""
    m = source_model(pretrain_steps)
    return {"source": accuracy(m, MAX, SOURCE_LENGTHS, 40_000), "first": accuracy(m, FIRST, SOURCE_LENGTHS, 50_000),
            "id": accuracy(m, MIN, ID_LENGTHS, 20_000), "ood": accuracy(m, MIN, OOD_LENGTHS, 30_000)}
