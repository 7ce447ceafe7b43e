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


SKIP_COPY = {".git", ".venv", "site", ".cache", "__pycache__", ".pytest_cache", "node_modules"}


def copy_project(dest: Path) -> Path:
    """A copy of the project (no .git, .venv, site or caches) at ``dest``, with ../shared beside it as the real
    project has, for tests that change files or run the build on a modified tree."""
    import shutil

    shutil.copytree(ROOT, dest, ignore=lambda d, names: [n for n in names if n in SKIP_COPY or n.startswith(".site-")])
    shared = dest.parent / "shared"
    if not shared.exists() and (ROOT.parent / "shared").exists():
        shared.symlink_to(ROOT.parent / "shared")
    return dest
