"""What the Catalog's explorer and the compare page need beyond the entries: trainable-parameter counts at a layer
size the reader types, evaluated from the entries' checked formulas.

The page evaluates a formula in the browser (``docs/javascripts/explorer.js``, a small interpreter of the same
language as `formula`, never ``eval``) with these names: ``d_in``, ``d_out``, the reader's ``r`` where the method has a
hyperparameter ``r``, and every other hyperparameter at the reference module's default. A default the module derives
from the layer (LoKr's ``u_p``, C3A's ``b``) has no fixed value; the build measures it on the meta device (no memory)
for a grid of common layer sizes, `SIZES`, and the page uses that table.
"""

from __future__ import annotations

import ast
import json
import math
from functools import lru_cache
from typing import Any

import torch

from adapterspec.catalog.formula import FormulaError, evaluate_formula
from adapterspec.registry import create, hyperparameters

DEFAULT_LAYER = (4096, 4096, 8)  # (d_in, d_out, r) shown with JavaScript off, and the explorer's starting point
SIZES = (64, 128, 256, 384, 512, 768, 1024, 1280, 1536, 2048, 2560, 3072, 3584, 4096, 5120, 6144, 8192, 11008,
         14336)


def formula_names(expr: str) -> list[str]:
    """The names a formula uses, in order of first appearance."""
    seen: list[str] = []
    for node in ast.walk(ast.parse(expr, mode="eval")):
        if isinstance(node, ast.Name) and node.id not in seen:
            seen.append(node.id)
    return seen


def _json_value(v: Any) -> bool:
    return v is None or isinstance(v, (bool, str)) or (isinstance(v, (int, float)) and math.isfinite(v))


def defaults(slug: str) -> dict[str, Any]:
    """The module's hyperparameter defaults that a page can carry (numbers, booleans, short strings, None)."""
    return {k: v for k, v in hyperparameters(slug).items() if _json_value(v)}


def _measured(slug: str, names: list[str], d_in: int, d_out: int) -> dict[str, Any] | None:
    """The values the module derives for ``names`` on a ``d_out × d_in`` layer (built on the meta device)."""
    try:
        module = create(slug, torch.nn.Linear(d_in, d_out, device="meta"))
    except Exception:  # noqa: BLE001 — a size this method cannot wrap
        return None
    values = {n: getattr(module, n, None) for n in names}
    return values if all(isinstance(v, int) and not isinstance(v, bool) for v in values.values()) else None


@lru_cache(maxsize=None)  # ~2 s for LoKr; the hook re-imports the package when a source file changes
def derived(slug: str, expr: str) -> dict[str, dict[str, Any]]:
    """For names the formula uses whose default is None (derived by the module from the layer): their value per
    ``"d_in,d_out"`` of `SIZES`; empty when there are none."""
    defaults_ = hyperparameters(slug)
    names = [n for n in formula_names(expr) if n in defaults_ and defaults_[n] is None
             and n not in ("d_in", "d_out", "r")]
    if not names or not _measured(slug, names, 256, 256):
        return {}
    table = {}
    for d_in in SIZES:
        for d_out in SIZES:
            values = _measured(slug, names, d_in, d_out)
            if values is not None:
                table[f"{d_in},{d_out}"] = values
    return table


def names_for(slug: str, expr: str, d_in: int, d_out: int, r: int) -> dict[str, Any]:
    """Every name the page would bind for this layer: defaults, the reader's r, d_in, d_out, derived values."""
    names = {**defaults(slug), "d_in": d_in, "d_out": d_out}
    if "r" in hyperparameters(slug):
        names["r"] = r
    table = derived(slug, expr)  # shared: never mutated
    if table:
        names.update(table.get(f"{d_in},{d_out}", {}))
    return names


def count(slug: str, expr: str, d_in: int, d_out: int, r: int) -> int | None:
    """The formula's trainable-parameter count for one layer, or None where it cannot be evaluated (a derived value
    outside `SIZES`, a size the method cannot wrap)."""
    try:
        return int(evaluate_formula(expr, names_for(slug, expr, d_in, d_out, r)))
    except (FormulaError, TypeError):
        return None


def row_data(slug: str, expr: str) -> dict[str, str]:
    """The data attributes the explorer reads for one method's parameter count."""
    used = formula_names(expr)
    defaults_ = defaults(slug)
    return {
        "formula": expr,
        "names": json.dumps({k: v for k, v in defaults_.items() if k in used and k not in ("d_in", "d_out")},
                            separators=(",", ":")),
        "uses-r": "1" if "r" in used and "r" in hyperparameters(slug) else "0",
        "derived": json.dumps(derived(slug, expr), separators=(",", ":")),
    }
