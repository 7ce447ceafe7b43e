"""The site builds with --strict (zero warnings), and every method page shows the executed pseudocode and the
reference implementation in tabs."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, entry_slugs


def _text(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WARNING -" not in proc.stderr, proc.stderr
    return out


@pytest.mark.parametrize("slug", entry_slugs())
def test_method_page_has_pseudocode_and_implementation_tabs(site, slug, catalog):
    page = (site / "methods" / slug / "index.html").read_text(encoding="utf-8")
    assert 'class="tabbed-set' in page
    labels = re.findall(r"<label[^>]*>([^<]+)</label>", page)
    assert "Pseudocode" in labels and "Reference implementation" in labels
    text = _text(page)
    for line in catalog.entries[slug].entry.pseudocode.splitlines():
        if line.strip():
            assert line.strip() in text, f"pseudocode line missing from the page: {line!r}"
    assert "--8<--" not in text
    import adapterspec
    from adapterspec.catalog.render import includes

    for inc in includes(adapterspec.adapter_class(slug).slug, ROOT):
        source = (ROOT / inc.path).read_text(encoding="utf-8")
        section = source.split(f"[start:{inc.section}]")[1].split(f"# --8<-- [end:{inc.section}]")[0]
        for line in section.splitlines()[1:]:
            if line.strip():
                assert line.strip() in text, f"implementation line missing from the page: {line!r}"
    assert "Verified:" in text and "checks passed" in text
    assert "Independent results" in text


def test_catalog_index_lists_every_entry_with_its_score(site, catalog):
    from adapterspec.catalog import grade

    text = _text((site / "methods" / "index.html").read_text(encoding="utf-8"))
    for item in catalog:
        assert item.entry.name in text
        assert grade(item.entry).breakdown in text


def test_markers_are_filled(site):
    home = _text((site / "index.html").read_text(encoding="utf-8"))
    assert "adapterspec:" not in home and "Widely adopted" in home
    themes = _text((site / "themes" / "index.html").read_text(encoding="utf-8"))
    assert "Low-rank updates" in themes and "LoRA" in themes


def test_api_reference_is_rendered(site):
    text = _text((site / "reference" / "api" / "index.html").read_text(encoding="utf-8"))
    assert "randomize_" in text and "Adapter" in text
