"""``catalog.json``: the whole catalog as data, published beside the site with its JSON Schema.

Every entry as written (validated), what this build's verification measured, the computed grade and the peft
equality, for people who would rather query than read (``jq``, pandas, another site). The format is the pydantic
model `CatalogExport`; ``catalog.schema.json`` is generated from it, so the two cannot drift apart.
"""

from __future__ import annotations

import importlib.metadata
import json
from typing import Any, Literal

import torch
from pydantic import BaseModel, Field

from adapterspec.catalog.benchmark import compare
from adapterspec.catalog.grade import grade
from adapterspec.catalog.bibliography import PaperRecord
from adapterspec.catalog.model import Entry

SCHEMA_VERSION = 1
SCHEMA_FILE = "catalog.schema.json"


class Verification(BaseModel):
    """What this build executed for the entry."""

    ok: bool
    checks: int = Field(description="checks run, all passed when ok")
    max_error: float = Field(description="largest |pseudocode − module| over the pseudocode comparisons, float64")
    quotes: str = Field(description='"checked", "unchecked" (paper texts unavailable), "partly unchecked" or "none" (no evidence quoted)')
    trainable_parameters: dict[str, int] = Field(description="measured count per verified layer shape")
    rank: dict[str, int] = Field(default_factory=dict, description="measured rank(ΔW) per layer shape")


class DimensionRecord(BaseModel):
    """One rubric dimension of the method: claimed credit, and what the independent benchmark says."""

    code: str
    evidence: int | None = Field(description="index of the best evidence item for it, null when none claims it")
    weight: float = Field(description="that item's weight after discounts (0 when absent)")
    claimed: float = Field(description="points × weight")
    independent: Literal["reproduced", "contradicted", "untested"]
    why: str | None = None
    replicated: float = Field(description="the credit after independent results")


class GradeRecord(BaseModel):
    score: float = Field(description="the claimed score: weighted evidence")
    replicated: float = Field(description="the score after independent results (peft's benchmark)")
    dimensions: list[str] = Field(description="rubric dimensions the evidence supports")
    graded: bool
    breakdown: str
    detail: list[DimensionRecord] = Field(default_factory=list)


class PeftEquality(BaseModel):
    """The module against peft's layer for the same weights, or why that did not run."""

    ran: bool
    layer: str | None = None
    peft_version: str | None = None
    cases: int = 0
    equal: bool | None = None
    max_relative_error_float32: float | None = None
    max_relative_error_float64: float | None = None
    note: str = ""


class ExportedEntry(BaseModel):
    id: str
    url: str = Field(description="the method's page, relative to the site root")
    entry: Entry
    verification: Verification
    grade: GradeRecord
    peft: PeftEquality


class CatalogExport(BaseModel):
    schema_: str = Field(SCHEMA_FILE, alias="$schema")
    schema_version: Literal[1] = SCHEMA_VERSION
    adapterspec: str
    torch: str
    entries: list[ExportedEntry]
    papers: list[PaperRecord] = Field(description="the bibliography (papers/): every key the entries cite")


def export(build: Any) -> CatalogExport:
    """The export of a `site.SiteBuild` (a catalog that built)."""
    records = []
    for item in build.catalog:
        result = build.results[item.slug]
        observed = result.observed
        bench = getattr(build, "bench", None)
        g = grade(item.entry, compare(bench, item.entry.benchmark) if bench is not None else None)
        eq, note = build.peft.get(item.slug, (None, ""))
        peft = (PeftEquality(ran=False, note=note) if eq is None else
                PeftEquality(ran=True, layer=eq.peft_layer, peft_version=eq.peft_version, cases=len(eq.cases),
                             equal=eq.ok, max_relative_error_float32=eq.worst("float32"),
                             max_relative_error_float64=eq.worst("float64")))
        records.append(ExportedEntry(
            id=item.slug, url=f"methods/{item.slug}/", entry=item.entry, peft=peft,
            verification=Verification(ok=result.ok, checks=len(result.checks), max_error=result.max_error,
                                      quotes=result.quotes,
                                      trainable_parameters=observed.get("trainable_parameters", {}),
                                      rank=observed.get("rank", {})),
            grade=GradeRecord(score=g.score, replicated=g.replicated, dimensions=list(g.dimensions), graded=g.graded,
                              breakdown=g.breakdown,
                              detail=[DimensionRecord(code=d.code, evidence=d.item, weight=d.weight, claimed=d.claimed,
                                                      independent=d.independent, why=d.why, replicated=d.replicated)
                                      for d in g.detail.values()])))
    return CatalogExport(adapterspec=importlib.metadata.version("adapterspec"), torch=torch.__version__,
                         entries=records, papers=sorted(build.catalog.bibliography, key=lambda r: r.key))


def catalog_json(build: Any) -> str:
    return export(build).model_dump_json(by_alias=True, indent=1) + "\n"


def schema_json() -> str:
    schema = CatalogExport.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "adapterspec catalog.json"
    return json.dumps(schema, indent=1, ensure_ascii=False) + "\n"
