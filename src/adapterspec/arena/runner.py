"""Run the arena: plan the cells, fit them in a local process pool, write one record per fit plus provenance.

A *cell* is one (method, target, budget). Its fits run in one worker: the learning rate is chosen on seed 0 from
`settings.LR_GRID` by the validation error (`search_lr`: the middle rates first, then outwards while the best is at
the end of what was tried), then the other seeds run at that learning rate; every fit is a record.
Cells are independent, so they go to a ``concurrent.futures`` pool (one torch thread per worker) and finish in any
order; each fit is seeded by its own (seed, target), so the results do not depend on the order or the pool size.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from adapterspec.arena import budget, settings, tier1

FORMAT = 1  # bump when the record layout changes
DEFAULT_OUT = "docs/data/arena.json"
DEFAULT_FIGURES = "docs/assets/arena"


@dataclass(frozen=True)
class Plan:
    """What one invocation runs (the full grid, ``--quick``, or a subset)."""

    methods: tuple[str, ...]
    targets: tuple[str, ...]
    budgets: tuple[float, ...]
    seeds: tuple[int, ...]
    lr_grid: tuple[float, ...]
    steps: int
    batch: int
    d_in: int
    d_out: int
    quick: bool = False
    tiers: tuple[int, ...] = (1, 2)
    t2_methods: tuple[str, ...] = ()
    t2_budgets: tuple[float, ...] = settings.TIER2_BUDGETS
    t2_steps: int = settings.TIER2_STEPS
    t2_lr_grid: tuple[float, ...] = settings.TIER2_LR_GRID
    t2_pretrain: int = settings.TIER2_PRETRAIN_STEPS

    def settings(self) -> dict:
        from adapterspec.arena import tier2

        return {**asdict(self), "relative_size": settings.RELATIVE_SIZE, "eval_samples": settings.EVAL_SAMPLES,
                "fit": settings.FIT, "fail": settings.FAIL, "over_budget": settings.OVER_BUDGET,
                "tier2_task": {"values": tier2.K, "source_lengths": tier2.SOURCE_LENGTHS,
                               "id_lengths": tier2.ID_LENGTHS, "ood_lengths": tier2.OOD_LENGTHS,
                               "model": tier2.CONFIG, "batch": tier2.BATCH, "eval": tier2.EVAL,
                               "model_params": tier2.model_params()}}


def plan(quick: bool = False, methods: list[str] | None = None, targets: list[str] | None = None,
         budgets: list[float] | None = None, tiers: list[int] | None = None) -> Plan:
    from adapterspec.registry import available

    tiers_ = tuple(sorted(set(tiers or (1, 2))))
    if quick:
        q2 = settings.QUICK_TIER2
        base = Plan(settings.QUICK_METHODS, settings.QUICK_TARGETS, settings.QUICK_BUDGETS, settings.QUICK_SEEDS,
                    settings.QUICK_LR_GRID, settings.QUICK_STEPS, settings.BATCH, *settings.QUICK_SHAPE, quick=True,
                    tiers=tiers_, t2_methods=q2["methods"], t2_budgets=q2["budgets"], t2_steps=q2["steps"],
                    t2_lr_grid=q2["lr_grid"], t2_pretrain=q2["pretrain"])
    else:
        base = Plan(tuple(available()), tuple(tier1.TARGETS), settings.BUDGETS, settings.SEEDS, settings.LR_GRID,
                    settings.STEPS, settings.BATCH, settings.D_IN, settings.D_OUT, tiers=tiers_,
                    t2_methods=tuple(available()))
    known = set(available())
    for m in methods or ():
        if m not in known:
            raise KeyError(f"no method {m!r}; available: {', '.join(sorted(known))}")
    for t in targets or ():
        if t not in tier1.TARGETS:
            raise KeyError(f"no target {t!r}; targets: {', '.join(tier1.TARGETS)}")
    from dataclasses import replace

    # --budgets: each tier keeps those of the given budgets that are on its own grid (or all of them, if none is)
    b1 = tuple(b for b in budgets or () if b in base.budgets) or tuple(budgets or base.budgets)
    b2 = tuple(b for b in budgets or () if b in base.t2_budgets) or tuple(budgets or base.t2_budgets)
    return replace(base, methods=tuple(methods or base.methods), targets=tuple(targets or base.targets),
                   budgets=b1, t2_methods=tuple(methods or base.t2_methods), t2_budgets=b2)


@dataclass
class Cell:
    method: str
    target: str
    budget: float
    hyper: dict
    params: int
    also: list[float] = field(default_factory=list)  # other budgets whose choice is the same: fitted once


def _dedupe(cells: list[Cell]) -> list[Cell]:
    """One cell per (method, target, hyperparameters): a method whose count cannot move (capacity None) or that
    reached its largest count picks the same configuration at several budgets, and is fitted once for all of them."""
    out: dict[tuple, Cell] = {}
    for c in cells:
        key = (c.method, c.target, tuple(sorted(c.hyper.items())))
        if key in out:
            out[key].also.append(c.budget)
        else:
            out[key] = c
    return list(out.values())


def _for_budgets(cell: Cell, recs: list[dict], d_in: int | None = None, d_out: int | None = None) -> list[dict]:
    """The records of ``cell``, repeated for each budget in ``cell.also`` (marked ``shared_with``)."""
    out = list(recs)
    for b in cell.also:
        extra = {"budget": b, "shared_with": cell.budget}
        if d_in is not None:
            extra["budget_params"] = round(b * d_in * d_out)
        out += [{**r, **extra} for r in recs]
    return out


def _init_worker() -> None:
    torch.set_num_threads(1)


def search_lr(grid: tuple[float, ...], fit: Callable[[float], dict], score: Callable[[dict], float | None],
              start: int = 3) -> list[dict]:
    """Fit at the ``start`` middle rates of ``grid`` (sorted ascending), then keep trying the next rate outwards
    while the best score (lowest; None: diverged) is at an end of the rates tried and the grid goes on that way.

    The same rule for every method: a method that wants a rate the middle of the grid does not have gets it (up to
    the grid's ends), and one whose best is inside pays nothing more. Returns the fits in the order they ran, each
    with its ``"lr"``; the caller marks the best.
    """
    lo = max(0, (len(grid) - start) // 2)
    hi = min(len(grid), lo + start) - 1
    fits = {i: {**fit(grid[i]), "lr": grid[i]} for i in range(lo, hi + 1)}
    order = list(fits)
    while True:
        scored = {i: score(f) for i, f in fits.items() if score(f) is not None}
        best = min(scored, key=lambda i: (scored[i], i)) if scored else lo  # all diverged: try smaller rates
        if best == lo and lo > 0:
            lo -= 1
            fits[lo] = {**fit(grid[lo]), "lr": grid[lo]}
            order.append(lo)
        elif best == hi and hi < len(grid) - 1:
            hi += 1
            fits[hi] = {**fit(grid[hi]), "lr": grid[hi]}
            order.append(hi)
        else:
            return [fits[i] for i in order]


def run_cell(p: Plan, method: str, target: str, budget_: float, hyper: dict) -> list[dict]:
    """Every fit of one cell: the learning-rate search on seed 0, then the other seeds at the chosen rate."""
    torch.set_num_threads(1)
    common = {"tier": 1, "method": method, "target": target, "budget": budget_,
              "budget_params": round(budget_ * p.d_in * p.d_out), "hyper": hyper}
    first, *rest = p.seeds
    tried = search_lr(p.lr_grid, lambda lr: tier1.fit(method, hyper, target, first, lr, p.steps, p.d_in, p.d_out,
                                                      p.batch), lambda r: r["val_error"])
    records = [{**common, "seed": first, **r, "selected": False} for r in tried]
    scored = [rec for rec in records if rec["val_error"] is not None]
    if not scored:  # every learning rate diverged: report seed-0 failure at the smallest rate tried
        best = min(records, key=lambda rec: rec["lr"])
    else:
        best = min(scored, key=lambda rec: (rec["val_error"], rec["lr"]))
    best["selected"] = True
    for seed in rest:
        r = tier1.fit(method, hyper, target, seed, best["lr"], p.steps, p.d_in, p.d_out, p.batch)
        records.append({**common, "seed": seed, "lr": best["lr"], **r, "selected": True})
    for rec in records:
        rec["seconds"] = round(rec["seconds"], 3)
        rec["cpu_seconds"] = round(rec["cpu_seconds"], 3)
        for k in ("val_error", "test_error"):
            if rec[k] is not None:
                rec[k] = float(f"{rec[k]:.6g}")
    return records


def run_cell2(p: Plan, method: str, budget_: float, hyper: dict) -> list[dict]:
    """Tier 2: the learning-rate search (`search_lr`) on seed 0's in-distribution validation accuracy, then the
    other seeds at the chosen rate."""
    from adapterspec.arena import tier2

    torch.set_num_threads(1)
    ref = tier2.reference(p.t2_pretrain)
    common = {"tier": 2, "method": method, "task": "min", "budget": budget_, "hyper": hyper}
    first, *rest = p.seeds

    def one(seed: int, lr: float, selected: bool) -> dict:
        r = tier2.fit(method, hyper, seed, lr, p.t2_steps, p.t2_pretrain)
        if "source" in r:
            r["forgetting"] = ref["source"] - r["source"]
        return {**common, "seed": seed, "lr": lr, **r, "seconds": round(r["seconds"], 3),
                "cpu_seconds": round(r["cpu_seconds"], 3), "selected": selected}

    records = search_lr(p.t2_lr_grid, lambda lr: one(first, lr, False),
                        lambda r: None if r["diverged"] else -r["val_id"])
    scored = [r for r in records if not r["diverged"]]
    best = max(scored, key=lambda r: (r["val_id"], -r["lr"])) if scored else min(records, key=lambda r: r["lr"])
    best["selected"] = True
    records += [one(seed, best["lr"], True) for seed in rest]
    return records


def _git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parents[3]
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=root, capture_output=True,
                               text=True, timeout=10).stdout.strip()
        return (commit + ("+dirty" if dirty else "")) or None
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(jobs: int, wall: float, commit: str | None) -> dict:
    """Where and when the results were produced (no host names)."""
    return {"commit": commit, "torch": torch.__version__, "python": platform.python_version(),
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}", "jobs": jobs,
            "wall_seconds": round(wall, 1)}


def summarise(records: list[dict]) -> list[dict]:
    """One row per cell: the chosen learning rate and the mean and spread (sample standard deviation) of the test
    error over the seeds; a seed whose loss diverged counts as failed (no error)."""
    cells: dict[tuple, list[dict]] = {}
    for r in records:
        if r.get("tier") == 1 and r["selected"]:
            cells.setdefault((r["method"], r["target"], r["budget"]), []).append(r)
    rows = []
    for (m, t, b), rs in sorted(cells.items()):
        errs = [r["test_error"] for r in rs if r["test_error"] is not None]
        rows.append({"method": m, "target": t, "budget": b, "params": rs[0]["params"], "hyper": rs[0]["hyper"],
                     "budget_params": rs[0]["budget_params"], "lr": rs[0]["lr"], "seeds": len(rs),
                     "diverged": len(rs) - len(errs),
                     "mean": statistics.fmean(errs) if errs else None,
                     "spread": statistics.stdev(errs) if len(errs) > 1 else 0.0 if errs else None})
    return rows


def summarise2(records: list[dict]) -> list[dict]:
    """Tier 2, one row per (method, budget): mean and spread over seeds of each accuracy and of the forgetting."""
    cells: dict[tuple, list[dict]] = {}
    for r in records:
        if r.get("tier") == 2 and r["selected"]:
            cells.setdefault((r["method"], r["budget"]), []).append(r)
    rows = []
    for (m, b), rs in sorted(cells.items()):
        ok = [r for r in rs if not r["diverged"]]
        row = {"method": m, "budget": b, "params": rs[0]["params"], "hyper": rs[0]["hyper"], "lr": rs[0]["lr"],
               "seeds": len(rs), "diverged": len(rs) - len(ok)}
        for k in ("id", "ood", "source", "forgetting"):
            vals = [r[k] for r in ok]
            row[k] = statistics.fmean(vals) if vals else None
            row[k + "_spread"] = statistics.stdev(vals) if len(vals) > 1 else 0.0 if vals else None
        rows.append(row)
    return rows


def estimate_full_seconds(records: list[dict], cores: int = 2) -> float | None:
    """The full grid's wall time on ``cores`` cores, extrapolated from this run's cells: per method, its mean CPU
    time per cell (the learning-rate search and the seeds; the mean over methods for one this run did not fit) times
    its number of cells in the full grid (budgets that pick the same configuration are fitted once). Counts only the
    cells' own fits, not a shared machine."""
    from adapterspec.registry import available

    cells: dict[tuple, float] = {}
    for r in records:
        if "shared_with" not in r:
            key = (r.get("tier"), r["method"], r.get("target", r.get("task")), r["budget"])
            secs = r.get("cpu_seconds", r["seconds"])  # CPU time where recorded: wall time counts the neighbours
            if r.get("tier") == 1:
                secs *= settings.STEPS / r.get("steps", settings.STEPS)
            cells[key] = cells.get(key, 0.0) + secs
    per: dict[str, list[float]] = {}
    for (tier, method, _, _), secs in cells.items():
        if tier == 1:
            per.setdefault(method, []).append(secs)
    t2 = [secs for key, secs in cells.items() if key[0] == 2]
    if not per:
        return None
    means = {m: statistics.fmean(v) for m, v in per.items()}
    fallback = statistics.fmean(means.values())
    tier1_s = 0.0
    for m in available():
        if budget.applicable(m) is None:
            configs = {c.hyper for c in (budget.choose(m, b, settings.D_IN, settings.D_OUT) for b in settings.BUDGETS)
                       if c is not None}
            tier1_s += means.get(m, fallback) * len(configs) * len(tier1.TARGETS)
    tier2_s = statistics.fmean(t2) * len(available()) * len(settings.TIER2_BUDGETS) if t2 else 0.0
    return (tier1_s + tier2_s) / cores


def run(p: Plan, jobs: int = 1, progress: Callable[[str], None] = print, checkpoint: Path | None = None) -> dict:
    """Run the plan; returns the results document (records, summary, skipped methods, settings, provenance).

    With ``checkpoint``, every finished cell's records are appended to that file (one JSON line per cell) as they
    come, and cells already in it are not run again: an interrupted run continues where it stopped.
    """
    start = time.perf_counter()
    torch.set_num_threads(1)  # small matrices: a second thread only spins (each worker process is one thread too)
    commit = _git_commit()  # the code the fits ran, read before they start
    skipped: dict[str, str] = {}
    cells: list[Cell] = []
    for m in p.methods if 1 in p.tiers else ():
        why = budget.applicable(m)
        if why:
            skipped[m] = f"not applicable to tier 1: {why}"
            continue
        for b in p.budgets:
            choice = budget.choose(m, b, p.d_in, p.d_out)
            if choice is None:
                skipped[m] = "its constructor refuses every capacity value on this layer"
                break
            cells += [Cell(m, t, b, choice.kwargs, choice.params) for t in p.targets]
    cells2: list[Cell] = []
    skipped2: dict[str, str] = {}
    if 2 in p.tiers:
        from adapterspec.arena import tier2

        progress(f"arena: tier 2: pretraining the source model ({p.t2_pretrain} steps)")
        ref = tier2.reference(p.t2_pretrain)  # before the pool starts: forked workers inherit the trained model
        progress(f"arena: tier 2: source accuracy {ref['source']:.3f} (MAX), {ref['first']:.3f} (FIRST)")
        base = tier2.source_model(p.t2_pretrain)
        for m in p.t2_methods:
            for b in p.t2_budgets:
                choice = tier2.choose(m, b, base)
                if choice is None:
                    skipped2[m] = "its constructor refuses every capacity value on the tiny model's modules"
                    break
                cells2.append(Cell(m, "min", b, choice.kwargs, choice.params))
    for m, why in skipped.items():
        progress(f"arena: {m}: {why}")
    for m, why in skipped2.items():
        progress(f"arena: tier 2: {m}: {why}")
    progress(f"arena: tier 1: {len(cells)} cells, tier 2: {len(cells2)} cells (each: 3 or more learning rates on seed "
             f"{p.seeds[0]}, then {len(p.seeds) - 1} more seeds); {jobs} worker(s)")
    records: list[dict] = []
    done = 0

    finished: dict[tuple, list[dict]] = {}
    if checkpoint is not None and checkpoint.exists():
        for line in checkpoint.read_text(encoding="utf-8").splitlines():
            recs = json.loads(line)
            finished[(recs[0]["tier"], recs[0]["method"], recs[0].get("target", "min"), recs[0]["budget"])] = recs
        progress(f"arena: {len(finished)} cells already done in {checkpoint}")

    def save(recs: list[dict]) -> None:
        if checkpoint is not None:
            with checkpoint.open("a", encoding="utf-8") as f:
                f.write(json.dumps(recs, allow_nan=False) + "\n")

    def report(cell: Cell, recs: list[dict]) -> None:
        nonlocal done
        done += 1
        recs = _for_budgets(cell, [{**r, "steps": p.steps} for r in recs], p.d_in, p.d_out)
        save(recs)
        records.extend(recs)
        errs = [r["test_error"] for r in recs if r["selected"] and r["test_error"] is not None]
        shown = f"{statistics.fmean(errs):.3f}" if errs else "diverged"
        hyper = ", ".join(f"{k}={v}" for k, v in cell.hyper.items()) or "fixed"
        lr = next(r["lr"] for r in recs if r["selected"])
        secs = sum(r["seconds"] for r in recs)
        progress(f"[{done:>4}/{total}] {cell.method:<10} {cell.target:<16} {100 * cell.budget:>4.1f}%  "
                 f"{hyper:<12} {cell.params:>7} params  lr {lr:g}  error {shown}  ({secs:.1f} s)")

    def report2(cell: Cell, recs: list[dict]) -> None:
        nonlocal done
        done += 1
        recs = _for_budgets(cell, recs)
        save(recs)
        records.extend(recs)
        sel = [r for r in recs if r["selected"] and not r["diverged"]]
        shown = (f"MIN {statistics.fmean(r['id'] for r in sel):.3f} in distribution, "
                 f"{statistics.fmean(r['ood'] for r in sel):.3f} longer, MAX kept "
                 f"{statistics.fmean(r['source'] for r in sel):.3f}") if sel else "diverged"
        hyper = ", ".join(f"{k}={v}" for k, v in cell.hyper.items()) or "fixed"
        progress(f"[{done:>4}/{total}] tier 2 {cell.method:<10} {100 * cell.budget:>4.1f}%  {hyper:<12} "
                 f"{cell.params:>7} params  {shown}  ({sum(r['seconds'] for r in recs):.1f} s)")

    cells, cells2 = _dedupe(cells), _dedupe(cells2)
    for c in list(cells):
        if (1, c.method, c.target, c.budget) in finished:
            records.extend(finished[(1, c.method, c.target, c.budget)])
            cells.remove(c)
    for c in list(cells2):
        if (2, c.method, "min", c.budget) in finished:
            records.extend(finished[(2, c.method, "min", c.budget)])
            cells2.remove(c)
    total = len(cells) + len(cells2)
    if jobs <= 1:
        for c in cells2:
            report2(c, run_cell2(p, c.method, c.budget, c.hyper))
        for c in cells:
            report(c, run_cell(p, c.method, c.target, c.budget, c.hyper))
    else:
        with ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker) as pool:
            futures = {pool.submit(run_cell2, p, c.method, c.budget, c.hyper): (2, c) for c in cells2}
            futures |= {pool.submit(run_cell, p, c.method, c.target, c.budget, c.hyper): (1, c) for c in cells}
            for f in as_completed(futures):
                tier, c = futures[f]
                (report2 if tier == 2 else report)(c, f.result())
    records.sort(key=lambda r: (r["tier"], r["method"], r.get("target", r.get("task")), r["budget"], r["seed"],
                                r["lr"]))
    wall = time.perf_counter() - start
    doc = {"format": FORMAT, "provenance": provenance(jobs, wall, commit), "settings": p.settings(),
           "targets": {t: tier1.TARGETS[t] for t in p.targets} if 1 in p.tiers else {}, "skipped": skipped,
           "target_facts": tier1.facts(p.d_in, p.d_out, p.targets) if 1 in p.tiers else {},
           "records": records, "summary": summarise(records)}
    if 2 in p.tiers:
        from adapterspec.arena import tier2

        doc["tier2"] = {"reference": tier2.reference(p.t2_pretrain), "skipped": skipped2,
                        "summary": summarise2(records)}
    est = None if p.quick else estimate_full_seconds(records)
    doc["provenance"]["estimated_full_run_seconds_2_cores"] = None if est is None else round(est)
    return doc


def write(doc: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")


def merge(old: dict, new: dict) -> dict:
    """``new`` over ``old``: cells ``new`` ran replace the same cells of ``old`` (a partial rerun)."""
    if old.get("format") != FORMAT or old.get("settings", {}).get("quick") != new["settings"]["quick"]:
        return new
    key = lambda r: (r.get("tier", 1), r["method"], r.get("target", r.get("task")), r["budget"])  # noqa: E731
    ran = {key(r) for r in new["records"]}
    kept = [r for r in old["records"] if key(r) not in ran]
    records = kept + new["records"]
    out = dict(new)
    out["records"] = records
    out["summary"] = summarise(records)
    # a method this run tried is skipped only if this run skipped it (a fixed method leaves the list)
    tried1 = set(new["settings"]["methods"]) if 1 in new["settings"].get("tiers", (1,)) else set()
    tried2 = set(new["settings"].get("t2_methods", ())) if 2 in new["settings"].get("tiers", (2,)) else set()
    if "tier2" in old or "tier2" in new:
        t2 = {**old.get("tier2", {}), **new.get("tier2", {})}
        old2 = {m: why for m, why in old.get("tier2", {}).get("skipped", {}).items() if m not in tried2}
        t2["skipped"] = {**old2, **new.get("tier2", {}).get("skipped", {})}
        t2["summary"] = summarise2(records)
        out["tier2"] = t2
    out["skipped"] = {**{m: why for m, why in old.get("skipped", {}).items() if m not in tried1}, **new["skipped"]}
    out["targets"] = {**old.get("targets", {}), **new["targets"]}
    out["target_facts"] = {**old.get("target_facts", {}), **new["target_facts"]}
    s = dict(new["settings"])
    for k in ("methods", "targets", "budgets"):
        s[k] = sorted(set(old["settings"].get(k, ())) | set(new["settings"][k]), key=str)
    out["settings"] = s
    out["provenance"] = {**new["provenance"], "merged_with": old.get("provenance")}
    return out


def fmt_seconds(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "unknown"
    return f"{s / 60:.0f} min" if s >= 90 else f"{s:.0f} s"


def main_progress(line: str) -> None:
    print(line, flush=True, file=sys.stdout)
