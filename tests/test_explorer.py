"""The explorer's parameter counts: the entries' checked formulas, evaluated for a layer the reader types."""

from __future__ import annotations

import json

import torch

from adapterspec.catalog import explorer
from adapterspec.registry import create


def test_counts_follow_the_formula_and_the_typed_rank(catalog):
    lora = catalog.entries["lora"].entry.properties.trainable_parameters
    assert explorer.count("lora", lora, 4096, 4096, 8) == 8 * (4096 + 4096)
    assert explorer.count("lora", lora, 768, 3072, 16) == 16 * (768 + 3072)
    ia3 = catalog.entries["ia3"].entry.properties.trainable_parameters
    assert explorer.count("ia3", ia3, 4096, 11008, 8) == 11008  # no r: the module's defaults (output scaling)


def test_counts_equal_the_module_on_every_entry_where_they_can_be_evaluated(catalog):
    """At 1024 × 4096 and r = 8 the formula, with the module's defaults, gives the module's own count (built on the
    meta device, so no memory is used)."""
    for item in catalog:
        slug, expr = item.entry.module_slug, item.entry.properties.trainable_parameters
        n = explorer.count(slug, expr, 1024, 4096, 8)
        hp = {"r": 8} if "r" in explorer.hyperparameters(slug) else {}
        try:
            module = create(slug, torch.nn.Linear(1024, 4096, device="meta"), **hp)
        except Exception:  # noqa: BLE001 — a method that cannot wrap this layer: nothing to compare
            assert n is None or item.slug == "ln-tuning", item.slug
            continue
        if item.slug == "ln-tuning":  # wraps a LayerNorm, not this Linear
            continue
        assert n == module.num_trainable(), item.slug


def test_values_the_module_derives_come_from_a_measured_table(catalog):
    expr = catalog.entries["lokr"].entry.properties.trainable_parameters
    table = explorer.derived("lokr", expr)
    assert table["4096,4096"] == {"u_p": 64, "u_q": 64}
    assert explorer.count("lokr", expr, 4096, 4096, 8) == create(
        "lokr", torch.nn.Linear(4096, 4096, device="meta"), r=8).num_trainable()
    assert explorer.count("lokr", expr, 4097, 4096, 8) is None  # outside the table: not guessed
    data = explorer.row_data("lokr", expr)
    assert json.loads(data["derived"])["4096,4096"] == {"u_p": 64, "u_q": 64} and data["uses-r"] == "1"
    assert explorer.derived("lora", catalog.entries["lora"].entry.properties.trainable_parameters) == {}
