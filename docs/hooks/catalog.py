"""MkDocs hook: add the catalog's generated pages. Thin on purpose: the logic is in ``adapterspec.catalog``.

on_config  — load and verify every entry (cached by content), render the pages, list them in the navigation;
on_files   — add the generated pages in memory (nothing is written into docs/), and catalog.json with its schema;
on_page_markdown — fill ``<!-- adapterspec:NAME -->`` markers in hand-written pages;
on_page_content — swap the entries' text, rendered to HTML on its own, in for the tokens the pages carry (entry text
                  never passes through Python-Markdown: see ``adapterspec.catalog.render.Fragments``).
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
_command = "build"


def on_startup(command, dirty):
    global _command
    _command = command


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
    if not config.repo_url:  # a local build: no repository to link to, so no edit links (and no warnings)
        config.edit_uri = ""
    site, catalog = _engine()
    try:
        _build = site.build_site(ROOT, progress=log.info)
    except catalog.CatalogError as e:
        message = "catalog verification failed:\n  " + "\n  ".join(str(err) for err in e.errors)
        if _command != "serve":
            raise PluginError(message) from None
        log.error(message)  # and the browser shows it, instead of waiting for a build that never comes
        _build = site.error_site(ROOT, e.errors)
    # The reference implementations are included from src/ only: nothing else in the repository (.git/, a token
    # file) is reachable by a --8<-- line.
    snippets = config.mdx_configs.setdefault("pymdownx.snippets", {})
    snippets.update(base_path=[str(ROOT / "src")], restrict_base_path=True, check_paths=True)
    methods = [{title: path} for title, path in _build.method_pages]
    config.nav = [_expand(item, methods) for item in config.nav or []]
    return config


def _expand(item, methods):
    if isinstance(item, dict):
        ((title, value),) = item.items()
        if value == "methods/index.md":
            return {title: ["methods/index.md", *methods]}
    return item


class _Generated(File):
    """A generated page that `mkdocs serve --dirty` re-renders only when its content changed since the last build."""

    changed = True

    def is_modified(self) -> bool:
        return self.changed


def on_files(files, config):
    site = sys.modules["adapterspec.catalog.site"]
    for path, content in _build.pages.items():
        page = _Generated.generated(config, path, content=content)
        if path.startswith("methods/") and path != "methods/index.md":  # "edit" opens the entry, not a docs/ file
            page.edit_uri = f"../entries/{path.removeprefix('methods/')[:-3]}.yaml"
        page.changed = site.LAST_DIGESTS.get(path) != _build.digest(path)
        site.LAST_DIGESTS[path] = _build.digest(path)
        files.append(page)
    if _build.catalog is not None:  # the catalog as data (adapterspec.catalog.export)
        export = importlib.import_module("adapterspec.catalog.export")
        files.append(File.generated(config, "catalog.json", content=export.catalog_json(_build)))
        files.append(File.generated(config, export.SCHEMA_FILE, content=export.schema_json()))
        render = importlib.import_module("adapterspec.catalog.render")
        files.append(File.generated(config, "papers.bib", content=render.bibtex_file(_build.catalog.bibliography)))
    return files


def on_page_markdown(markdown, page, config, files):
    render = importlib.import_module("adapterspec.catalog.render")
    if _build.catalog is None:  # the error site: nothing to fill markers from
        return render.MARKER.sub("", markdown)
    try:
        return render.fill_markers(markdown, page.file.src_uri, _build.catalog, _build.results,
                                   _build.fragments_for(page.file.src_uri))
    except ValueError as e:
        raise PluginError(str(e)) from None


def on_page_content(html, page, config, files):
    if _build.errors:
        return _build.error_banner() + html
    try:
        return _build.fragments_for(page.file.src_uri).fill(html)
    except ValueError as e:
        raise PluginError(f"{page.file.src_uri}: {e}") from None
