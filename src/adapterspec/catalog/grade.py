"""The evidence grade: computed from the entry's evidence and from independent results, never typed.

Two scores per method:

* **claimed**: what the papers support. Each rubric dimension earns its points times the weight of the best evidence
  item for it; an item's weight starts at 1 and is discounted for partial support and for each protocol weakness
  (`DISCOUNTS`).
* **replicated**: the claimed score after independent results (peft's benchmark, `benchmark.Comparison`). A dimension
  the benchmark tests and contradicts earns nothing; one it reproduces, or does not test, keeps its claimed credit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from adapterspec.catalog.model import Entry, Evidence

if TYPE_CHECKING:
    from adapterspec.catalog.benchmark import Comparison


@dataclass(frozen=True)
class Dimension:
    code: str
    points: float
    title: str
    meaning: str


RUBRIC: dict[str, Dimension] = {d.code: d for d in (
    Dimension("PE", 1.0, "Parameter-efficient", "competitive with full fine-tuning while training under 1% of the parameters"),
    Dimension("BL", 1.0, "Beats LoRA", "better than LoRA on raw task performance at a comparable parameter budget"),
    Dimension("BF", 1.5, "Beats full fine-tuning", "matches or exceeds full fine-tuning"),
    Dimension("DE", 1.5, "Data-efficient", "converges faster, or works with less data, than the baseline"),
    Dimension("OOD", 2.0, "Out-of-distribution", "the gains carry over to data unlike the training data"),
    Dimension("WA", 1.0, "Widely adopted", "used as a baseline by many other papers"),
)}
MAX_SCORE = sum(d.points for d in RUBRIC.values())


@dataclass(frozen=True)
class Discount:
    key: str
    factor: float
    label: str
    meaning: str
    short: str  # for table cells


# What weakens an evidence item, and by how much its weight is multiplied. Factors multiply: a partial item from a
# single run with copied baselines weighs 0.5 × 0.75 × 0.75.
DISCOUNTS: dict[str, Discount] = {d.key: d for d in (
    Discount("partial", 0.5, "partial support",
             "the experiment shows part of the dimension (a ranking without scores, a tie within the spread, one "
             "setting of several, a confound the paper leaves open)", "partial"),
    Discount("baselines-copied", 0.75, "baselines copied",
             "the baseline figures were taken from other papers, with other setups, rather than rerun", "copied baselines"),
    Discount("test-set-selection", 0.5, "selected on the test set",
             "the checkpoint or hyperparameters were chosen on the same figures that are reported", "test-set selection"),
    Discount("tuned-only-proposed", 0.75, "tuned for the proposed method only",
             "hyperparameters were searched for the proposed method and not for the baselines", "tuned one side"),
    Discount("single-run", 0.75, "one run",
             "one run per configuration, no seeds averaged and no spread reported (seeds_or_variance_reported: false)", "one run"),
)}


def item_discounts(ev: Evidence) -> list[Discount]:
    """The discounts that apply to one evidence item, in `DISCOUNTS` order."""
    keys = set(ev.protocol)
    if ev.support == "partial":
        keys.add("partial")
    if ev.seeds_or_variance_reported is False:
        keys.add("single-run")
    return [d for k, d in DISCOUNTS.items() if k in keys]


def item_weight(ev: Evidence) -> float:
    """1 for a full item run without weaknesses; each discount multiplies it."""
    w = 1.0
    for d in item_discounts(ev):
        w *= d.factor
    return w


# What the independent benchmark says about a dimension.
REPRODUCED, CONTRADICTED, UNTESTED = "reproduced", "contradicted", "untested"


@dataclass(frozen=True)
class DimensionGrade:
    """One rubric dimension of one method."""

    code: str
    item: int | None  # index of the best evidence item for it, None when no item claims it
    weight: float  # that item's weight (0 when absent)
    claimed: float  # points × weight
    independent: str  # REPRODUCED, CONTRADICTED or UNTESTED
    why: str | None  # the benchmark's figures, when it reproduces or contradicts
    replicated: float  # the credit after independent results

    @property
    def present(self) -> bool:
        return self.item is not None


@dataclass(frozen=True)
class Grade:
    score: float  # claimed, rounded to 0.01
    dimensions: tuple[str, ...]  # claimed dimensions, in rubric order
    graded: bool = True  # False: the entry has no evidence items (e.g. no paper text to check quotes against)
    replicated: float = 0.0  # the score after independent results
    why: str = "no evidence items"  # why it is ungraded, when it is
    detail: dict[str, DimensionGrade] = field(default_factory=dict)  # every rubric dimension

    @property
    def claimed(self) -> float:
        return self.score

    @property
    def contradicted(self) -> tuple[str, ...]:
        return tuple(c for c in self.dimensions if self.detail[c].independent == CONTRADICTED)

    @property
    def reproduced(self) -> tuple[str, ...]:
        return tuple(c for c in self.dimensions if self.detail[c].independent == REPRODUCED)

    @property
    def breakdown(self) -> str:
        """e.g. ``PE 1 + BL 0.75 + DE 0.75 = 2.5``: each claimed dimension with its weighted credit."""
        if not self.graded:
            return f"ungraded: {self.why}"
        parts = " + ".join(f"{c} {round(self.detail[c].claimed, 2):g}" for c in self.dimensions)
        return (parts or "none") + f" = {self.score:g}"


def grade(entry: Entry, comparison: Comparison | None = None) -> Grade:
    """Both scores of an entry: claimed from its weighed evidence, replicated after ``comparison`` (the method's runs
    in peft's benchmark; None or no runs: nothing is tested independently, so replicated = claimed)."""
    detail = {}
    for code, dim in RUBRIC.items():
        items = [(item_weight(ev), i) for i, ev in enumerate(entry.evidence) if ev.dimension == code]
        weight, index = max(items, key=lambda t: (t[0], -t[1])) if items else (0.0, None)
        claimed = round(dim.points * weight, 4)
        verdict, why = (UNTESTED, None)
        if index is not None and comparison is not None:
            verdict, why = comparison.verdict(code)
        replicated = 0.0 if verdict == CONTRADICTED else claimed
        detail[code] = DimensionGrade(code, index, weight, claimed, verdict, why, replicated)
    dims = tuple(c for c, d in detail.items() if d.present)
    return Grade(score=round(sum(d.claimed for d in detail.values()), 2), dimensions=dims, graded=bool(entry.evidence),
                 replicated=round(sum(d.replicated for d in detail.values()), 2), detail=detail,
                 why="no evidence items" if entry.papers else "no paper")
