from __future__ import annotations

from pathlib import Path

import pytest

from adapterspec.catalog import load_catalog
from adapterspec.catalog.papers import PaperTexts

ROOT = Path(__file__).resolve().parents[1]
ENTRIES = ROOT / "entries"
PAPERS = ROOT.parent / "shared" / "sources" / "papers"


def entry_slugs() -> list[str]:
    return sorted(p.stem for p in ENTRIES.glob("*.yaml") if p.name != "themes.yaml")


@pytest.fixture(scope="session")
def catalog():
    return load_catalog(ENTRIES)


@pytest.fixture(scope="session")
def papers():
    return PaperTexts(PAPERS)
