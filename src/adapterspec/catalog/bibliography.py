"""The bibliography: ``papers/<key>.yaml``, one record per cited paper, which entries cite by key.

A record names the paper (arXiv id and version, title, authors, venue, year, DOI) and fingerprints the text that
evidence quotes were checked against (``text.sha256``): a saved text whose hash differs is a different version, and
quotes are then reported as unchecked rather than checked against it. BibTeX is generated from the records
(`bibtex`), never written by hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import Field, StringConstraints, ValidationError

from adapterspec.catalog.errors import CatalogError, EntryError
from adapterspec.catalog.model import ArxivId, Line, PaperKey, _Strict

BIBLIOGRAPHY = Path(__file__).resolve().parents[3] / "papers"  # the project's papers/ (a source checkout)
SCHEMA_FILE = "schema.json"
TEXT_FOLDER = "text"  # papers/text/: git-ignored, for texts a contributor supplies

Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Person = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f{}\\,]{2,80}$")]


class PaperText(_Strict):
    """The text the evidence quotes were checked against."""

    sha256: Sha256 = Field(description="SHA-256 of the saved text file's bytes (`sha256sum FILE`)")
    source: Line | None = Field(None, description="how the text was made, e.g. 'arXiv PDF v2, converted to markdown'")


class PaperRecord(_Strict):
    """One cited paper."""

    key: PaperKey = Field(description="citation key, equal to the file name: first author's surname, year, first "
                          "word of the title (hu2021lora)")
    arxiv: str = ArxivId
    version: str | None = Field(None, pattern=r"^v\d+$", description="the arXiv version cited, when the entry "
                                "depends on one (Bone: v3)")
    title: Line
    authors: list[Person] = Field(min_length=1, max_length=40, description="as printed, first author first")
    et_al: bool = Field(False, description="the list names only the first authors")
    venue: Line | None = Field(None, description="where it was published ('ICLR 2022'); none for an arXiv preprint")
    year: int = Field(ge=1990, le=2100, description="year of the arXiv record")
    doi: str | None = Field(None, pattern=r"^10\.\d{4,9}/[-._;()/:A-Za-z0-9]+$", max_length=120)
    licence: Line | None = Field(None, description="licence of the paper's text, where known")
    text: PaperText | None = None

    @property
    def url(self) -> str:
        return f"https://arxiv.org/abs/{self.arxiv}{self.version or ''}"

    @property
    def arxiv_doi(self) -> str:
        """arXiv's own DOI for the record (DataCite), used when the paper has no journal DOI."""
        return f"10.48550/arXiv.{self.arxiv}"

    @property
    def author_line(self) -> str:
        """"Edward J. Hu et al.", "A and B", "A, B and C"."""
        names = self.authors
        if self.et_al or len(names) > 3:
            return f"{names[0]} et al."
        return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


@dataclass
class Bibliography:
    folder: Path
    records: dict[str, PaperRecord]

    def __getitem__(self, key: str) -> PaperRecord:
        return self.records[key]

    def __contains__(self, key: object) -> bool:
        return key in self.records

    def __iter__(self):
        return iter(self.records.values())

    def __len__(self) -> int:
        return len(self.records)


def load_bibliography(folder: str | Path | None = None) -> Bibliography:
    """Every ``papers/<key>.yaml`` record, validated; errors name the file, line and field."""
    from adapterspec.catalog.loader import _explain, _read_yaml, _dotted  # the same YAML rules as entries

    folder = Path(folder) if folder is not None else BIBLIOGRAPHY
    if not folder.is_dir():
        raise CatalogError([EntryError(str(folder), "bibliography folder not found: papers/ holds one <key>.yaml "
                                       "per cited paper (use --bibliography PATH)")])
    records, errors = {}, []
    for path in sorted(folder.glob("*.yaml")):
        if path.is_symlink():
            errors.append(EntryError(str(path), "symbolic links are not allowed in the bibliography"))
            continue
        try:
            data, _text, lines = _read_yaml(path)
            record = PaperRecord.model_validate(data)
        except CatalogError as e:
            errors += e.errors
            continue
        except ValidationError as e:
            errors += [EntryError(str(path), _explain(err), field=_dotted(err["loc"]), line=lines.get(tuple(err["loc"])))
                       for err in e.errors()]
            continue
        if record.key != path.stem:
            errors.append(EntryError(str(path), f"key must equal the file name '{path.stem}'", field="key",
                                     line=lines.get(("key",))))
            continue
        records[record.key] = record
    arxiv: dict[tuple[str, str | None], str] = {}
    for r in records.values():
        other = arxiv.setdefault((r.arxiv, r.version), r.key)
        if other != r.key:
            errors.append(EntryError(str(folder / f"{r.key}.yaml"), f"arXiv:{r.arxiv}{r.version or ''} is already "
                                     f"recorded as '{other}'", field="arxiv"))
    if errors:
        raise CatalogError(errors)
    return Bibliography(folder=folder, records=records)


def _bibtex_escape(text: str) -> str:
    return re.sub(r"([&%$#_{}~^\\])", r"\\\1", text)


def _wrapped(line: str, width: int = 88) -> str:
    """A long field broken at spaces onto indented lines (BibTeX reads a line break inside braces as a space), so the
    blocks on the site fit their boxes."""
    import textwrap

    return "\n".join(textwrap.wrap(line, width=width, subsequent_indent="    ", break_long_words=False,
                                    break_on_hyphens=False)) if len(line) > width else line


def bibtex(record: PaperRecord) -> str:
    """The record as a BibTeX ``@misc`` (arXiv) or ``@inproceedings`` (a venue) entry."""
    authors = " and ".join(record.authors) + (" and others" if record.et_al else "")
    venue_year = re.search(r"\b(19|20)\d\d\b", record.venue or "")  # published: the venue's year, else arXiv's
    fields = [("title", "{" + _bibtex_escape(record.title) + "}"), ("author", _bibtex_escape(authors)),
              ("year", venue_year.group(0) if venue_year else str(record.year))]
    if record.venue:
        fields.append(("booktitle", _bibtex_escape(record.venue)))
    fields += [("eprint", record.arxiv + (record.version or "")), ("archiveprefix", "arXiv"),
               ("doi", record.doi or record.arxiv_doi), ("url", record.url)]
    kind = "inproceedings" if record.venue else "misc"
    body = ",\n".join(_wrapped(f"  {name} = {{{value}}}") for name, value in fields)
    return f"@{kind}{{{record.key},\n{body}\n}}\n"


def bibliography_schema() -> dict:
    schema = PaperRecord.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "adapterspec bibliography record (papers/<key>.yaml)"
    return schema
