"""Paper texts, for checking that every evidence quote occurs in the paper it is attributed to.

The texts are third-party and never committed. The default folder is ``../shared/sources/papers`` beside the project
(set ``ADAPTERSPEC_PAPERS`` or pass ``--papers`` to use another); the git-ignored ``papers/text/`` is searched too.
A text is found for a bibliography record through a ``papers.tsv`` index beside or inside a folder (columns
``file``, ``arxiv_id``), or as ``<arxiv id>.md`` or ``<key>.md``, and used only if its SHA-256 is the record's.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from functools import lru_cache
from pathlib import Path

DEFAULT_PAPERS = Path("..") / "shared" / "sources" / "papers"


def normalise(text: str) -> str:
    """Make PDF-converted text and a quote comparable: drop NUL bytes, join hyphenation breaks, fold whitespace."""
    text = text.replace("\x00", "")
    text = re.sub(r"(?<=[A-Za-z])-\s+(?=[a-z])", "", text)  # "parame- ters" / "parame-\nters" -> "parameters"
    return re.sub(r"\s+", " ", text).strip()


class PaperTexts:
    """The saved paper texts, found by arXiv id or citation key, and trusted only when their SHA-256 equals the one
    the bibliography records (a different hash is a different version of the paper: its quotes are not checked).

    Folders searched: ``folder`` (or ``$ADAPTERSPEC_PAPERS``, or ``../shared/sources/papers``), then the project's
    git-ignored ``papers/text/``. ``available`` is False when none of them exists.
    """

    def __init__(self, folder: str | Path | None = None) -> None:
        from adapterspec.catalog.bibliography import BIBLIOGRAPHY, TEXT_FOLDER

        folder = folder or os.environ.get("ADAPTERSPEC_PAPERS") or DEFAULT_PAPERS
        self.folder = Path(folder)
        self.folders = [f for f in (self.folder, BIBLIOGRAPHY / TEXT_FOLDER) if f.is_dir()]
        self.available = bool(self.folders)
        self._index: dict[str, list[Path]] = {}
        for f in self.folders:
            for tsv in (f / "papers.tsv", f.parent / "papers.tsv"):
                if tsv.exists():
                    with tsv.open(encoding="utf-8") as fh:
                        for row in csv.DictReader(fh, delimiter="\t"):
                            self._index.setdefault(row["arxiv_id"].strip(), []).append((tsv.parent / row["file"]).resolve())

    def candidates(self, record) -> list[Path]:
        """Files that may hold ``record``'s text: indexed by its arXiv id, or named ``<arxiv id>.md`` / ``<key>.md``."""
        found = list(self._index.get(record.arxiv, []))
        for f in self.folders:
            found += [f / f"{record.arxiv}.md", f / f"{record.key}.md"]
        seen, out = set(), []
        for p in found:
            if p not in seen and p.is_file():
                seen.add(p)
                out.append(p)
        return out

    def find(self, record) -> tuple[Path | None, str]:
        """The file whose SHA-256 is the record's, and a reason when there is none."""
        paths = self.candidates(record)
        if record.text is None:
            return None, f"the bibliography records no text for '{record.key}' (papers/{record.key}.yaml: text.sha256)"
        for p in paths:
            if _sha256(str(p), p.stat().st_mtime_ns) == record.text.sha256:
                return p, "found"
        if paths:
            return None, (f"the saved text {paths[0]} is not the one recorded in papers/{record.key}.yaml (SHA-256 "
                          "differs: another version of the paper?); its quotes are not checked against it")
        return None, f"no saved text of arXiv:{record.arxiv} in {', '.join(map(str, self.folders)) or self.folder}"

    def text(self, record) -> str | None:
        p, _ = self.find(record)
        return _read_normalised(str(p), p.stat().st_mtime_ns) if p else None

    def contains(self, record, quote: str) -> bool:
        text = self.text(record)
        return text is not None and normalise(quote) in text

    def fingerprint(self, records) -> str:
        """Changes when any of the cited texts, or what the bibliography records of them, changes (part of the
        verification cache key)."""
        if not self.available:
            return "unavailable"
        parts = []
        for r in sorted(records, key=lambda r: r.key):
            p, _ = self.find(r)
            parts.append(f"{r.key}:{r.text.sha256 if r.text else '-'}:{p if p else '-'}")
        return ";".join(parts)


@lru_cache(maxsize=256)
def _sha256(path: str, _mtime: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@lru_cache(maxsize=64)
def _read_normalised(path: str, _mtime: int) -> str:
    return normalise(Path(path).read_text(encoding="utf-8", errors="replace"))
