"""The arena: budget matching, the fit and its metric, the quick run, the committed results and the two pages."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

import adapterspec
from adapterspec.arena import budget, figures, findings, pages, predict, runner, settings, tier1, tier2
from conftest import ROOT

RESULTS = ROOT / pages.RESULTS


@pytest.fixture(scope="module")
def quick():
    """One ``--quick`` run (the same code as ``adapterspec arena --quick``), in process."""
    torch.set_num_threads(1)
    return runner.run(runner.plan(quick=True), jobs=1, progress=lambda line: None)


@pytest.fixture(scope="module")
def committed() -> dict:
    assert RESULTS.exists(), f"{pages.RESULTS} is missing: run `adapterspec arena` and commit the results"
    return json.loads(RESULTS.read_text(encoding="utf-8"))


# -- the quick run ---------------------------------------------------------------------------------------------------
def test_quick_run_records_every_fit_with_provenance(quick):
    p = runner.plan(quick=True)
    fits = len(p.methods) * len(p.targets) * len(p.budgets) * (len(p.lr_grid) + len(p.seeds) - 1)
    assert len([r for r in quick["records"] if r["tier"] == 1]) == fits
    for r in quick["records"]:
        if r["tier"] != 1:
            continue
        assert {"method", "target", "budget", "params", "seed", "lr", "val_error", "test_error", "hyper"} <= set(r)
        assert r["params"] == adapterspec.create(r["method"], torch.nn.Linear(p.d_in, p.d_out),
                                                 **r["hyper"]).num_trainable()
    prov = quick["provenance"]
    assert prov["torch"] == torch.__version__ and prov["date"] and prov["machine"]
    assert len(quick["summary"]) == len(p.methods) * len(p.targets) * len(p.budgets)
    assert set(quick["target_facts"]) == set(p.targets)


def test_quick_run_is_deterministic_for_a_seed(quick):
    """Rerunning one cell in a fresh call gives the same numbers, bit for bit."""
    first = next(r for r in quick["records"] if r["tier"] == 1)
    p = runner.plan(quick=True)
    again = runner.run_cell(p, first["method"], first["target"], first["budget"], first["hyper"])
    assert [r["test_error"] for r in again] == [r["test_error"] for r in quick["records"] if r["tier"] == 1
                                                and (r["method"], r["target"]) == (first["method"], first["target"])]


def test_quick_run_has_tier2_records(quick):
    p = runner.plan(quick=True)
    rows = quick["tier2"]["summary"]
    assert {r["method"] for r in rows} == set(p.t2_methods)
    for r in rows:
        assert 0 <= r["id"] <= 1 and 0 <= r["ood"] <= 1 and r["forgetting"] is not None
    assert 0 <= quick["tier2"]["reference"]["source"] <= 1


# -- tier 2's tasks and wiring -----------------------------------------------------------------------------------------
def test_tier2_answers_are_right_and_uniform_at_every_length():
    g = torch.Generator().manual_seed(0)
    for query, f in ((tier2.MAX, lambda v: v.max(1).values), (tier2.MIN, lambda v: v.min(1).values),
                     (tier2.FIRST, lambda v: v[:, 0])):
        for lengths in (tier2.ID_LENGTHS, tier2.OOD_LENGTHS):
            tokens, mask = tier2.batch(query, lengths, 4000, g)
            values = tokens[:, :-2]
            assert torch.equal(tokens[:, -1], f(values)) and (tokens[:, -2] == query).all()
            assert mask[:, -1].all() and not mask[:, :-1].any()
            counts = torch.bincount(tokens[:, -1], minlength=tier2.K).float()
            assert counts.min() > 0.6 * counts.mean(), (query, lengths)  # long sequences are not easier


def test_tier2_wraps_the_attention_query_and_value_projections():
    from adapterspec.tiny import TinyConfig, TinyTransformer

    model = tier2.attach(TinyTransformer(TinyConfig(**tier2.CONFIG)), "lora", {"r": 2})
    wrapped = [n for n, m in model.named_modules() if isinstance(m, adapterspec.Adapter)]
    assert wrapped == [f"blocks.{i}.attn.{p}" for i in range(tier2.CONFIG["n_layers"]) for p in ("q_proj", "v_proj")]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == len(wrapped) * 2 * (2 * tier2.CONFIG["d_model"])


# -- the metric and sanity checks that can fail ----------------------------------------------------------------------
D_IN, D_OUT = 48, 32


def test_leaving_W0_alone_scores_one():
    W0, _ = tier1.layer(D_IN, D_OUT)
    lora = adapterspec.create("lora", torch.nn.Linear(D_IN, D_OUT, bias=False), r=2)  # B = 0: W' = W0 at init
    with torch.no_grad():
        lora.base.weight.copy_(W0.float())
    X = tier1._data(D_IN, D_OUT, 0)["test"]
    for target in ("low-rank", "input-rotation", "dense"):
        W_star = tier1.target_weight(target, D_IN, D_OUT, 0).float()
        assert tier1.relative_error(lora, X, W_star, W0.float()) == pytest.approx(1.0, abs=1e-5)


def test_targets_have_the_same_relative_size_and_their_structure():
    W0, L = tier1.layer(D_IN, D_OUT)
    facts = tier1.facts(D_IN, D_OUT, tuple(tier1.TARGETS))
    for name in tier1.TARGETS:
        delta = tier1.target_weight(name, D_IN, D_OUT, 1) - W0
        size = float(torch.linalg.matrix_norm(delta @ L) / torch.linalg.matrix_norm(W0 @ L))
        assert size == pytest.approx(settings.RELATIVE_SIZE, rel=1e-6), name
    assert facts["low-rank"]["rank"] == tier1.LOW_RANK
    assert facts["top-subspace"]["rank"] == tier1.TOP_K
    assert facts["input-rotation"]["neuron_gram"] and not facts["input-rotation"]["input_gram"]
    assert facts["output-rotation"]["input_gram"] and not facts["output-rotation"]["neuron_gram"]
    assert facts["dense"]["rank"] == min(D_IN, D_OUT)


def test_a_method_whose_parameterisation_contains_the_target_fits_it():
    """LoRA at rank ≥ the target's rank reaches near-zero error; (IA)³ fits a per-output gain."""
    r = tier1.fit("lora", {"r": tier1.LOW_RANK + 2}, "low-rank", 0, 1e-2, 400, D_IN, D_OUT)
    assert r["test_error"] < 0.05, r
    r = tier1.fit("ia3", {}, "output-gain", 0, 3e-2, 400, D_IN, D_OUT)
    assert r["test_error"] < 0.05, r


def test_a_method_cannot_beat_its_rank_floor():
    """Rank 1 cannot fit a rank-4 change: the error stays at or above the Eckart–Young floor (so the metric and the
    floor are consistent; a bug in either shows up here)."""
    floor = tier1.facts(D_IN, D_OUT, ("low-rank",))["low-rank"]["floor"][1]
    r = tier1.fit("lora", {"r": 1}, "low-rank", 0, 1e-2, 300, D_IN, D_OUT)
    assert floor > 0.3 and r["test_error"] >= floor - 0.05, (floor, r)


# -- budgets ---------------------------------------------------------------------------------------------------------
def test_budget_choice_is_the_closest_real_count():
    d_in, d_out = 128, 64
    choice = budget.choose("lora", 0.05, d_in, d_out)
    assert choice.kwargs == {"r": 2} and choice.params == 2 * (d_in + d_out)  # 384 ≈ 5% of 8192 (410)
    assert budget.choose("ia3", 0.05, d_in, d_out).hyper == ()  # fixed count: nothing to turn
    values = [v for v, _ in budget.counts("oft", d_in, d_out)]
    assert values and all(d_in % v == 0 for v in values)  # values OFT's constructor refuses are skipped


def test_every_method_has_a_capacity_that_names_a_hyperparameter():
    for slug in adapterspec.available():
        cap = adapterspec.adapter_class(slug).capacity
        assert cap is None or cap in adapterspec.hyperparameters(slug), slug


def test_every_method_that_wraps_a_linear_builds_at_every_budget():
    """A method is left out of tier 1 only for its base type, never because no capacity value builds (SVFT's capacity
    ``d`` once needed a non-default pattern; VB-LoRA's default sub-vector length does not divide the tiny model)."""
    for slug in adapterspec.available():
        if budget.applicable(slug) is None:
            for b in settings.BUDGETS:
                assert budget.choose(slug, b, settings.D_IN, settings.D_OUT) is not None, (slug, b)
    base = tier2.source_model(40)  # the modules' shapes are what matter, not the training
    for slug in adapterspec.available():
        for f in settings.TIER2_BUDGETS:
            assert tier2.choose(slug, f, base) is not None, (slug, f)


def test_a_capacity_reaches_the_budget_when_the_method_can_grow():
    """Where the count grows with the capacity (Poly's rank, VB-LoRA's bank), the 2% budget is met within 1.5×."""
    goal = 0.02 * settings.D_IN * settings.D_OUT
    for slug in ("lora", "poly", "vblora", "svft", "c3a", "oft"):
        n = budget.choose(slug, 0.02, settings.D_IN, settings.D_OUT).params
        assert goal / 1.5 <= n <= 1.5 * goal, (slug, n, goal)


def test_learning_rate_search_goes_outwards_only_while_the_best_is_at_an_end():
    grid = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)

    def search(best_lr, diverge_above=None):
        tried = []

        def fit(lr):
            tried.append(lr)
            return {"err": None if diverge_above and lr > diverge_above else abs(math.log10(lr / best_lr))}
        chosen = min((f for f in runner.search_lr(grid, fit, lambda f: f["err"]) if f["err"] is not None),
                     key=lambda f: f["err"])["lr"]
        return chosen, tried

    assert search(1e-2) == (1e-2, [1e-3, 1e-2, 1e-1])  # best inside the middle three: nothing more
    assert search(1.0) == (1.0, [1e-3, 1e-2, 1e-1, 1.0])  # best at the top: one more, then the grid ends
    assert search(1e-4) == (1e-4, [1e-3, 1e-2, 1e-1, 1e-4])
    assert search(1e-2, diverge_above=1e-3)[1] == [1e-3, 1e-2, 1e-1, 1e-4]  # only the smallest ran: go lower


def test_merge_replaces_rerun_cells_and_forgets_fixed_skips():
    def rec(method, target, err, tier=1):
        return {"tier": tier, "method": method, "target": target, "budget": 0.02, "budget_params": 100, "params": 100,
                "hyper": {}, "seed": 0, "lr": 0.01, "val_error": err, "test_error": err, "selected": True}

    settings_ = {"methods": ["lora", "svft"], "targets": ["dense"], "budgets": [0.02], "quick": False, "tiers": [1],
                 "t2_methods": []}
    old = {"format": runner.FORMAT, "settings": settings_, "provenance": {"commit": "a"},
           "records": [rec("lora", "dense", 0.5), rec("lora", "sparse", 0.7)], "skipped": {"svft": "refused"},
           "targets": {}, "target_facts": {}}
    new = {"format": runner.FORMAT, "settings": {**settings_, "methods": ["lora", "svft"]},
           "provenance": {"commit": "b"}, "records": [rec("lora", "dense", 0.4), rec("svft", "dense", 0.3)],
           "skipped": {}, "targets": {}, "target_facts": {}}
    out = runner.merge(old, new)
    errors = {(r["method"], r["target"]): r["test_error"] for r in out["records"]}
    assert errors == {("lora", "dense"): 0.4, ("lora", "sparse"): 0.7, ("svft", "dense"): 0.3}
    assert out["skipped"] == {}  # svft ran this time
    assert out["provenance"]["commit"] == "b" and out["provenance"]["merged_with"]["commit"] == "a"
    lora_only = {**new, "settings": {**settings_, "methods": ["lora"]}, "records": [rec("lora", "dense", 0.4)]}
    kept = runner.merge(old, lora_only)
    assert kept["skipped"] == {"svft": "refused"}  # not rerun: its reason stays


def test_methods_that_do_not_wrap_a_linear_are_not_applicable():
    assert budget.applicable("lora") is None
    assert "LayerNorm" in budget.applicable("ln-tuning")


# -- the committed results and figure ---------------------------------------------------------------------------------
def test_committed_results_cover_every_method_in_the_catalog(committed, catalog):
    ran = {r["method"] for r in committed["summary"]} | set(committed["skipped"])
    in_catalog = set(adapterspec.available()) | {it.entry.module_slug for it in catalog}
    missing = sorted(in_catalog - ran)
    assert not missing, (f"{pages.RESULTS} has no results for {', '.join(missing)}: run "
                         f"`adapterspec arena --methods {' '.join(missing)} --merge` and commit the file")
    refused = {m: why for m, why in committed["skipped"].items() if not why.startswith("not applicable")}
    refused |= committed.get("tier2", {}).get("skipped", {})
    assert not refused, f"{pages.RESULTS} left out methods that can run: {refused}"


def test_committed_heatmap_is_generated_from_the_committed_results(committed):
    svg = (ROOT / pages.HEATMAP).read_text(encoding="utf-8")
    assert svg == figures.heatmap_svg(committed), "rerun `adapterspec arena` (the figure is out of date)"
    assert 'role="img"' in svg and "<title>" in svg and "currentColor" in svg


# -- verdict rules ----------------------------------------------------------------------------------------------------
def _doc(errors: dict[str, float], spread: float = 0.01) -> dict:
    rows = [{"method": m, "target": "dense", "budget": 0.02, "params": 100, "budget_params": 100, "hyper": {},
             "lr": 0.01, "seeds": 3, "diverged": 0, "mean": e, "spread": spread} for m, e in errors.items()]
    return {"summary": rows, "records": [], "settings": {"seeds": [0, 1, 2]},
            "target_facts": {"dense": {"rank": 8, "full_rank": 8}}}


def test_tier1_verdicts_follow_the_results():
    claim = findings.CLAIMS[0]
    win = findings.tier1_source(claim, ["a"], ["b"], _doc({"a": 0.1, "b": 0.5}))
    lose = findings.tier1_source(claim, ["a"], ["b"], _doc({"a": 0.5, "b": 0.1}))
    tie = findings.tier1_source(claim, ["a"], ["b"], _doc({"a": 0.30, "b": 0.31}, spread=0.05))
    assert (win.verdict, lose.verdict, tie.verdict) == (findings.SUPPORTED, findings.CONTRADICTED, findings.MIXED)
    assert findings.tier1_source(claim, ["a"], ["c"], _doc({"a": 0.1})).verdict == findings.NOT_TESTED


def test_sources_combine_into_one_verdict():
    S, M, C, N = findings.SUPPORTED, findings.MIXED, findings.CONTRADICTED, findings.NOT_TESTED
    assert findings.combine([S, N, S]) == S
    assert findings.combine([C, C, N]) == C
    assert findings.combine([S, C]) == M
    assert findings.combine([N, N]) == N


def test_predictions_come_from_declared_properties(catalog):
    doc = {"settings": {"d_in": 512, "d_out": 256},
           "targets": {"output-gain": "", "low-rank": ""},
           "target_facts": {"output-gain": {"rank": 256, "neuron_gram": False, "input_gram": False,
                                            "floor": [1.0] + [0.9] * 256},
                            "low-rank": {"rank": 4, "neuron_gram": False, "input_gram": False,
                                         "floor": [1.0, 0.8, 0.6, 0.4] + [0.0] * 253}},
           "summary": [{"method": m, "target": t, "budget": 0.02, "params": 1, "budget_params": 1,
                        "hyper": h, "mean": e, "spread": 0.0}
                       for m, t, h, e in (("oft", "output-gain", {"r": 64}, 0.05), ("lora", "low-rank", {"r": 1}, 0.9),
                                          ("lora", "output-gain", {"r": 1}, 0.95))]}
    by = {p.method: {r.target: r for r in p.rows} for p in predict.predict(catalog, doc)}
    oft = by["oft"]["output-gain"]
    assert oft.expect == "cannot" and oft.verdict == "disagree"  # declares W'W'ᵀ = W0W0ᵀ, a gain changes it
    lora = by["lora"]["low-rank"]
    assert lora.expect == "cannot" and "rank ≤ 1" in lora.why and lora.verdict == "agree"


# -- the pages -------------------------------------------------------------------------------------------------------
def test_pages_render_from_the_committed_results(catalog):
    from adapterspec.catalog.benchmark import Benchmark
    from adapterspec.catalog.render import Fragments

    fa, ff = Fragments("arena.md"), Fragments("findings.md")
    arena = pages.arena_page(ROOT, catalog, fa)
    found = pages.findings_page(ROOT, catalog, Benchmark(ROOT.parent / "shared" / "sources" /
                                                         "peft_method_comparison"), ff)
    assert "Where these results come from" in arena and "Predictions against results" in arena
    assert any("<svg" in h for h in fa.html.values())
    for c in findings.CLAIMS:
        assert f"Claim {c.n}: {c.title}" in found
    assert "adapters_as_hypotheses" in found and "typed by hand" in found
    tree = next(h for h in ff.html.values() if "arena-argmap" in h)
    assert "hand-typed credence 0.85" in tree and "claim 1:" in tree


def test_argument_map_is_in_our_own_words():
    """No run of eight words of the argument map's text is copied from the earlier catalog's file."""
    import yaml

    source = ROOT.parent / "shared" / "sources" / "argument_map.argdown"
    if not source.exists():
        pytest.skip("the earlier catalog's argument map is not beside the project")
    words = lambda s: re.findall(r"[a-z0-9]+", s.lower())  # noqa: E731
    theirs = words(source.read_text(encoding="utf-8"))
    shingles = {tuple(theirs[i:i + 8]) for i in range(len(theirs) - 7)}
    data = yaml.safe_load((ROOT / pages.ARGUMENT_MAP).read_text(encoding="utf-8"))
    nodes = [data["thesis"], *data["arguments"]]
    nodes += [k for n in data["arguments"] for k in n.get("children", [])]
    for node in nodes:
        ours = words(node["text"])
        copied = [" ".join(ours[i:i + 8]) for i in range(len(ours) - 7) if tuple(ours[i:i + 8]) in shingles]
        assert not copied, (node["id"], copied)
