"""One call that turns ``entries/`` into the site's generated pages: load, verify (cached), render.

The MkDocs hook (``docs/hooks/catalog.py``) is a thin wrapper around `build_site`; so is the test suite.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from adapterspec.arena import pages as arena_pages
from adapterspec.catalog.benchmark import DEFAULT_BENCHMARK, Benchmark
from adapterspec.catalog.cache import PeftEqualities, cached_result, store_result
from adapterspec.catalog.errors import CatalogError, EntryError
from adapterspec.catalog.loader import Catalog, load_catalog
from adapterspec.catalog.papers import DEFAULT_PAPERS, PaperTexts
from adapterspec.catalog.render import (Fragments, benchmark_page, bibliography_page, compare_page, evidence_page,
                                        index_page, method_page, peft_page)
from adapterspec.catalog.verify import Result, verify_entries

log = logging.getLogger("adapterspec")
SPEED = "docs/data/peft_speed.json"  # written by scripts/bench_peft.py --write
LAST_DIGESTS: dict[str, str] = {}  # page -> digest in the last build of this process (`mkdocs serve --dirty`)


@dataclass
class SiteBuild:
    catalog: Catalog | None  # None when the catalog failed (`error_site`)
    results: dict[str, Result]
    pages: dict[str, str]  # docs-relative path -> markdown
    peft: dict[str, tuple[object, str]]  # slug -> (Equality or None, why not / "cached")
    fragments: dict[str, Fragments]  # per page: entry text as HTML, swapped in after Python-Markdown
    errors: list[EntryError] = field(default_factory=list)  # why the catalog failed (`error_site`)
    bench: Benchmark | None = None  # the independent results the grades were computed with

    def fragments_for(self, page: str) -> Fragments:
        """The page's fragment store (hand-written pages get one when a marker first needs it)."""
        return self.fragments.setdefault(page, Fragments(page))

    def digest(self, page: str) -> str:
        """What decides whether a generated page changed since the last build: its Markdown and its fragments."""
        return hashlib.sha256((self.pages[page] + self.fragments_for(page).digest()).encode()).hexdigest()

    @property
    def method_pages(self) -> list[tuple[str, str]]:
        """(title, path) of every method page, in catalog order, for the navigation."""
        if self.catalog is None:
            return [(path.removeprefix("methods/").removesuffix(".md"), path) for path in self.pages
                    if path.startswith("methods/") and path != "methods/index.md"]
        return [(it.entry.name, f"methods/{it.slug}.md") for it in self.catalog]

    def error_banner(self) -> str:
        """HTML that says why the catalog failed, for the top of every page while it does (`mkdocs serve`)."""
        items = "".join(f"<li><code>{html.escape(str(e))}</code></li>" for e in self.errors)
        return ('<div class="admonition failure"><p class="admonition-title">The catalog failed to build; '
                f"fix the entries and save again</p><ul>{items}</ul></div>")


def error_site(root: Path, errors: list[EntryError], entries: str = "entries") -> SiteBuild:
    """The site to serve while the catalog fails: the catalog page and a page for every entry file, each naming the
    problems (file, line, field), instead of a build that never finishes (`mkdocs serve`)."""
    stems = sorted(p.stem for p in (root / entries).glob("*.yaml")
                   if p.name != "themes.yaml" and re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", p.stem))
    def relative(e: EntryError) -> EntryError:
        path = Path(e.file)
        shown = path.relative_to(root).as_posix() if path.is_relative_to(root) else e.file
        return EntryError(shown, e.message, e.field, e.line)

    errors = [relative(e) for e in errors]
    pages = {"methods/index.md": "# Catalog\n\nThe catalog failed to build: see the errors above.\n"}
    for stem in stems:
        pages[f"methods/{stem}.md"] = f"# {stem}\n\nThe catalog failed to build: see the errors above.\n"
    return SiteBuild(None, {}, pages, {}, {}, errors)


def symlinks(root: Path, names: tuple[str, ...]) -> list[Path]:
    """Every symbolic link at or below ``root / name`` for each name (links are not followed)."""
    found = []
    for name in names:
        top = root / name
        if top.is_symlink():
            found.append(top)
            continue
        for folder, dirs, files in os.walk(top):
            found += [Path(folder) / n for n in (*dirs, *files) if (Path(folder) / n).is_symlink()]
    return sorted(found)


def build_site(root: Path, entries: str = "entries", papers: str | None = None, cache: str | None = ".cache/verify",
               progress: Callable[[str], None] = log.info, benchmark: str | None = None) -> SiteBuild:
    """Load and verify every entry, then render the catalog index and one page per method.

    Raises:
        CatalogError: bad input, or any entry failing verification (each error names its file, field and line).
    """
    links = symlinks(root, (entries, "docs", "src", "mkdocs.yml"))
    if links:
        raise CatalogError([EntryError(str(p), "symbolic links are not allowed in folders the build reads (a link can "
                                       "publish any file of the build machine); commit the file itself")
                            for p in links])
    catalog = load_catalog(root / entries)
    if papers is None:  # $ADAPTERSPEC_PAPERS, else the default folder beside the project (not beside the cwd)
        papers = os.environ.get("ADAPTERSPEC_PAPERS") or str(root / DEFAULT_PAPERS)
    texts = PaperTexts(papers if Path(papers).is_absolute() else root / papers)
    if not texts.available:
        progress(f"adapterspec: paper texts not found at {texts.folder}; evidence quotes are reported as unchecked")
    if benchmark is None:
        benchmark = os.environ.get("ADAPTERSPEC_BENCHMARK") or str(root / DEFAULT_BENCHMARK)
    bench = Benchmark(benchmark if Path(benchmark).is_absolute() else root / benchmark)
    if not bench.available:
        progress(f"adapterspec: benchmark results not found at {bench.folder}; pages will say so")
    # peft's equality matrix (trusted code: our converters against peft) runs in a forked process meanwhile.
    equalities = PeftEqualities(list(catalog), root / cache if cache else None)
    cache_dir = root / cache if cache else None
    results: dict[str, Result] = {}
    for item in catalog:
        hit = cached_result(item, texts, bench, cache_dir)
        if hit is not None:
            results[item.slug] = hit
            progress(f"adapterspec: {hit.summary()}  (cached)")
    todo = [item for item in catalog if item.slug not in results]
    fresh = verify_entries(todo, texts, bench, lambda r: progress(f"adapterspec: {r.summary()}"))
    for item, result in zip(todo, fresh):
        store_result(item, texts, bench, cache_dir, result)
        results[item.slug] = result
    results = {item.slug: results[item.slug] for item in catalog}
    failed = [r for r in results.values() if not r.ok]
    if failed:
        raise CatalogError([err for r in failed for err in r.errors()])
    peft = equalities.result()
    errors = []
    for item in catalog:  # the same weights through peft's layer and ours (when peft is installed)
        eq, note = peft[item.slug]
        if eq is not None:
            progress(f"adapterspec: peft  {item.slug:<12} {len(eq.cases):>3} cases  equal: {eq.ok}"
                     f"{'  (cached)' if note == 'cached' else ''}")
            errors += [EntryError(str(item.path), f"peft equality: {f}", field="code.peft",
                                  line=item.line_of("code", "peft")) for f in eq.failures()]
    if errors:
        raise CatalogError(errors)
    speed_file = root / SPEED
    speed = json.loads(speed_file.read_text()) if speed_file.exists() else None
    versions = {eq.peft_version for eq, _ in peft.values() if eq is not None}
    frags = {path: Fragments(path) for path in ("methods/index.md", "peft.md", "evidence.md", "compare.md",
                                                "benchmark.md", "bibliography.md", "arena.md", "findings.md",
                                                *(f"methods/{it.slug}.md" for it in catalog))}
    pages = {"methods/index.md": index_page(catalog, results, frags["methods/index.md"], bench, peft),
             "peft.md": peft_page(catalog, peft, speed, ", ".join(sorted(versions)) or None, frags["peft.md"]),
             "evidence.md": evidence_page(catalog, results, frags["evidence.md"], bench),
             "compare.md": compare_page(catalog, results, frags["compare.md"], bench, peft),
             "benchmark.md": benchmark_page(catalog, frags["benchmark.md"], bench),
             "bibliography.md": bibliography_page(catalog, frags["bibliography.md"]),
             # the arena's committed results (docs/data/arena.json), never a run of the arena
             "arena.md": arena_pages.arena_page(root, catalog, frags["arena.md"]),
             "findings.md": arena_pages.findings_page(root, catalog, bench, frags["findings.md"])}
    for item in catalog:
        path = f"methods/{item.slug}.md"
        pages[path] = method_page(item, results[item.slug], catalog, root, frags[path], bench, peft[item.slug])
    return SiteBuild(catalog, results, pages, peft, frags, bench=bench)
