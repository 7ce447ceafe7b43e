"""Paper texts, for checking that every evidence quote occurs in the paper it is attributed to.

The texts are third-party and never committed. The default folder is ``../shared/sources/papers`` beside the project
(set ``ADAPTERSPEC_PAPERS`` or pass ``--papers`` to use another). A text is found for an arXiv id through a
``papers.tsv`` index beside or inside the folder (columns ``file``, ``arxiv_id``), or as ``<arxiv id>.md``.
"""

from __future__ import annotations

import csv
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
    """The folder of paper texts, or nothing (``available`` is False) when it is absent."""

    def __init__(self, folder: str | Path | None = None) -> None:
        folder = folder or os.environ.get("ADAPTERSPEC_PAPERS") or DEFAULT_PAPERS
        self.folder = Path(folder)
        self.available = self.folder.is_dir()
        self._index: dict[str, Path] = {}
        if self.available:
            for tsv in (self.folder / "papers.tsv", self.folder.parent / "papers.tsv"):
                if tsv.exists():
                    with tsv.open(encoding="utf-8") as fh:
                        for row in csv.DictReader(fh, delimiter="\t"):
                            path = (tsv.parent / row["file"]).resolve()
                            self._index.setdefault(row["arxiv_id"].strip(), path)
            for md in self.folder.glob("*.md"):
                if re.fullmatch(r"\d{4}\.\d{4,5}", md.stem):
                    self._index.setdefault(md.stem, md)

    def path(self, arxiv: str) -> Path | None:
        p = self._index.get(arxiv)
        return p if p is not None and p.exists() else None

    def text(self, arxiv: str) -> str | None:
        p = self.path(arxiv)
        return _read_normalised(str(p), p.stat().st_mtime_ns) if p else None

    def version(self, arxiv: str) -> str | None:
        """The arXiv version of the saved text (``"v12"``), read from its ``arXiv:ID vN`` stamp, if it has one."""
        text = self.text(arxiv)
        m = re.search(re.escape(arxiv) + r"(v\d+)", text) if text else None
        return m.group(1) if m else None

    def text_of(self, arxiv: str, version: str | None) -> str | None:
        """The saved text, unless the entry cites another version of the paper than the one saved."""
        if version is not None and self.version(arxiv) not in (None, version):
            return None
        return self.text(arxiv)

    def contains(self, arxiv: str, quote: str) -> bool:
        text = self.text(arxiv)
        return text is not None and normalise(quote) in text

    def fingerprint(self, arxiv_ids: list[str]) -> str:
        """Changes when any of the cited texts changes (part of the verification cache key)."""
        parts = []
        for a in sorted(arxiv_ids):
            p = self.path(a)
            parts.append(f"{a}:{p.stat().st_size}:{p.stat().st_mtime_ns}" if p else f"{a}:-")
        return ";".join(parts) if self.available else "unavailable"


@lru_cache(maxsize=64)
def _read_normalised(path: str, _mtime: int) -> str:
    return normalise(Path(path).read_text(encoding="utf-8", errors="replace"))
