"""entries/schema.json is generated from the loader's model, and every entry points editors at it."""

from __future__ import annotations

import json

from adapterspec.catalog.grade import MAX_SCORE, RUBRIC, grade, item_weight
from adapterspec.catalog.loader import load_themes, schema_text
from adapterspec.catalog.papers import normalise
from conftest import ENTRIES, entry_slugs


def test_schema_is_up_to_date():
    committed = (ENTRIES / "schema.json").read_text(encoding="utf-8")
    assert committed == schema_text(load_themes(ENTRIES)), "run `adapterspec schema --write` (make schema)"
    schema = json.loads(committed)
    assert "low-rank" in schema["properties"]["themes"]["items"]["enum"]


def test_every_entry_references_the_schema():
    for slug in entry_slugs():
        first = (ENTRIES / f"{slug}.yaml").read_text(encoding="utf-8").splitlines()[0]
        assert first == "# yaml-language-server: $schema=schema.json", slug


def test_grade_is_the_weighted_sum_of_supported_dimensions(catalog):
    assert MAX_SCORE == 8
    for item in catalog:
        g = grade(item.entry)
        dims = {ev.dimension for ev in item.entry.evidence}
        best = {d: max(item_weight(ev) for ev in item.entry.evidence if ev.dimension == d) for d in dims}
        assert g.score == round(sum(RUBRIC[d].points * best[d] for d in dims), 2)
        assert set(g.dimensions) == dims
        assert g.replicated == g.score  # without independent results nothing is taken away


def test_quote_normalisation():
    text = "low-rank adap-\ntation works\x00 well,   really"
    assert normalise("adaptation works well, really") in normalise(text)
    assert normalise("low-rank") in normalise(text)  # a real hyphen survives


def test_peft_code_links_name_real_classes(catalog):
    """Each entry's `code.peft` names a class that exists in the pinned peft (a dev dependency, never a runtime one)."""
    import importlib

    import pytest

    pytest.importorskip("peft")
    for item in catalog:
        path = item.entry.code.peft
        if path:
            module, _, name = path.rpartition(".")
            assert hasattr(importlib.import_module(module), name), f"{item.slug}: {path} not in peft"
