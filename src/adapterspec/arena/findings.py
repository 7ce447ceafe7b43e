"""The five claims of the earlier catalog, each given a verdict computed from the evidence (never typed).

A claim compares two families of methods, named by theme (`Claim.a`, `Claim.b`); a method in neither family is not
counted for that claim. Each source of evidence gives its own verdict by a rule written here (`SOURCE_RULES`, printed
on the findings page), and the claim's verdict combines them (`combine`):

* **papers**: the entries' evidence items (checked quotes), by the share of each family's entries that claim the
  claim's grade dimension;
* **peft benchmark**: the independent MetaMathQA → GSM8K runs the entries list, by each family's median best
  accuracy;
* **arena tier 1**: the one-layer fits, method against method at matched budgets, ties inside the seed spread;
* **arena tier 2**: the small transformer under shift (not tested until that tier has results).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from adapterspec.arena import settings
from adapterspec.catalog.benchmark import LORA_BASELINE, Benchmark, compare
from adapterspec.catalog.grade import RUBRIC

SUPPORTED, MIXED, CONTRADICTED, NOT_TESTED = "supported", "mixed", "contradicted", "not tested"
# Themes whose methods can make a full-rank update; a member must also have no low-rank theme and no rank bound.
FULL_RANK_THEMES = ("spectral", "structured-product", "sparse", "random-basis", "sharing")


@dataclass(frozen=True)
class Claim:
    n: int
    key: str
    title: str
    sentence: str  # the claim in one sentence (ours)
    a: tuple[str, ...]  # themes of the family the claim favours
    b: tuple[str, ...]  # themes of the family it is compared with ("" members of a are removed)
    dimension: str  # the grade dimension that is the papers' version of the claim
    tier1: str  # "error", "lr-sensitivity", "full-rank-error" or "" (not tested by tier 1, `tier1_note` says why)
    kind: str = "compare"  # "compare": a beats b; "share": a recovers most of what b does
    tier1_note: str = ""
    a_full_rank: bool = False  # family a: members of FULL_RANK_THEMES with no low-rank theme and no rank bound


CLAIMS = (
    Claim(1, "svd-basis", "The SVD as the coordinate system",
          "Adapting in the pretrained weight's own singular vectors beats adapting in a random basis with the same "
          "number of trainable parameters.", ("svd-aligned",), ("random-basis",), "BL", "error"),
    Claim(2, "orthogonal", "Orthogonal constraints",
          "Rotating what a layer computes, rather than adding an unconstrained update, keeps the model's structure "
          "and transfers better, at the price of not changing magnitudes.", ("orthogonal",), ("low-rank",), "OOD",
          "error"),
    Claim(3, "decoupling", "Direction and strength decoupled",
          "Learning the direction and the strength of a weight change separately makes fine-tuning more robust.",
          ("direction-strength",), ("low-rank",), "OOD", "lr-sensitivity"),
    Claim(4, "full-rank", "Low rank is not enough",
          "A low-rank update is not enough for hard adaptations: methods whose update can be full rank close the gap "
          "to full fine-tuning.", (), ("low-rank",), "BF", "full-rank-error", a_full_rank=True),
    Claim(5, "gain", "Scaling alone goes far",
          "Re-weighting the features a model already computes accounts for much of adaptation.",
          ("gain-control",), ("low-rank",), "PE", "", kind="share",
          tier1_note="tier 1's targets are built one structure at a time, so the share of them that gains can fit "
          "says nothing about how much of a real adaptation is re-weighting (the heatmap shows which structures gain "
          "methods fit); tier 2 tests the claim"),
)

SOURCE_RULES = {
    "papers": "For each family, the share of its graded entries with an evidence item (a checked quote) for the "
              "claim's grade dimension; not tested when no entry of either family has such evidence. *Compare* "
              "claims: supported if the favoured family's share exceeds the other's by 0.25 or more, contradicted "
              "if it falls short by 0.25 or more, mixed otherwise. *Share* claims (5): supported if at least half "
              "the family's graded entries claim it, mixed otherwise. Not "
              "tested if a family has no graded entry. Each paper measures its method against its own baselines, "
              "not against the other family.",
    "benchmark": "peft's benchmark (one run per configuration, parameter counts not matched): each entry's best "
                 "successful run. *Compare* claims: the difference of the two families' median best accuracy; "
                 "supported at +1 percentage point or more, contradicted at −1 or less, mixed in between. *Share* "
                 "claims: the family's best accuracy over LoRA rank 32's; supported at 0.9 or more, contradicted at "
                 "0.5 or less, mixed in between. Not tested if a family has no run.",
    "tier1": "Every pair of one method from each family on every cell (target, budget) where both ran within "
             f"{settings.OVER_BUDGET:g}× the budget: a win when the favoured method's mean test error is lower by "
             "more than the two seed spreads added, a loss when higher by as much, a tie otherwise (for claim 3 the "
             "measure is the learning-rate sensitivity, log10 of the worst over the best validation error across "
             "the learning-rate grid on seed 0, and a difference under 0.1 is a tie; for claim 4 only the targets "
             "whose ΔW* is full rank count). With W wins, L losses and T ties, (W − L)/(W + L + T) ≥ 1/3 is "
             "supported, ≤ −1/3 contradicted, mixed in between.",
    "tier2": "Every pair of one method from each family at each tier-2 budget (both within "
             f"{settings.OVER_BUDGET:g}× the budget), compared as in tier 1 on the claim's measure: in-distribution "
             "accuracy of the new task for claims 1 and 4 (fitting it), accuracy at the unseen lengths for claim 3 "
             "(robustness), and both that accuracy and the forgetting of the source task for claim 2 (transfer, "
             "kept structure); differences inside the two seed spreads added are ties, and the same (W − L)/(W + L "
             "+ T) thresholds apply. *Share* claim 5: the gain family's best in-distribution gain over the "
             "un-adapted model as a share of the low-rank family's best; supported at 0.5 or more, contradicted at "
             "0.2 or less, mixed in between.",
}
COMBINE_RULE = ("A claim is supported when every source that tested it says supported, contradicted when every one "
                "says contradicted, not tested when none tested it, and mixed otherwise.")


@dataclass
class SourceResult:
    verdict: str
    detail: str
    count: int = 0  # pieces of evidence behind it (evidence items, runs, comparisons)


@dataclass
class ClaimResult:
    claim: Claim
    a: list[str]
    b: list[str]
    sources: dict[str, SourceResult] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return combine([s.verdict for s in self.sources.values()])

    @property
    def evidence_count(self) -> int:
        return sum(s.count for s in self.sources.values())


def combine(verdicts: list[str]) -> str:
    tested = [v for v in verdicts if v != NOT_TESTED]
    if not tested:
        return NOT_TESTED
    if all(v == SUPPORTED for v in tested):
        return SUPPORTED
    if all(v == CONTRADICTED for v in tested):
        return CONTRADICTED
    return MIXED


def families(claim: Claim, catalog) -> tuple[list[str], list[str]]:
    """Module slugs of the favoured family and of the compared one (a method in both counts for the first only)."""
    entries = {it.entry.module_slug: it.entry for it in catalog}
    if claim.a_full_rank:
        a = [s for s, e in entries.items() if set(e.themes) & set(FULL_RANK_THEMES) and "low-rank" not in e.themes
             and e.properties.rank_bound is None]
    else:
        a = [s for s, e in entries.items() if set(e.themes) & set(claim.a)]
    b = [s for s, e in entries.items() if set(e.themes) & set(claim.b) and s not in a]
    return sorted(a), sorted(b)


def _score(w: int, l_: int, t: int) -> str:
    n = w + l_ + t
    if n == 0:
        return NOT_TESTED
    s = (w - l_) / n
    return SUPPORTED if s >= 1 / 3 else CONTRADICTED if s <= -1 / 3 else MIXED


def papers_source(claim: Claim, a: list[str], b: list[str], catalog) -> SourceResult:
    entries = {it.entry.module_slug: it.entry for it in catalog}
    dim = claim.dimension

    def share(members):
        graded = [entries[m] for m in members if entries[m].evidence]
        hits = [e for e in graded if any(ev.dimension == dim for ev in e.evidence)]
        items = sum(1 for e in graded for ev in e.evidence if ev.dimension == dim)
        return graded, hits, items

    ga, ha, ia = share(a)
    gb, hb, ib = share(b)
    title = RUBRIC[dim].title
    if not ga or (claim.kind == "compare" and not gb):
        return SourceResult(NOT_TESTED, f"no graded entry in {'the favoured' if not ga else 'the compared'} family")
    if not ha and not hb:
        return SourceResult(NOT_TESTED, f"no entry in either family has evidence for {dim} ({title})")
    sa = len(ha) / len(ga)
    if claim.kind == "share":
        v = SUPPORTED if sa >= 0.5 else MIXED
        return SourceResult(v, f"{len(ha)} of {len(ga)} graded entries claim {dim} ({title})", ia)
    sb = len(hb) / len(gb)
    v = SUPPORTED if sa - sb >= 0.25 else CONTRADICTED if sa - sb <= -0.25 else MIXED
    return SourceResult(v, f"{dim} ({title}): {len(ha)}/{len(ga)} of the favoured family's graded entries against "
                           f"{len(hb)}/{len(gb)} of the other's", ia + ib)


def benchmark_source(claim: Claim, a: list[str], b: list[str], catalog, bench: Benchmark) -> SourceResult:
    if not bench.available:
        return SourceResult(NOT_TESTED, "the benchmark's result files were not found at build time")
    entries = {it.entry.module_slug: it.entry for it in catalog}

    def best(members):
        out = {}
        for m in members:
            c = compare(bench, list(entries[m].benchmark))
            if c is not None and c.best is not None:
                out[m] = c.best.test_accuracy
        return out

    ba, bb = best(a), best(b)
    if not ba:
        return SourceResult(NOT_TESTED, "no run of the favoured family in the benchmark")
    if claim.kind == "share":
        lora = bench.run(LORA_BASELINE)
        top = max(ba.values())
        ratio = top / lora.test_accuracy
        v = SUPPORTED if ratio >= 0.9 else CONTRADICTED if ratio <= 0.5 else MIXED
        who = max(ba, key=ba.get)
        return SourceResult(v, f"best of the family ({who}) reaches {100 * top:.1f}% against LoRA rank 32's "
                               f"{100 * lora.test_accuracy:.1f}%: a ratio of {ratio:.2f}", len(ba))
    if not bb:
        return SourceResult(NOT_TESTED, "no run of the compared family in the benchmark")
    ma, mb = statistics.median(ba.values()), statistics.median(bb.values())
    diff = 100 * (ma - mb)
    v = SUPPORTED if diff >= 1 else CONTRADICTED if diff <= -1 else MIXED
    return SourceResult(v, f"median best accuracy {100 * ma:.1f}% ({len(ba)} methods) against {100 * mb:.1f}% "
                           f"({len(bb)} methods): {diff:+.1f} points", len(ba) + len(bb))


def _lr_sensitivity(doc: dict) -> dict[tuple, float]:
    """log10(worst / best) seed-0 validation error across the learning-rate grid, per cell; a diverged fit counts
    as error 10."""
    cells: dict[tuple, list[float]] = {}
    first = doc["settings"]["seeds"][0]
    for r in doc["records"]:
        if r.get("tier") == 1 and r["seed"] == first:
            v = r["val_error"] if r["val_error"] is not None else 10.0
            cells.setdefault((r["method"], r["target"], r["budget"]), []).append(max(v, 1e-6))
    return {k: math.log10(max(v) / min(v)) for k, v in cells.items() if len(v) > 1}


def tier1_source(claim: Claim, a: list[str], b: list[str], doc: dict | None) -> SourceResult:
    if not claim.tier1:
        return SourceResult(NOT_TESTED, claim.tier1_note)
    if not doc or not doc.get("summary"):
        return SourceResult(NOT_TESTED, "no tier-1 results")
    rows = [r for r in doc["summary"] if r["mean"] is not None
            and r["params"] <= settings.OVER_BUDGET * r["budget_params"]]
    if claim.tier1 == "full-rank-error":
        facts = doc.get("target_facts", {})
        full = {t for t, f in facts.items() if f["rank"] == f["full_rank"]}
        rows = [r for r in rows if r["target"] in full]
    cell = {(r["method"], r["target"], r["budget"]): r for r in rows}
    sens = _lr_sensitivity(doc) if claim.tier1 == "lr-sensitivity" else {}
    w = l_ = t = 0
    for (m, tg, bu), ra in cell.items():
        if m not in a:
            continue
        for mb in b:
            rb = cell.get((mb, tg, bu))
            if rb is None:
                continue
            if claim.tier1 == "lr-sensitivity":
                if (m, tg, bu) not in sens or (mb, tg, bu) not in sens:
                    continue
                d, margin = sens[(m, tg, bu)] - sens[(mb, tg, bu)], 0.1
            else:
                d, margin = ra["mean"] - rb["mean"], (ra["spread"] or 0) + (rb["spread"] or 0)
            if d < -margin:
                w += 1
            elif d > margin:
                l_ += 1
            else:
                t += 1
    ran_a = sorted({m for (m, _, _) in cell if m in a})
    ran_b = sorted({m for (m, _, _) in cell if m in b})
    if not ran_a or not ran_b:
        return SourceResult(NOT_TESTED, "tier 1 has no in-budget results for " +
                            ("the favoured family" if not ran_a else "the compared family"))
    what = "learning-rate sensitivity" if claim.tier1 == "lr-sensitivity" else "test error"
    return SourceResult(_score(w, l_, t), f"{what}, {', '.join(ran_a)} against {', '.join(ran_b)}: {w} wins, "
                                          f"{l_} losses, {t} ties", w + l_ + t)


TIER2_MEASURES = {1: ("id",), 2: ("ood", "forgetting"), 3: ("ood",), 4: ("id",)}


def tier2_source(claim: Claim, a: list[str], b: list[str], doc: dict | None) -> SourceResult:
    t2 = (doc or {}).get("tier2") or {}
    rows = [r for r in t2.get("summary", []) if r["id"] is not None]
    if not rows:
        return SourceResult(NOT_TESTED, "tier 2 has no results yet")
    ref = t2["reference"]
    budget_params = {r["budget"]: r["budget"] * doc["settings"]["tier2_task"].get("model_params", 0) for r in rows}
    fair = [r for r in rows if not budget_params[r["budget"]]
            or r["params"] <= settings.OVER_BUDGET * budget_params[r["budget"]]]
    ra = [r for r in fair if r["method"] in a]
    rb = [r for r in fair if r["method"] in b]
    if not ra or not rb:
        return SourceResult(NOT_TESTED, "tier 2 has no in-budget results for " +
                            ("the favoured family" if not ra else "the compared family"))
    if claim.kind == "share":
        gain_a = max(r["id"] for r in ra) - ref["id"]
        gain_b = max(r["id"] for r in rb) - ref["id"]
        if gain_b <= 0:
            return SourceResult(NOT_TESTED, "the low-rank family did not improve on the un-adapted model")
        share = gain_a / gain_b
        v = SUPPORTED if share >= 0.5 else CONTRADICTED if share <= 0.2 else MIXED
        return SourceResult(v, f"best in-distribution accuracy {max(r['id'] for r in ra):.3f} against "
                               f"{max(r['id'] for r in rb):.3f} (un-adapted {ref['id']:.3f}): a share of "
                               f"{share:.2f} of the gain", len(ra) + len(rb))
    w = l_ = t = 0
    for x in ra:
        for y in rb:
            if x["budget"] != y["budget"]:
                continue
            for k in TIER2_MEASURES[claim.n]:
                sign = -1 if k == "forgetting" else 1  # less forgetting is better
                d = sign * (x[k] - y[k])
                margin = (x[k + "_spread"] or 0) + (y[k + "_spread"] or 0)
                if d > margin:
                    w += 1
                elif d < -margin:
                    l_ += 1
                else:
                    t += 1
    what = " and ".join({"id": "in-distribution accuracy", "ood": "accuracy at unseen lengths",
                         "forgetting": "forgetting"}[k] for k in TIER2_MEASURES[claim.n])
    return SourceResult(_score(w, l_, t), f"{what}, {', '.join(sorted({r['method'] for r in ra}))} against "
                                          f"{', '.join(sorted({r['method'] for r in rb}))}: {w} wins, {l_} losses, "
                                          f"{t} ties", w + l_ + t)


def findings(catalog, doc: dict | None, bench: Benchmark) -> list[ClaimResult]:
    out = []
    for c in CLAIMS:
        a, b = families(c, catalog)
        res = ClaimResult(c, a, b)
        res.sources["papers"] = papers_source(c, a, b, catalog)
        res.sources["benchmark"] = benchmark_source(c, a, b, catalog, bench)
        res.sources["tier1"] = tier1_source(c, a, b, doc)
        res.sources["tier2"] = tier2_source(c, a, b, doc)
        out.append(res)
    return out
