"""What each entry predicts about tier 1, derived from its data (themes and checked properties), and where the
results disagree. The rules are written here once and printed on the arena page (`RULES`).

Two kinds of prediction:

* **cannot fit** follows from a property the build has checked numerically. A declared rank bound ``k`` (evaluated
  at the hyperparameters the budget chose) limits the error to at least ``floor[k]``, the best any rank-``k`` update
  can do on that target (stored with the results, `tier1.facts`); when that floor is above `settings.FIT` the method
  cannot fit the target at that budget. A declared invariant (``preserves_neuron_gram``: ``W'W'ᵀ = W0W0ᵀ``;
  ``preserves_input_gram``: ``W'ᵀW' = W0ᵀW0``) rules out every target that breaks it.
* **should fit** follows from the entry's themes: each theme names the structure its hypothesis is about
  (`THEME_TARGETS`). A "should" is dropped where a "cannot" applies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from adapterspec.arena import settings

# The structures each theme's hypothesis is about (a theme missing here predicts nothing on its own).
THEME_TARGETS: dict[str, tuple[str, ...]] = {
    "low-rank": ("low-rank", "top-subspace"),
    "svd-aligned": ("top-subspace",),
    "orthogonal": ("input-rotation", "output-rotation"),
    "direction-strength": ("output-gain",),
    "gain-control": ("output-gain", "input-gain"),
    "random-basis": ("low-rank",),
    "spectral": ("block-circulant",),
    "structured-product": ("kronecker", "hadamard"),
    "sparse": ("sparse",),
}
ORTHOGONAL_SIDE = {"input": "input-rotation", "output": "output-rotation"}

RULES = [
    "A method **should fit** the targets its themes are about: " + "; ".join(
        f"{theme} → {', '.join(ts)}" for theme, ts in THEME_TARGETS.items())
    + ". An entry that declares its rotation's side (`properties.orthogonal`) predicts only that side's rotation.",
    "A method **cannot fit** a target when its declared rank bound, evaluated at the hyperparameters chosen for the "
    f"budget, leaves a best possible error above {settings.FIT} on it at every budget (the best rank-k error is "
    "computed from the target: Eckart–Young on ΔW* L).",
    "A method **cannot fit** a target that breaks an invariant it declares: `preserves_neuron_gram` "
    "(W'W'ᵀ = W0W0ᵀ) "
    "or `preserves_input_gram` (W'ᵀW' = W0ᵀW0); whether each target keeps them is measured.",
    f"The result is the lowest mean test error over the budgets at or under {settings.OVER_BUDGET:g}× the budget. "
    f"It **fits** at or below {settings.FIT}; it **disagrees** with a *should fit* above {settings.FIT}, and with a "
    f"*cannot fit* at or below {settings.FIT}, or (for a rank bound) more than 0.02 below the computed floor.",
]


@dataclass
class Row:
    target: str
    expect: str | None  # "fit", "cannot" or None
    why: str
    best: float | None  # lowest in-budget mean error
    budget: float | None
    floor: float | None = None
    verdict: str = ""  # "agree", "disagree", "unpredicted fit", ""


@dataclass
class MethodPrediction:
    method: str
    themes: list[str]
    rows: list[Row] = field(default_factory=list)

    @property
    def disagreements(self) -> list[Row]:
        return [r for r in self.rows if r.verdict == "disagree"]

    @property
    def surprises(self) -> list[Row]:
        return [r for r in self.rows if r.verdict == "unpredicted fit"]


def _rank_bound(entry, slug: str, hyper: dict, d_in: int, d_out: int) -> float | None:
    """The entry's declared rank bound at these hyperparameters (names a formula needs that are not plain
    hyperparameters, e.g. LoKr's derived ``u_p``, are read from the module built with them)."""
    from adapterspec.catalog.formula import FormulaError, evaluate_formula
    from adapterspec.registry import create, hyperparameters

    expr = entry.properties.rank_bound
    if expr is None:
        return None
    names = {**hyperparameters(slug), **hyper, "d_in": d_in, "d_out": d_out}
    try:
        return evaluate_formula(expr, names)
    except FormulaError:
        import torch

        with torch.random.fork_rng(devices=[]):
            module = create(slug, torch.nn.Linear(d_in, d_out, bias=False), **hyper)
        for k, v in list(names.items()):
            if v is None and isinstance(getattr(module, k, None), int):
                names[k] = getattr(module, k)
        try:
            return evaluate_formula(expr, names)
        except FormulaError:
            return None


def predict(catalog, doc: dict) -> list[MethodPrediction]:
    """Per method in the results: per target, the prediction, the result and whether they agree."""
    s = doc["settings"]
    d_in, d_out = s["d_in"], s["d_out"]
    facts = doc.get("target_facts", {})
    by_module = {it.entry.module_slug: it.entry for it in catalog}
    rows = doc["summary"]
    out = []
    for method in sorted({r["method"] for r in rows}):
        entry = by_module.get(method)
        themes = list(entry.themes) if entry else []
        mp = MethodPrediction(method, themes)
        targets = [t for t in doc["targets"] if any(r["method"] == method and r["target"] == t for r in rows)]
        for t in targets:
            cells = [r for r in rows if r["method"] == method and r["target"] == t]
            fair = [r for r in cells if r["mean"] is not None
                    and r["params"] <= settings.OVER_BUDGET * r["budget_params"]]
            best = min(fair, key=lambda r: r["mean"]) if fair else None
            fact = facts.get(t, {})
            expect, why, floor = None, "", None
            should = {x for th in themes for x in THEME_TARGETS.get(th, ())}
            if entry and entry.properties.orthogonal and "orthogonal" in themes:
                # a rotation inside a subspace (PSOFT) turns W0's top singular subspace
                declared = {ORTHOGONAL_SIDE.get(o.side, "top-subspace") for o in entry.properties.orthogonal}
                should = (should - set(ORTHOGONAL_SIDE.values())) | declared
            if t in should:
                expect = "fit"
                why = "themes: " + ", ".join(th for th in themes if t in THEME_TARGETS.get(th, ()) or
                                             (th == "orthogonal" and t in ORTHOGONAL_SIDE.values()))
            if entry and fact:
                p = entry.properties
                if p.preserves_neuron_gram and not fact.get("neuron_gram"):
                    expect, why = "cannot", "declares W'W'ᵀ = W0W0ᵀ; the target changes it"
                elif p.preserves_input_gram and not fact.get("input_gram"):
                    expect, why = "cannot", "declares W'ᵀW' = W0ᵀW0; the target changes it"
                elif p.rank_bound is not None and cells:
                    floors = []
                    for r in cells:
                        k = _rank_bound(entry, method, r["hyper"], d_in, d_out)
                        if k is not None:
                            f = fact["floor"][min(int(k), len(fact["floor"]) - 1)]
                            floors.append((r["budget"], k, f))
                    if floors and all(f > settings.FIT for _, _, f in floors):
                        b_, k, floor = min(floors, key=lambda x: x[2])
                        expect, why = "cannot", f"rank ≤ {k:g} (at {100 * b_:g}%): best possible error {floor:.2f}"
                    elif best is not None and floors:
                        floor = next((f for b_, _, f in floors if b_ == best["budget"]), None)
            row = Row(t, expect, why, best["mean"] if best else None, best["budget"] if best else None, floor)
            if row.best is not None:
                fits = row.best <= settings.FIT
                if expect == "fit":
                    row.verdict = "agree" if fits else "disagree"
                elif expect == "cannot":
                    below = floor is not None and row.best < floor - 0.02
                    row.verdict = "disagree" if fits or below else "agree"
                elif fits:
                    row.verdict = "unpredicted fit"
            mp.rows.append(row)
        out.append(mp)
    return out
