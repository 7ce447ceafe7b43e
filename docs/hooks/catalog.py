"""MkDocs hook: add the catalog's generated pages. Thin on purpose: the logic is in ``adapterspec.catalog``.

on_config  — load and verify every entry (cached by content), render the pages, list them in the navigation;
on_files   — add the generated pages in memory (nothing is written into docs/);
on_page_markdown — fill ``<!-- adapterspec:NAME -->`` markers in hand-written pages.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import sys
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "adapterspec"
log = logging.getLogger("mkdocs.hooks.catalog")
_build = None


def _engine():
    """``adapterspec.catalog.site``, re-imported when the package's source changed (``mkdocs serve`` is one process)."""
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(SRC.rglob("*.py")))).hexdigest()
    loaded = sys.modules.get("adapterspec")
    if loaded is not None and getattr(loaded, "_source_digest", digest) != digest:
        for name in [m for m in sys.modules if m == "adapterspec" or m.startswith("adapterspec.")]:
            del sys.modules[name]
    importlib.import_module("adapterspec")._source_digest = digest
    return importlib.import_module("adapterspec.catalog.site"), importlib.import_module("adapterspec.catalog")


def on_config(config):
    global _build
    site, catalog = _engine()
    try:
        _build = site.build_site(ROOT, progress=log.info)
    except catalog.CatalogError as e:
        raise PluginError("catalog verification failed:\n  " + "\n  ".join(str(err) for err in e.errors)) from None
    config.mdx_configs.setdefault("pymdownx.snippets", {})["base_path"] = [str(ROOT)]
    methods = [{title: path} for title, path in _build.method_pages]
    config.nav = [_expand(item, methods) for item in config.nav or []]
    return config


def _expand(item, methods):
    if isinstance(item, dict):
        ((title, value),) = item.items()
        if value == "methods/index.md":
            return {title: ["methods/index.md", *methods]}
    return item


def on_files(files, config):
    for path, content in _build.pages.items():
        files.append(File.generated(config, path, content=content))
    return files


def on_page_markdown(markdown, page, config, files):
    render = importlib.import_module("adapterspec.catalog.render")
    try:
        return render.fill_markers(markdown, page.file.src_uri, _build.catalog, _build.results)
    except ValueError as e:
        raise PluginError(str(e)) from None
