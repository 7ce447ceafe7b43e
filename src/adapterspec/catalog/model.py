"""The format of an entry, as a pydantic model: what the loader validates and what ``entries/schema.json`` is
generated from (``adapterspec schema --write``)."""

from __future__ import annotations

from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field

Dimension = Literal["PE", "BL", "BF", "DE", "OOD", "WA"]
Slug = Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")
ArxivId = Field(pattern=r"^\d{4}\.\d{4,5}$", description='arXiv identifier such as "2106.09685" (quoted)')


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Paper(_Strict):
    """A paper the entry cites, by arXiv id."""

    arxiv: str = ArxivId
    title: str
    authors: str = Field(description='"First author et al."')
    year: int = Field(ge=1990, le=2100)
    venue: str | None = None
    version: str | None = Field(None, pattern=r"^v\d+$", description="the arXiv version cited, when a later version "
                                "of the same record rewrote the method (Bone: v3); quotes are then only checked "
                                "against a saved text of that version")


class Code(_Strict):
    """Where the method lives in code."""

    peft: str | None = Field(None, description="peft class implementing the method, e.g. peft.tuners.lora.layer.Linear")
    official: str | None = Field(None, pattern=r"^https://", description="the authors' repository")


class Implementation(_Strict):
    """The reference module the pseudocode is verified against."""

    module: str | None = Field(None, description="adapterspec method slug; defaults to the entry's id")
    hyperparameters: dict[str, Union[bool, int, float, str]] = Field(
        default_factory=dict, description="keyword arguments for adapterspec.create during verification")
    variants: list[dict[str, Union[bool, int, float, str]]] = Field(
        default_factory=list, description="further hyperparameter sets (merged over `hyperparameters`), each verified "
        "too, so that every branch of the pseudocode runs")
    shapes: list[tuple[int, int]] = Field(
        default_factory=lambda: [(16, 12), (32, 24)], min_length=2,
        description="(d_in, d_out) layer shapes to verify on; at least two, non-square catches transposes")


class Properties(_Strict):
    """Structural claims, each checked numerically by `adapterspec verify`."""

    identity_at_init: bool = Field(description="the adapted layer equals the pretrained one right after init")
    mergeable: bool = Field(description="the update folds into the weight: merged output == unmerged output")
    trainable_parameters: str = Field(
        description="Python expression in d_in, d_out and the hyperparameters, e.g. 'r * (d_in + d_out)'")
    rank_bound: str | None = Field(None, description="expression bounding rank(ΔW), e.g. 'r'")
    preserves_neuron_gram: bool | None = Field(
        None, description="W' W'ᵀ == W0 W0ᵀ: norms of and angles between neurons unchanged (checked either way)")
    row_norms: str | None = Field(None, description="symbol whose values equal the row norms of W' (DoRA: m)")
    shared_across_layers: list[str] = Field(
        default_factory=list, description="symbols one copy of which serves every adapted layer of a model (VeRA's "
        "frozen random pair, VB-LoRA's vector bank); checked to be independent of the layer's own weights")


class Evidence(_Strict):
    """One grade dimension, backed by a short verbatim quote that is checked against the paper's text."""

    dimension: Dimension
    claim: str = Field(min_length=20, description="what the paper shows, in our words, with its figures")
    quote: str = Field(min_length=20, max_length=400, description="verbatim from the paper, one or two sentences")
    paper: str = ArxivId
    locator: str = Field(description='where in the paper: "Table 2", "Section 4.1"')


class Discrepancy(_Strict):
    """Where the paper, peft and common descriptions of the method disagree."""

    aspect: str
    paper: str
    peft: str
    note: str


class Entry(_Strict):
    """One method of the catalog."""

    id: str = Slug
    name: str
    full_name: str
    summary: str = Field(description="one sentence for the catalog index")
    papers: list[Paper] = Field(min_length=1)
    code: Code
    themes: list[str] = Field(min_length=1, description="from entries/themes.yaml")
    hypothesis: str = Field(min_length=40)
    math: str = Field(description="LaTeX, one equation per line, no $$")
    pseudocode: str = Field(description="Python in the paper's notation defining forward(x, ...) and optionally init(...)")
    implementation: Implementation = Field(default_factory=Implementation)
    properties: Properties
    evidence: list[Evidence] = Field(default_factory=list)
    implications: str
    caveats: list[str] = Field(default_factory=list)
    discrepancies: list[Discrepancy] = Field(default_factory=list)
    related: list[str] = Field(default_factory=list)
    benchmark: list[str] = Field(
        default_factory=list, description="experiments of peft's method-comparison benchmark that ran this method "
        "(result file names without .json, e.g. lora--llama-3.2-3B-rank32)")

    @property
    def module_slug(self) -> str:
        return self.implementation.module or self.id


class Theme(_Strict):
    """One theme of the closed vocabulary in entries/themes.yaml."""

    id: str = Slug
    title: str
    description: str
