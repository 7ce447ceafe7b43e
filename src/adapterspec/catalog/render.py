"""Markdown for the site, generated from the catalog and its verification results (Jinja2 templates).

Nothing here is typed by hand: tables, scores, badges, errors and code listings all come from ``entries/``, the
verification `Result` and the reference modules' sources.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2
import torch

from adapterspec.catalog.benchmark import SETTING, Benchmark, Comparison, compare
from adapterspec.catalog.grade import MAX_SCORE, RUBRIC, grade
from adapterspec.catalog.loader import Catalog, LoadedEntry
from adapterspec.catalog.verify import Result
from adapterspec.registry import adapter_class

SECTIONS = ("init", "update")  # marked in each method file: `# --8<-- [start:init]` ... `# --8<-- [end:init]`
MARKER = re.compile(r"<!--\s*adapterspec:([a-z-]+)\s*-->")

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("adapterspec.catalog", "templates"),
    trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined,
)
_env.filters["cell"] = lambda s: re.sub(r"\s+", " ", str(s)).replace("|", "\\|").strip()
_env.filters["sci"] = lambda x: f"{x:.1e}" if x else "0"
_env.filters["pts"] = lambda x: f"{x:g}"
_env.filters["sentence"] = lambda s: s[:1].upper() + s[1:]  # unlike `capitalize`, keeps "A" in "init of A"


@dataclass
class Include:
    """A marked section of a method's source file, included verbatim into its page."""

    path: str  # relative to the project root, as pymdownx.snippets resolves it
    section: str
    owner: str  # the class whose file holds it (PiSSA's forward is LoRA's)


def includes(slug: str, root: Path) -> list[Include]:
    """The ``init`` and ``update`` sections of the method's class, looked up along its base classes."""
    found = []
    for section in SECTIONS:
        for cls in adapter_class(slug).__mro__:
            if not cls.__module__.startswith("adapterspec.methods."):
                continue
            path = Path(inspect.getfile(cls)).resolve()
            if f"[start:{section}]" in path.read_text(encoding="utf-8"):
                found.append(Include(path.relative_to(root.resolve()).as_posix(), section, cls.__name__))
                break
    return found


def _quote_status(result: Result, i: int) -> str:
    for c in result.checks:
        if c.field == f"evidence[{i}].quote":
            return "found" if c.ok else "missing"
    return "unchecked"


def method_page(item: LoadedEntry, result: Result, catalog: Catalog, root: Path, bench: Benchmark | None = None,
                peft: tuple[object, str] = (None, "")) -> str:
    e = item.entry
    comparison = compare(bench, e.benchmark) if bench is not None else None
    return _env.get_template("method.md.j2").render(
        peft_eq=peft[0], peft_note=peft[1], **_converter_doc(e.module_slug, root),
        comparison=comparison, setting=SETTING, bench_folder=bench.folder if bench else None,
        contradictions=_contradictions(e, comparison),
        e=e, item=item, result=result, g=grade(e), rubric=RUBRIC, max_score=MAX_SCORE,
        themes=catalog.themes, catalog=catalog, includes=includes(e.module_slug, root),
        quote_status=[_quote_status(result, i) for i in range(len(e.evidence))],
        cls=adapter_class(e.module_slug),
        source_path=Path(inspect.getfile(adapter_class(e.module_slug))).resolve().relative_to(root.resolve()).as_posix(),
    )


SPEED_TARGET = 1.5  # ours / peft, forward + backward


def _converter_doc(slug: str, root: Path) -> dict[str, str]:
    """The converter module's docstring, minus its title line, for the method page."""
    from adapterspec.interop.peft import converters

    conv = converters().get(slug)
    if conv is None:
        return {"peft_doc": "", "peft_path": ""}
    body = inspect.cleandoc(conv.__doc__ or "").partition("\n")[2].strip()
    return {"peft_doc": body, "peft_path": Path(conv.__file__).resolve().relative_to(root.resolve()).as_posix()}


def _contradictions(entry, comparison: Comparison | None) -> dict[str, str]:
    """Rubric dimensions the entry claims and the independent benchmark contradicts, with the reason."""
    if comparison is None:
        return {}
    claimed = grade(entry).dimensions
    return {d: why for d in claimed if (why := comparison.contradicts(d))}


def index_page(catalog: Catalog, results: dict[str, Result], bench: Benchmark | None = None,
               peft: dict[str, tuple[object, str]] | None = None) -> str:
    rows = sorted(catalog, key=lambda it: (-grade(it.entry).score, it.entry.name.lower()))
    contradictions = {it.slug: _contradictions(it.entry, compare(bench, it.entry.benchmark) if bench else None)
                      for it in rows}
    return _env.get_template("index.md.j2").render(
        rows=rows, results=results, grade=grade, themes=catalog.themes, max_score=MAX_SCORE, rubric=RUBRIC,
        contradictions=contradictions, peft=peft or {})


def peft_page(catalog: Catalog, peft: dict[str, tuple[object, str]], speed: dict | None,
              peft_version: str | None) -> str:
    """The equality summary over every entry, and the speed table from ``docs/data/peft_speed.json``."""
    from adapterspec.interop.peft import converters

    notes = {slug: getattr(c, "SPEED_NOTE", None) for slug, c in converters().items()}
    return _env.get_template("peft.md.j2").render(
        catalog=catalog, peft=peft, speed=speed, target=SPEED_TARGET, torch_version=torch.__version__,
        peft_version=peft_version, speed_notes={k: v for k, v in notes.items() if v})


def fill_markers(markdown: str, page: str, catalog: Catalog, results: dict[str, Result]) -> str:
    """Replace ``<!-- adapterspec:NAME -->`` markers in hand-written pages; an unknown marker is an error."""
    def render(m: re.Match) -> str:
        name = m.group(1)
        if name not in MARKERS:
            raise ValueError(f"{page}: unknown marker '<!-- adapterspec:{name} -->'; known: {', '.join(MARKERS)}")
        return MARKERS[name](catalog, results)
    return MARKER.sub(render, markdown)


def _rubric(catalog: Catalog, results: dict[str, Result]) -> str:
    return _env.get_template("rubric.md.j2").render(rubric=RUBRIC, max_score=MAX_SCORE)


def _themes(catalog: Catalog, results: dict[str, Result]) -> str:
    return _env.get_template("themes.md.j2").render(themes=catalog.themes, catalog=catalog, grade=grade)


def _count(catalog: Catalog, results: dict[str, Result]) -> str:
    return str(len(catalog))


def _tolerance(catalog: Catalog, results: dict[str, Result]) -> str:
    from adapterspec.catalog.verify import RTOL

    return f"{RTOL:g}"


MARKERS = {"rubric": _rubric, "themes": _themes, "count": _count, "tolerance": _tolerance}
