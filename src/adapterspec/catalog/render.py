"""Markdown for the site, generated from the catalog and its verification results (Jinja2 templates).

Nothing here is typed by hand: tables, scores, badges, errors and code listings all come from ``entries/``, the
verification `Result` and the reference modules' sources.

Entry text is untrusted, so it never becomes Markdown. Each piece is rendered to HTML on its own (`prose` for
Markdown fields, escaping for plain text, Pygments for pseudocode, an ``arithmatex`` element for LaTeX) and kept in a
`Fragments` store; the page's Markdown holds only an opaque token, which the MkDocs hook replaces with the HTML
after Python-Markdown has run (``on_page_content``). No Python-Markdown extension ever reads entry text, so
``--8<--`` includes, ``{ attr=... }`` lists and raw HTML in an entry stay inert text. Names used in headings, titles
and the navigation are single lines without markup characters (`model.Name`) and are escaped as well.
"""

from __future__ import annotations

import hashlib
import html
import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import torch
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import BibTeXLexer, PythonLexer

from adapterspec.catalog.bibliography import bibtex
from adapterspec.catalog.benchmark import SETTING, Benchmark, Comparison, compare
from adapterspec.catalog.grade import MAX_SCORE, RUBRIC, grade
from adapterspec.catalog import figures, prose
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
_MD_SAFE = set(" ,.-/;?%'")
_TOKEN_HEAD = "asfrag"  # ASCII punctuation that means nothing to Python-Markdown or its extensions


def md_escape(text: str) -> str:
    """One line of plain text, safe in Markdown (a heading, a link text, a table cell): every ASCII punctuation
    character that some extension could read (``\\(`` is maths to arithmatex, ``:x:`` an emoji, ``{...}`` attributes)
    becomes a numeric character reference, which Python-Markdown passes through and the browser shows as written."""
    line = re.sub(r"\s+", " ", str(text)).strip()
    escaped = "".join(f"&#{ord(c)};" if c.isascii() and not c.isalnum() and c not in _MD_SAFE else c for c in line)
    return escaped.replace(_TOKEN_HEAD, "&#97;" + _TOKEN_HEAD[1:])  # never the start of a `Fragments` token


_env.filters["md"] = md_escape


@dataclass
class Fragments:
    """HTML rendered from one page's entry text, kept out of its Markdown: the page carries tokens, `fill` swaps the
    HTML in, in a single pass (so a token-like string inside entry text is never expanded).

    A token is letters and digits only, which Python-Markdown leaves alone; it is derived from the page's path and a
    counter, so that an unchanged page renders to the same Markdown in the next build (`mkdocs serve` skips it).
    """

    page: str
    html: dict[str, str] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return _TOKEN_HEAD + hashlib.sha256(self.page.encode()).hexdigest()[:10] + "n"

    def _add(self, fragment: str) -> str:
        token = f"{self.prefix}{len(self.html)}z"
        self.html[token] = fragment
        return token

    def block(self, text: str) -> str:
        """Markdown prose (paragraphs, lists, ``$…$``), rendered by `prose`; put the token on a line of its own."""
        return self._add(prose.render_block(text))

    def inline(self, text: str) -> str:
        """Markdown prose for a table cell or a list item (inline only)."""
        return self._add(prose.render_inline(text))

    def text(self, text: object) -> str:
        """Plain text, escaped."""
        return self._add(html.escape(str(text), quote=True))

    def code_span(self, text: object) -> str:
        """Inline code (a formula, a class name), escaped."""
        return self._add(f"<code>{html.escape(str(text), quote=True)}</code>")

    def link(self, url: str) -> str:
        """An https link whose text is its address (the URL was validated whole by the entry model)."""
        if prose.link_problem(url):
            raise ValueError(f"refusing to publish the link {url!r}: {prose.link_problem(url)}")
        u = html.escape(url, quote=True)
        return self._add(f'<a href="{u}">{u}</a>')

    def figure(self, data: dict, name: str) -> str:
        """The update ΔW as a heatmap beside its singular values (`figures`), drawn from measured numbers."""
        return self._add(f'<div class="adapterspec-figures">{figures.delta_svg(data, name)}'
                         f'{figures.spectrum_svg(data, name)}</div>')

    def math(self, latex: str) -> str:
        """One display equation, for KaTeX."""
        return self._add(f'<div class="arithmatex">\\[{html.escape(latex)}\\]</div>')

    def code(self, source: str, language: str = "python") -> str:
        """Source code (Python or BibTeX), highlighted as pymdownx.highlight would (Material's styles and copy button
        apply)."""
        lexer = {"python": PythonLexer, "bibtex": BibTeXLexer}[language]()
        body = highlight(source, lexer, HtmlFormatter(nowrap=True))
        return self._add(f'<div class="language-{language} highlight"><pre><span></span><code>{body}</code></pre></div>')

    def fill(self, page_html: str) -> str:
        """``page_html`` with every token replaced by its fragment; a token of this page that is not known (split or
        altered by Markdown) is an error, never published."""
        if self.prefix not in page_html:
            return page_html
        pattern = re.compile(rf"<p>({self.prefix}\d+z)</p>|({self.prefix}\d+z)")

        def swap(m: re.Match) -> str:
            token = m.group(1) or m.group(2)
            if token not in self.html:
                raise ValueError(f"unknown catalog fragment {token}")
            return self.html[token]

        return pattern.sub(swap, page_html)

    def digest(self) -> str:
        """A hash of every fragment of the page (with its Markdown, what decides whether the page changed)."""
        return hashlib.sha256("\0".join(self.html.values()).encode()).hexdigest()


@dataclass
class Include:
    """A marked section of a method's source file, included verbatim into its page."""

    path: str  # relative to the project root
    section: str
    owner: str  # the class whose file holds it (PiSSA's forward is LoRA's)

    @property
    def snippet(self) -> str:
        """The path as pymdownx.snippets resolves it: relative to ``src/``, its only base path."""
        return self.path.removeprefix("src/")


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


def long_name(entry) -> str:
    """The full name without the short one it repeats: "DoRA: Weight-Decomposed …" → "Weight-Decomposed …"."""
    full, name = entry.full_name, entry.name
    if full.startswith(name + ":"):
        return full[len(name) + 1:].strip()
    if full.endswith(f"({name})"):
        return full[:-len(name) - 2].strip()
    return full


_env.filters["long_name"] = long_name


def reference_venue(paper) -> str:
    """"ICLR 2022", "arXiv 2024": the venue and the year, the year once (a venue often names its own year)."""
    venue = paper.venue or "arXiv"
    return venue if re.search(r"\b(19|20)\d\d\b", venue) else f"{venue} {paper.year}"


def _quote_status(result: Result, i: int) -> str:
    for c in result.checks:
        if c.field == f"evidence[{i}].quote":
            return "found" if c.ok else "missing"
    return "unchecked"


def method_page(item: LoadedEntry, result: Result, catalog: Catalog, root: Path, frag: Fragments,
                bench: Benchmark | None = None, peft: tuple[object, str] = (None, "")) -> str:
    e = item.entry
    comparison = compare(bench, e.benchmark) if bench is not None else None
    return _env.get_template("method.md.j2").render(
        frag=frag, reference_venue=reference_venue, peft_eq=peft[0], peft_note=peft[1], **_converter_doc(e.module_slug, root),
        comparison=comparison, setting=SETTING, bench_folder=bench.folder if bench else None,
        contradictions=_contradictions(e, comparison),
        e=e, item=item, result=result, g=grade(e), rubric=RUBRIC, max_score=MAX_SCORE,
        themes=catalog.themes, catalog=catalog, includes=includes(e.module_slug, root),
        quote_status=[_quote_status(result, i) for i in range(len(e.evidence))],
        unchecked_reason=lambda i: result.observed.get("unchecked_quotes", {}).get(str(i), "paper text unavailable"),
        papers=[item.papers[k] for k in e.papers], bib=item.papers,
        bibtex_text="\n".join(bibtex(item.papers[k]) for k in e.papers),
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


def index_page(catalog: Catalog, results: dict[str, Result], frag: Fragments, bench: Benchmark | None = None,
               peft: dict[str, tuple[object, str]] | None = None) -> str:
    rows = sorted(catalog, key=lambda it: (-grade(it.entry).score, it.entry.name.lower()))
    contradictions = {it.slug: _contradictions(it.entry, compare(bench, it.entry.benchmark) if bench else None)
                      for it in rows}
    return _env.get_template("index.md.j2").render(
        frag=frag, rows=rows, results=results, grade=grade, themes=catalog.themes, max_score=MAX_SCORE, rubric=RUBRIC,
        contradictions=contradictions, peft=peft or {})


def bibliography_page(catalog: Catalog, frag: Fragments) -> str:
    """Every record of ``papers/``, the entries citing it, and the BibTeX of all of them."""
    records = sorted(catalog.bibliography, key=lambda r: r.key)
    cited_by = {r.key: sorted(it.slug for it in catalog if r.key in it.entry.papers) for r in records}
    return _env.get_template("bibliography.md.j2").render(
        frag=frag, records=records, cited_by=cited_by, names={it.slug: it.entry.name for it in catalog},
        reference_venue=reference_venue, bibtex_text=bibtex_file(catalog.bibliography))


def bibtex_file(bibliography) -> str:
    """``papers.bib``: every record, sorted by key."""
    return "\n".join(bibtex(r) for r in sorted(bibliography, key=lambda r: r.key))


def peft_page(catalog: Catalog, peft: dict[str, tuple[object, str]], speed: dict | None,
              peft_version: str | None, frag: Fragments) -> str:
    """The equality summary over every entry, and the speed table from ``docs/data/peft_speed.json``."""
    from adapterspec.interop.peft import converters

    notes = {slug: getattr(c, "SPEED_NOTE", None) for slug, c in converters().items()}
    return _env.get_template("peft.md.j2").render(
        frag=frag, catalog=catalog, peft=peft, speed=speed, target=SPEED_TARGET, torch_version=torch.__version__,
        peft_version=peft_version, speed_notes={k: v for k, v in notes.items() if v})


def fill_markers(markdown: str, page: str, catalog: Catalog, results: dict[str, Result], frag: Fragments) -> str:
    """Replace ``<!-- adapterspec:NAME -->`` markers in hand-written pages; an unknown marker is an error."""
    def render(m: re.Match) -> str:
        name = m.group(1)
        if name not in MARKERS:
            raise ValueError(f"{page}: unknown marker '<!-- adapterspec:{name} -->'; known: {', '.join(MARKERS)}")
        return MARKERS[name](catalog, results, frag)
    return MARKER.sub(render, markdown)


def _rubric(catalog: Catalog, results: dict[str, Result], frag: Fragments) -> str:
    return _env.get_template("rubric.md.j2").render(rubric=RUBRIC, max_score=MAX_SCORE)


def _themes(catalog: Catalog, results: dict[str, Result], frag: Fragments) -> str:
    return _env.get_template("themes.md.j2").render(frag=frag, themes=catalog.themes, catalog=catalog, grade=grade)


def _count(catalog: Catalog, results: dict[str, Result], frag: Fragments) -> str:
    return str(len(catalog))


def _tolerance(catalog: Catalog, results: dict[str, Result], frag: Fragments) -> str:
    from adapterspec.catalog.verify import RTOL

    return f"{RTOL:g}"


MARKERS = {"rubric": _rubric, "themes": _themes, "count": _count, "tolerance": _tolerance}
