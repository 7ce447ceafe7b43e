"""The catalog engine: load and validate ``entries/``, verify every entry against its reference module, grade it,
render its pages. Plain Python, called from pytest, the CLI and the MkDocs hook alike."""

from adapterspec.catalog.errors import CatalogError, EntryError
from adapterspec.catalog.grade import RUBRIC, Grade, grade
from adapterspec.catalog.loader import Catalog, load_catalog, load_entries
from adapterspec.catalog.model import Entry
from adapterspec.catalog.verify import Check, Result, verify, verify_entry

__all__ = [
    "RUBRIC", "Catalog", "CatalogError", "Check", "Entry", "EntryError", "Grade", "Result",
    "grade", "load_catalog", "load_entries", "verify", "verify_entry",
]
