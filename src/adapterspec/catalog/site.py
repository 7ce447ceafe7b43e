"""One call that turns ``entries/`` into the site's generated pages: load, verify (cached), render.

The MkDocs hook (``docs/hooks/catalog.py``) is a thin wrapper around `build_site`; so is the test suite.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from adapterspec.catalog.benchmark import DEFAULT_BENCHMARK, Benchmark
from adapterspec.catalog.cache import peft_equality, verify_cached
from adapterspec.catalog.errors import CatalogError, EntryError
from adapterspec.catalog.loader import Catalog, load_catalog
from adapterspec.catalog.papers import DEFAULT_PAPERS, PaperTexts
from adapterspec.catalog.render import index_page, method_page, peft_page
from adapterspec.catalog.verify import Result

log = logging.getLogger("adapterspec")
SPEED = "docs/data/peft_speed.json"  # written by scripts/bench_peft.py --write


@dataclass
class SiteBuild:
    catalog: Catalog
    results: dict[str, Result]
    pages: dict[str, str]  # docs-relative path -> markdown
    peft: dict[str, tuple[object, str]]  # slug -> (Equality or None, why not / "cached")

    @property
    def method_pages(self) -> list[tuple[str, str]]:
        """(title, path) of every method page, in catalog order, for the navigation."""
        return [(it.entry.name, f"methods/{it.slug}.md") for it in self.catalog]


def build_site(root: Path, entries: str = "entries", papers: str | None = None, cache: str | None = ".cache/verify",
               progress: Callable[[str], None] = log.info, benchmark: str | None = None) -> SiteBuild:
    """Load and verify every entry, then render the catalog index and one page per method.

    Raises:
        CatalogError: bad input, or any entry failing verification (each error names its file, field and line).
    """
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
    results: dict[str, Result] = {}
    for item in catalog:
        result, cached = verify_cached(item, texts, bench, root / cache if cache else None)
        results[item.slug] = result
        progress(f"adapterspec: {result.summary()}{'  (cached)' if cached else ''}")
    failed = [r for r in results.values() if not r.ok]
    if failed:
        raise CatalogError([err for r in failed for err in r.errors()])
    peft: dict[str, tuple[object, str]] = {}
    errors = []
    for item in catalog:  # the same weights through peft's layer and ours (when peft is installed)
        eq, note = peft[item.slug] = peft_equality(item, root / cache if cache else None)
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
    pages = {"methods/index.md": index_page(catalog, results, bench, peft),
             "peft.md": peft_page(catalog, peft, speed, ", ".join(sorted(versions)) or None)}
    for item in catalog:
        pages[f"methods/{item.slug}.md"] = method_page(item, results[item.slug], catalog, root, bench, peft[item.slug])
    return SiteBuild(catalog, results, pages, peft)
