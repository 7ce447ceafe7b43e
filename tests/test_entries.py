"""Every entry of the catalog verifies: one test per entry, the same function the CLI and the site build call."""

from __future__ import annotations

import pytest

from adapterspec.catalog import verify_entry
from conftest import entry_slugs


@pytest.mark.parametrize("slug", entry_slugs())
def test_entry_verifies(slug, catalog, papers):
    result = verify_entry(catalog.entries[slug], papers)
    assert result.ok, "\n".join(str(e) for e in result.errors())
    # The comparison was real: pseudocode compared on every configuration, on a randomized state.
    assert any(c.name.startswith("pseudocode.forward") for c in result.checks)
    assert result.max_error < 1e-9


@pytest.mark.parametrize("slug", entry_slugs())
def test_quotes_checked_against_paper_text(slug, catalog, papers):
    if not papers.available:
        pytest.skip(f"paper texts not available at {papers.folder}")
    result = verify_entry(catalog.entries[slug], papers)
    quote_checks = [c for c in result.checks if c.name.startswith("quote")]
    item = catalog.entries[slug]
    entry = item.entry
    # a quote may go unchecked only when its paper has no saved text recorded (then the page says so)
    without_text = [ev for ev in entry.evidence if item.papers[ev.paper].text is None]
    assert result.quotes == ("none" if not entry.evidence else "partly unchecked" if without_text else "checked")
    assert len(quote_checks) == len(entry.evidence) - len(without_text)
    assert all(c.ok for c in quote_checks)
    if not entry.evidence:  # only acceptable when no cited paper's text (of the cited version) can be checked against
        assert not any(papers.find(record)[0] for record in catalog.entries[slug].papers.values()), \
            f"{slug}: a saved text of a cited paper exists; add evidence"
        assert any("ungraded" in c for c in entry.caveats), f"{slug}: say on the page why it has no evidence"


def test_without_paper_texts_quotes_are_unchecked_not_passed(catalog, tmp_path):
    from adapterspec.catalog.papers import PaperTexts

    result = verify_entry(catalog.entries["lora"], PaperTexts(tmp_path / "missing"))
    assert result.ok
    assert result.quotes == "unchecked"
    assert not any(c.name.startswith("quote") for c in result.checks)


def test_every_method_module_has_an_entry(catalog):
    import adapterspec

    assert sorted(it.entry.module_slug for it in catalog) == adapterspec.available()
