"""The arena page and the findings page, generated from the committed results file (never by running the arena).

``docs/data/arena.json`` is written by ``adapterspec arena``; ``docs/assets/arena/heatmap.svg`` beside it too. The
build reads both, and ``docs/data/argument_map.yaml`` (our restatement of the earlier catalog's argument map).
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import yaml

from adapterspec.arena import findings as F
from adapterspec.arena import predict, settings
from adapterspec.catalog.benchmark import Benchmark

RESULTS = "docs/data/arena.json"
HEATMAP = "docs/assets/arena/heatmap.svg"
ARGUMENT_MAP = "docs/data/argument_map.yaml"
EARLIER = ("the earlier catalog ([Adapters as Representational Hypotheses]"
           "(https://github.com/wassname/adapters_as_hypotheses))")


def load_results(root: Path) -> dict | None:
    path = root / RESULTS
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _env():
    from adapterspec.catalog.render import _env as env

    return env


def _names(catalog) -> dict[str, tuple[str, str]]:
    """module slug -> (display name, page path relative to the site root)."""
    return {it.entry.module_slug: (it.entry.name, f"methods/{it.slug}.md") for it in catalog}


def coverage(doc: dict) -> dict:
    """How much of the full grid the results file holds."""
    from adapterspec.arena import tier1
    from adapterspec.arena.budget import applicable
    from adapterspec.registry import available

    methods = [m for m in available() if applicable(m) is None]
    full = len(methods) * len(tier1.TARGETS) * len(settings.BUDGETS)
    have = len({(r["method"], r["target"], r["budget"]) for r in doc.get("summary", [])})
    missing = sorted(set(methods) - {r["method"] for r in doc.get("summary", [])})
    return {"cells": have, "full": full, "missing_methods": missing,
            "targets": sorted({r["target"] for r in doc.get("summary", [])}),
            "budgets": sorted({r["budget"] for r in doc.get("summary", [])})}


def arena_page(root: Path, catalog, frag) -> str:
    doc = load_results(root)
    if doc is None:
        return "# The arena\n\nNo results file is committed yet (`docs/data/arena.json`): run `adapterspec arena`.\n"
    svg_path = root / HEATMAP
    heatmap = frag._add(f'<div class="arena-figure">{svg_path.read_text(encoding="utf-8")}</div>') \
        if svg_path.exists() else None
    preds = predict.predict(catalog, doc)
    rows = doc["summary"]
    budgets = sorted({r["budget"] for r in rows})
    methods = sorted({r["method"] for r in rows})
    cell = {(r["method"], r["target"], r["budget"]): r for r in rows}
    choice = {(r["method"], r["budget"]): r for r in reversed(rows)}  # what each method trains at each budget
    runs, prov = [], doc["provenance"]
    while prov:  # the run that wrote the file, then the runs it was merged with (`adapterspec arena --merge`)
        runs.append(prov)
        prov = prov.get("merged_with")
    return _env().get_template("arena.md.j2").render(
        doc=doc, s=doc["settings"], prov=doc["provenance"], runs=runs, cov=coverage(doc), heatmap=heatmap, preds=preds,
        rules=predict.RULES, budgets=budgets, methods=methods, cell=cell, choice=choice, names=_names(catalog),
        over=settings.OVER_BUDGET, fit=settings.FIT, fail=settings.FAIL, earlier=EARLIER,
        t2=doc.get("tier2"), tier2_doc=_tier2_doc())


def _tier2_doc() -> str:
    """The task description, from `tier2`'s module docstring (one source for the code and the page)."""
    from adapterspec.arena import tier2

    doc = tier2.__doc__.split("\n", 2)[2]  # after the title line and the blank line
    for name in ("SOURCE_LENGTHS", "ID_LENGTHS", "OOD_LENGTHS"):
        lo, hi = getattr(tier2, name)
        doc = doc.replace(f"``{name}``", f"{lo}–{hi}")
    return doc.replace("``K``", str(tier2.K)).replace("K−1", str(tier2.K - 1)).replace("``", "`")


def _badge(verdict: str) -> str:
    icon = {F.SUPPORTED: ":material-check-circle:", F.CONTRADICTED: ":material-close-circle:",
            F.MIXED: ":material-circle-half-full:", F.NOT_TESTED: ":material-circle-outline:"}[verdict]
    return f"{icon} {verdict}"


def _tree(node: dict, results: dict[int, F.ClaimResult], depth: int = 0) -> str:
    """One node of the argument map and its children, as nested HTML lists (collapsible below the top level)."""
    stance = node.get("stance")
    arrow = {"supports": "supports ↑", "attacks": "attacks ↯"}.get(stance, "thesis")
    label = html.escape(node["label"])
    bits = [f'<span class="arena-stance arena-{html.escape(stance or "thesis")}">{arrow}</span> '
            f"<strong>{label}</strong>"]
    if "credence" in node:
        bits.append(f' <span class="arena-credence" title="typed by hand in the earlier catalog, not computed">'
                    f"hand-typed credence {node['credence']:.2f}</span>")
    claim = node.get("claim")
    if claim in results:
        r = results[claim]
        bits.append(f' <a class="arena-verdict arena-{r.verdict.replace(" ", "-")}" href="#claim-{claim}">'
                    f"claim {claim}: {r.verdict}, {r.evidence_count} pieces of evidence</a>")
    text = f'<p class="arena-node-text">{html.escape(node["text"])}</p>' if node.get("text") else ""
    kids = node.get("children") or []
    inner = "".join(_tree(k, results, depth + 1) for k in kids)
    body = f"{''.join(bits)}{text}" + (f"<ul>{inner}</ul>" if inner else "")
    return f"<li>{body}</li>"


def argument_map_html(root: Path, results: list[F.ClaimResult]) -> str | None:
    path = root / ARGUMENT_MAP
    if not path.exists():
        return None
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    by_n = {r.claim.n: r for r in results}
    thesis = {**data["thesis"], "children": data["arguments"]}
    return f'<ul class="arena-argmap">{_tree(thesis, by_n)}</ul>'


def findings_page(root: Path, catalog, bench: Benchmark, frag) -> str:
    doc = load_results(root)
    results = F.findings(catalog, doc, bench)
    argmap = argument_map_html(root, results)
    return _env().get_template("findings.md.j2").render(
        results=results, doc=doc, prov=(doc or {}).get("provenance"), cov=coverage(doc) if doc else None,
        names=_names(catalog), rules=F.SOURCE_RULES, combine=F.COMBINE_RULE, badge=_badge, earlier=EARLIER,
        argmap=frag._add(argmap) if argmap else None, bench_available=bench.available,
        full_rank_themes=F.FULL_RANK_THEMES)
