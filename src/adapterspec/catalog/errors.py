"""Errors about catalog input, written for the person who has to fix the file."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EntryError:
    """One problem in one file: where (file, line, field) and what was expected."""

    file: str
    message: str
    field: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line else "")
        what = f"field '{self.field}': " if self.field else ""
        return f"{where}: {what}{self.message}"


class CatalogError(Exception):
    """Bad input in ``entries/``; ``errors`` lists every problem found, each naming its file."""

    def __init__(self, errors: list[EntryError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))
