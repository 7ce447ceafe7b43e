"""The evidence grade: computed from the dimensions an entry's evidence supports, never typed."""

from __future__ import annotations

from dataclasses import dataclass

from adapterspec.catalog.model import Entry


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
class Grade:
    score: float
    dimensions: tuple[str, ...]  # in rubric order
    graded: bool = True  # False: the entry has no evidence items (e.g. no paper text to check quotes against)
    why: str = "no evidence items"  # why it is ungraded, when it is

    @property
    def breakdown(self) -> str:
        """e.g. ``PE+BL+DE = 3.5``."""
        if not self.graded:
            return f"ungraded: {self.why}"
        return ("+".join(self.dimensions) or "none") + f" = {self.score:g}"


def grade(entry: Entry) -> Grade:
    """Sum of the points of every rubric dimension that at least one evidence item supports."""
    claimed = {ev.dimension for ev in entry.evidence}
    dims = tuple(code for code in RUBRIC if code in claimed)
    return Grade(score=sum(RUBRIC[c].points for c in dims), dimensions=dims, graded=bool(entry.evidence),
                 why="no evidence items" if entry.papers else "no paper")
