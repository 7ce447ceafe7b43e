"""The format of an entry, as a pydantic model: what the loader validates and what ``entries/schema.json`` is
generated from (``adapterspec schema --write``)."""

from __future__ import annotations

import math
from typing import Annotated, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

# Every field is bounded: an entry is untrusted input, and the build must stay fast whatever it says.
Dimension = Literal["PE", "BL", "BF", "DE", "OOD", "WA"]
Slug = Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=40)
ArxivId = Field(pattern=r"^\d{4}\.\d{4,5}$", description='arXiv identifier such as "2106.09685" (quoted)')
PaperKey = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9]{2,39}$"),
                    Field(description="citation key of a record in papers/ (hu2021lora)")]
Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,39}$")]
# One line of plain text (a title, an author list, a locator): no line breaks or control characters.
Line = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]*$", max_length=300)]
# A name shown in headings, titles and the navigation: one line, none of the characters that mean markup.
Name = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f<>&\"`\\{}\[\]|*_#$]+$", max_length=120)]


# One sentence of prose: a single line after YAML folding, ending with a full stop.
Sentence = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]{30,300}\.$"),
                     Field(json_schema_extra={"format": "markdown"})]


def Prose(max_length: int):  # noqa: N802 — reads as a type in the model below
    """Markdown prose (rendered by markdown-it-py: raw HTML off, links allowlisted, $…$ maths)."""
    return Annotated[str, Field(max_length=max_length, json_schema_extra={"format": "markdown"})]


def _finite(v: float) -> float:
    if not math.isfinite(v):
        raise ValueError("must be a finite number")
    return v


# Hyperparameters reach the reference module's constructor in the build's own process: keep them small.
HyperValue = Union[
    bool,
    Annotated[int, Field(ge=-4096, le=4096)],
    Annotated[float, Field(ge=-1e6, le=1e6), AfterValidator(_finite)],
    Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.+-]{0,40}$")],
]
Hyperparameters = Annotated[dict[Identifier, HyperValue], Field(max_length=24)]
Dim = Annotated[int, Field(ge=1, le=256)]
Formula = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]+$", max_length=500)]  # one line


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Code(_Strict):
    """Where the method lives in code."""

    peft: str | None = Field(None, pattern=r"^peft(\.[A-Za-z_][A-Za-z0-9_]*){1,8}$",
                             description="peft class implementing the method, e.g. peft.tuners.lora.layer.Linear")
    official: str | None = Field(None, pattern=r"^https://[A-Za-z0-9.-]+(/[A-Za-z0-9._~%+/-]*)?$", max_length=200,
                                 description="the authors' repository (a whole https URL, nothing after it)")


class Implementation(_Strict):
    """The reference module the pseudocode is verified against."""

    module: str | None = Field(None, pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=40,
                               description="adapterspec method slug; defaults to the entry's id")
    hyperparameters: Hyperparameters = Field(
        default_factory=dict, description="keyword arguments for adapterspec.create during verification (integers "
        "within ±4096, finite floats within ±1e6, short strings)")
    variants: list[Hyperparameters] = Field(
        default_factory=list, max_length=8, description="further hyperparameter sets (merged over `hyperparameters`), "
        "each verified too, so that every branch of the pseudocode runs")
    shapes: list[tuple[Dim, Dim]] = Field(
        default_factory=lambda: [(16, 12), (32, 24)], min_length=2, max_length=4,
        description="(d_in, d_out) layer shapes to verify on, each size 1-256; at least two, non-square catches "
        "transposes. For a method wrapping something other than a linear layer, the pair its example_base takes, "
        "named by its shape_names (e.g. (d_model, n_heads) for an attention block)")


class Orthogonal(_Strict):
    """A rotation or reflection in the method: which symbol holds it and which side of ``W0`` it acts on."""

    symbol: Identifier = Field(description="module symbol holding the orthogonal matrix (d × d), or a stack of "
                               "orthogonal blocks (..., b, b)")
    side: Literal["input", "output"] = Field(
        description="input: W' = W0 Rᵀ (every neuron, a row of W0, is rotated, so W'W'ᵀ is kept); "
        "output: W' = R W0 (every column is rotated, so W'ᵀW' is kept)")


class PropertiesWhen(_Strict):
    """Claims that hold only for some hyperparameters (HRA with an odd number of reflections; ETHER+ against ETHER):
    where ``condition`` is true at a verified case's hyperparameters, the fields given here replace the entry's own."""

    condition: Formula = Field(description="expression in the hyperparameters and d_in, d_out, e.g. 'plus' or "
                               "'r % 2 == 1 or apply_GS'")
    identity_at_init: bool | None = None
    preserves_neuron_gram: bool | None = None
    preserves_input_gram: bool | None = None
    orthogonal: list[Orthogonal] | None = Field(None, max_length=8, description="replaces the entry's list ([] for "
                                                "none)")


class Properties(_Strict):
    """Structural claims, each checked numerically by `adapterspec verify`."""

    identity_at_init: bool = Field(description="the adapted layer equals the pretrained one right after init")
    mergeable: bool = Field(description="the update folds into the weight: merged output == unmerged output")
    trainable_parameters: Formula = Field(
        description="expression in d_in, d_out and the hyperparameters, e.g. 'r * (d_in + d_out)'")
    rank_bound: Formula | None = Field(None, description="expression bounding rank(ΔW), e.g. 'r'")
    preserves_neuron_gram: bool | None = Field(
        None, description="W' W'ᵀ == W0 W0ᵀ: norms of and angles between neurons unchanged (checked either way)")
    preserves_input_gram: bool | None = Field(
        None, description="W'ᵀ W' == W0ᵀ W0: the map's action on input geometry unchanged, as an output-side "
        "rotation implies (checked either way)")
    orthogonal: list[Orthogonal] = Field(
        default_factory=list, max_length=8,
        description="rotations or reflections of the method, each checked to be orthogonal in float64 in a "
        "randomized state")
    when: list[PropertiesWhen] = Field(
        default_factory=list, max_length=4,
        description="claims that differ for some hyperparameters: each item's fields replace the ones above wherever "
        "its condition holds (later items win); every variant is checked against the claims that apply to it")
    row_norms: Identifier | None = Field(None, description="symbol whose values equal the row norms of W' (DoRA: m)")
    shared_across_layers: list[Identifier] = Field(
        default_factory=list, max_length=8,
        description="symbols one copy of which serves every adapted layer of a model (VeRA's "
        "frozen random pair, VB-LoRA's vector bank); checked to be independent of the layer's own weights")


class Evidence(_Strict):
    """One grade dimension, backed by a short verbatim quote that is checked against the paper's text."""

    dimension: Dimension
    claim: Prose(3000) = Field(min_length=20, description="what the paper shows, in our words, with its figures")
    quote: str = Field(min_length=20, max_length=400, description="verbatim from the paper, one or two sentences")
    paper: PaperKey = Field(description="citation key of the paper quoted (one of the entry's papers)")
    locator: Line = Field(max_length=200, description='where in the paper: "Table 2", "Section 4.1"')


class Discrepancy(_Strict):
    """Where the paper, peft and common descriptions of the method disagree."""

    aspect: Line = Field(max_length=120, description="a short heading")
    paper: Prose(3000)
    peft: Prose(3000)
    note: Prose(3000)


class Entry(_Strict):
    """One method of the catalog."""

    id: str = Slug
    name: Name = Field(max_length=40)
    full_name: Name
    summary: Prose(800) = Field(description="one sentence for the catalog index")
    papers: list[PaperKey] = Field(min_length=1, max_length=8,
                                   description="citation keys of the method's papers, records in papers/<key>.yaml")
    code: Code
    themes: list[str] = Field(min_length=1, max_length=8, description="from entries/themes.yaml")
    testable_hypothesis: Sentence = Field(
        description="the hypothesis as one testable sentence: what the method assumes about the pretrained model or "
        "about fine-tuning, stated so that an observation could refute it (the mechanism belongs in `summary`)")
    hypothesis: Prose(4000) = Field(min_length=40)
    math: str = Field(max_length=4000, description="LaTeX, one equation per line, no $$")
    pseudocode: str = Field(max_length=8000, description="Python in the paper's notation defining forward(x, ...) "
                            "and optionally init(...)")
    implementation: Implementation = Field(default_factory=Implementation)
    properties: Properties
    evidence: list[Evidence] = Field(default_factory=list, max_length=16)
    implications: Prose(4000)
    caveats: list[Prose(3000)] = Field(default_factory=list, max_length=16)
    discrepancies: list[Discrepancy] = Field(default_factory=list, max_length=16)
    related: list[str] = Field(default_factory=list, max_length=16)
    benchmark: list[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,120}$")]] = Field(
        default_factory=list, max_length=16,
        description="experiments of peft's method-comparison benchmark that ran this method "
        "(result file names without .json, e.g. lora--llama-3.2-3B-rank32)")

    @property
    def module_slug(self) -> str:
        return self.implementation.module or self.id


class Theme(_Strict):
    """One theme of the closed vocabulary in entries/themes.yaml."""

    id: str = Slug
    title: Name = Field(max_length=60)
    description: Prose(2000)


def prose_fields(entry: Entry):
    """``(location, text)`` of every Markdown field of an entry, for checks that apply to all prose."""
    yield ("summary",), entry.summary
    yield ("testable_hypothesis",), entry.testable_hypothesis
    yield ("hypothesis",), entry.hypothesis
    yield ("implications",), entry.implications
    for i, c in enumerate(entry.caveats):
        yield ("caveats", i), c
    for i, ev in enumerate(entry.evidence):
        yield ("evidence", i, "claim"), ev.claim
    for i, d in enumerate(entry.discrepancies):
        for name in ("paper", "peft", "note"):
            yield ("discrepancies", i, name), getattr(d, name)
