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
from adapterspec.catalog.grade import DISCOUNTS, MAX_SCORE, RUBRIC, grade, item_discounts, item_weight
from adapterspec.catalog import explorer, figures, prose
from adapterspec.catalog.loader import Catalog, LoadedEntry
from adapterspec.catalog.verify import Result
from adapterspec.registry import adapter_class

# marked in each method file: `# --8<-- [start:init]` ... `# --8<-- [end:init]`; "procedure" (optional) holds a
# training procedure that is part of the method (AdaLoRA's rank schedule)
SECTIONS = ("init", "update", "procedure")
MARKER = re.compile(r"<!--\s*adapterspec:([a-z-]+)\s*-->")

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("adapterspec.catalog", "templates"),
    trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined,
)
_env.filters["cell"] = lambda s: re.sub(r"\s+", " ", str(s)).replace("|", "\\|").strip()
_env.filters["sci"] = lambda x: f"{x:.1e}" if x else "0"
_env.filters["pts"] = lambda x: f"{x:g}"
_env.filters["pts2"] = lambda x: f"{round(x, 2):g}"  # a weighted credit: 0.5625 -> 0.56
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

# HTML templates (the explorer, the compare view): autoescaping on, so every value is escaped unless it is HTML this
# module rendered itself (`markupsafe.Markup`: entry prose through `prose`, code through Pygments).
_html = jinja2.Environment(
    loader=jinja2.PackageLoader("adapterspec.catalog", "templates"),
    trim_blocks=True, lstrip_blocks=True, autoescape=True, undefined=jinja2.StrictUndefined,
)
_html.filters["pts"] = lambda x: f"{round(x, 2):g}"


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

    def html_block(self, markup: str) -> str:
        """A block of HTML built by this module from an autoescaping template (`_html`): every entry value in it was
        escaped or rendered by `prose`. Put the token on a line of its own."""
        return self._add(markup)

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
    """The ``init``, ``update`` (and ``procedure``) sections of the method's class, looked up along its base classes."""
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


def unchecked_dimensions(entry, result: Result) -> list[str]:
    """Grade dimensions none of whose quotes was found in a saved paper text in this build (in rubric order): the
    page says the score counts them on the entry's word alone."""
    found = {ev.dimension for i, ev in enumerate(entry.evidence) if _quote_status(result, i) == "found"}
    return [d for d in grade(entry).dimensions if d not in found]


def _quote_status(result: Result, i: int) -> str:
    for c in result.checks:
        if c.field == f"evidence[{i}].quote":
            return "found" if c.ok else "missing"
    return "unchecked"


def method_page(item: LoadedEntry, result: Result, catalog: Catalog, root: Path, frag: Fragments,
                bench: Benchmark | None = None, peft: tuple[object, str] = (None, "")) -> str:
    e = item.entry
    comparison = compare(bench, e.benchmark) if bench is not None else None
    g = grade(e, comparison)
    glance = _glance(item, result, g, comparison, peft)
    return _env.get_template("method.md.j2").render(
        glance=glance,
        frag=frag, reference_venue=reference_venue, peft_eq=peft[0], peft_note=peft[1], **_converter_doc(e.module_slug, root),
        comparison=comparison, setting=SETTING, bench_folder=bench.folder if bench else None,
        contradictions=_contradictions(e, comparison),
        e=e, item=item, result=result, g=g, rubric=RUBRIC, max_score=MAX_SCORE,
        themes=catalog.themes, catalog=catalog, includes=includes(e.module_slug, root),
        quote_status=[_quote_status(result, i) for i in range(len(e.evidence))],
        unchecked_dims=unchecked_dimensions(e, result),
        unchecked_reason=lambda i: result.observed.get("unchecked_quotes", {}).get(str(i), "paper text unavailable"),
        papers=[item.papers[k] for k in e.papers], bib=item.papers,
        bibtex_text="\n".join(bibtex(item.papers[k]) for k in e.papers),
        discounts=[item_discounts(ev) for ev in e.evidence], weights=[item_weight(ev) for ev in e.evidence],
        cls=adapter_class(e.module_slug),
        source_path=Path(inspect.getfile(adapter_class(e.module_slug))).resolve().relative_to(root.resolve()).as_posix(),
    )


def _glance(item: LoadedEntry, result: Result, g, comparison: Comparison | None, peft: tuple[object, str]) -> str:
    """The card that opens a method page: hypothesis, update rule, parameter formula, key properties, both scores,
    peft equality and the ΔW figure (autoescaped; prose through `prose`, figures drawn from measured numbers)."""
    from markupsafe import Markup

    e = item.entry
    layer = explorer.DEFAULT_LAYER
    expr = e.properties.trainable_parameters
    n = explorer.count(e.module_slug, expr, *layer)
    eq, note = peft
    best = comparison.best if comparison else None
    bench_line = None
    if best is not None:
        bench_line = (f"{100 * best.test_accuracy:.1f}% on GSM8K ({best.experiment})"
                      + (f", {100 * (best.test_accuracy - comparison.lora.test_accuracy):+.1f} vs LoRA r32"
                         if comparison.lora and best.name != comparison.lora.name else ""))
    elif comparison is not None and comparison.runs:
        bench_line = "every run failed to train"
    fig = result.observed.get("figure")
    figure = (Markup(f'<div class="adapterspec-figures">{figures.delta_svg(fig, e.name)}'
                     f'{figures.spectrum_svg(fig, e.name)}</div>') if fig else None)
    return _html.get_template("glance.html.j2").render(
        testable=Markup(prose.render_inline(e.testable_hypothesis)),
        math=[line for line in e.math.strip().splitlines() if line.strip()], props=e.properties,
        graded=g.graded, why=g.why, replicated=g.replicated, claimed=g.score, max_score=MAX_SCORE,
        contradicted=g.contradicted, reproduced=g.reproduced, layer=layer, params=n,
        params_pct=_pct(n, layer[0], layer[1]) if n is not None else None,
        names_note=", ".join(f"{k} = {v}" for k, v in explorer.names_for(e.module_slug, expr, *layer).items()
                             if k in explorer.formula_names(expr) and k not in ("d_in", "d_out")),
        ok=result.ok, checks=len(result.checks), max_error=f"{result.max_error:.1e}" if result.max_error else "0",
        peft=(f"equal to {eq.peft_layer}, {len(eq.cases)} cases, max relative error {eq.worst('float32'):.1e}"
              if eq is not None and eq.ok else None),
        peft_note=(note if eq is None else "differs").rstrip(".") or "—", bench=bench_line,
        figure=figure, fig_shape=fig["shape"] if fig else None)


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
    g = grade(entry, comparison)
    return {d: g.detail[d].why for d in g.contradicted}


def _comparisons(catalog: Catalog, bench: Benchmark | None) -> dict[str, Comparison | None]:
    return {it.slug: (compare(bench, it.entry.benchmark) if bench is not None else None) for it in catalog}


def ranked(catalog: Catalog, bench: Benchmark | None) -> list[LoadedEntry]:
    """The catalog's default order: score after independent results, then claimed score, then name."""
    cmp = _comparisons(catalog, bench)

    def key(it):
        g = grade(it.entry, cmp[it.slug])
        return (-g.replicated, -g.score, it.entry.name.lower())
    return sorted(catalog, key=key)


def _pct(n: int, d_in: int, d_out: int) -> str:
    return f"{100 * n / (d_in * d_out):.3g}"


def explorer_rows(catalog: Catalog, results: dict[str, Result], bench: Benchmark | None,
                  peft: dict[str, tuple[object, str]],
                  layer: tuple[int, int, int] = explorer.DEFAULT_LAYER) -> list[dict]:
    """One record per method, in the default order, with what the explorer shows and sorts by."""
    from markupsafe import Markup

    cmp = _comparisons(catalog, bench)
    rows = []
    for it in ranked(catalog, bench):
        e, r, c = it.entry, results[it.slug], cmp[it.slug]
        g = grade(e, c)
        eq = (peft.get(it.slug) or (None, ""))[0]
        best = c.best if c else None
        expr = e.properties.trainable_parameters
        n = explorer.count(e.module_slug, expr, *layer)
        rows.append(dict(
            slug=it.slug, name=e.name, hypothesis=Markup(prose.render_inline(e.testable_hypothesis)),
            themes=[{"id": t, "title": catalog.themes[t].title} for t in e.themes],
            graded=g.graded, claimed=g.score, replicated=g.replicated, breakdown=g.breakdown,
            contradicted=list(g.contradicted), reproduced=list(g.reproduced), has_runs=bool(c and c.runs),
            mergeable=e.properties.mergeable, identity=e.properties.identity_at_init,
            rank_bound=e.properties.rank_bound, formula=explorer.row_data(e.module_slug, expr),
            params=n, params_pct=_pct(n, layer[0], layer[1]) if n is not None else None,
            names_note=", ".join(f"{k} = {v}" for k, v in explorer.names_for(e.module_slug, expr, *layer).items()
                                 if k in explorer.formula_names(expr) and k not in ("d_in", "d_out")),
            peft_equal=bool(eq is not None and eq.ok), peft_class=e.code.peft,
            peft_title=(f"{len(eq.cases)} cases, max relative error {eq.worst('float32'):.1e} (float32)"
                        if eq is not None else ""),
            acc=round(100 * best.test_accuracy, 1) if best else None,
            vs_lora=(f"{100 * (best.test_accuracy - c.lora.test_accuracy):+.1f}"
                     if best and c.lora and best.name != c.lora.name else None),
            mem=round(best.memory_max_gib, 1) if best else None,
            ok=r.ok, checks=len(r.checks), max_error=f"{r.max_error:.1e}" if r.max_error else "0",
        ))
    return rows


def index_page(catalog: Catalog, results: dict[str, Result], frag: Fragments, bench: Benchmark | None = None,
               peft: dict[str, tuple[object, str]] | None = None) -> str:
    rows = explorer_rows(catalog, results, bench, peft or {})
    table = _html.get_template("explorer.html.j2").render(rows=rows, layer=explorer.DEFAULT_LAYER)
    return _env.get_template("index.md.j2").render(
        frag=frag, rows=rows, explorer=table, max_score=MAX_SCORE, rubric=RUBRIC, setting=SETTING)


def evidence_page(catalog: Catalog, results: dict[str, Result], frag: Fragments, bench: Benchmark | None) -> str:
    """Methods × rubric dimensions: claimed (with a checked quote), reproduced, contradicted, absent."""
    cmp = _comparisons(catalog, bench)
    rows = []
    for it in ranked(catalog, bench):
        g = grade(it.entry, cmp[it.slug])
        cells = {}
        for code, d in g.detail.items():
            if not d.present:
                cells[code] = None
                continue
            ev = it.entry.evidence[d.item]
            cells[code] = dict(d=d, quote=_quote_status(results[it.slug], d.item),
                               flags=[x.short for x in item_discounts(ev)], locator=ev.locator)
        rows.append(dict(it=it, g=g, cells=cells, runs=bool(cmp[it.slug] and cmp[it.slug].runs)))
    return _env.get_template("evidence.md.j2").render(frag=frag, rows=rows, rubric=RUBRIC, max_score=MAX_SCORE,
                                                      discounts=DISCOUNTS, setting=SETTING)

def compare_page(catalog: Catalog, results: dict[str, Result], frag: Fragments, bench: Benchmark | None,
                 peft: dict[str, tuple[object, str]]) -> str:
    """Every method's hypothesis, update rule, pseudocode, properties and evidence in one table, one column per
    method; ``docs/javascripts/compare.js`` shows the two to four the address names (``?m=lora,dora``)."""
    from markupsafe import Markup

    cmp = _comparisons(catalog, bench)
    methods = []
    for it in ranked(catalog, bench):
        e, c = it.entry, cmp[it.slug]
        g = grade(e, c)
        eq = (peft.get(it.slug) or (None, ""))[0]
        best = c.best if c else None
        evidence = []
        for code, d in g.detail.items():
            if d.present:
                ev = e.evidence[d.item]
                evidence.append(dict(code=code, credit=round(d.claimed, 2), verdict=d.independent,
                                     flags=[x.short for x in item_discounts(ev)], locator=ev.locator))
        bench_line = None
        if best is not None:
            bench_line = (f"{100 * best.test_accuracy:.1f}% ({best.experiment}), {best.params_percent:.2f}% of the "
                          f"parameters, {best.memory_max_gib:.1f} GiB")
        elif c is not None and c.runs:
            bench_line = "every run failed to train"
        body = highlight(e.pseudocode.rstrip(), PythonLexer(), HtmlFormatter(nowrap=True))
        methods.append(dict(
            slug=it.slug, name=e.name, long_name=long_name(e),
            testable=Markup(prose.render_inline(e.testable_hypothesis)), summary=Markup(prose.render_inline(e.summary)),
            math=[line for line in e.math.strip().splitlines() if line.strip()],
            pseudocode=Markup(f'<div class="language-python highlight"><pre><span></span><code>{body}</code></pre></div>'),
            props=e.properties, checks=len(results[it.slug].checks),
            peft=(f"max relative error {eq.worst('float32'):.1e}" if eq is not None and eq.ok else None),
            graded=g.graded, why=g.why, claimed=g.score, replicated=g.replicated, evidence=evidence, bench=bench_line))
    table = _html.get_template("compare.html.j2").render(methods=methods,
                                                         default=[m["slug"] for m in methods[:2]])
    return _env.get_template("compare.md.j2").render(frag=frag, table=table, count=len(methods))

def benchmark_page(catalog: Catalog, frag: Fragments, bench: Benchmark | None) -> str:
    """peft's benchmark across methods: accuracy against trainable parameters and against peak memory, drawn from the
    result files at build time, with the catalog's methods marked."""
    from adapterspec.catalog.benchmark import FULL_FINETUNING, LORA_BASELINE

    if bench is None or not bench.available:
        return _env.get_template("benchmark.md.j2").render(frag=frag, available=False, setting=SETTING,
                                                           folder=bench.folder if bench else None)
    owner = {n: it for it in catalog for n in it.entry.benchmark}
    best = {it.slug: c.best.name for it in catalog if (c := compare(bench, it.entry.benchmark)) and c.best}
    points, rows = [], []
    for name in bench.names():
        run = bench.run(name)
        if run is None or run.status != "success" or run.test_accuracy is None:
            continue
        it = owner.get(name)
        kind = "reference" if name in (LORA_BASELINE, FULL_FINETUNING) else ("catalog" if it else "other")
        label = None
        if name == LORA_BASELINE:
            label = "LoRA r32"
        elif name == FULL_FINETUNING:
            label = "full fine-tuning"
        elif it is not None and best.get(it.slug) == name:
            label = it.entry.name
        tip = (f"{run.experiment}: {100 * run.test_accuracy:.1f}%, {run.params_percent:.3g}% trainable, "
               f"{run.memory_max_gib:.1f} GiB" + (" (failed configuration)" if run.failed else ""))
        points.append(dict(params=run.params_percent, memory=run.memory_max_gib, acc=run.test_accuracy, kind=kind,
                           label=label, failed=run.failed, tip=tip))
        if kind != "other":
            rows.append(dict(run=run, method=it, kind=kind))
    rows.sort(key=lambda r: -r["run"].test_accuracy)
    n_cat = sum(p["kind"] == "catalog" for p in points)
    summary = (f"{len(points)} runs of peft's benchmark; the {n_cat} runs of methods in this catalog are filled "
               f"circles, LoRA rank 32 and full fine-tuning are squares, other methods' runs are hollow circles. "
               f"LoRA rank 32 scores {100 * bench.run(LORA_BASELINE).test_accuracy:.1f}% and full fine-tuning "
               f"{100 * bench.run(FULL_FINETUNING).test_accuracy:.1f}%; the table below lists every marked run.")
    params = figures.scatter_svg(points, "params", "trainable parameters, % of the model (log scale)", True,
                                 "Accuracy against trainable parameters", "Test accuracy against the share of "
                                 "parameters trained. " + summary)
    memory = figures.scatter_svg(points, "memory", "peak GPU memory during training (GiB)", False,
                                 "Accuracy against peak memory", "Test accuracy against peak GPU memory. " + summary)
    return _env.get_template("benchmark.md.j2").render(
        frag=frag, available=True, setting=SETTING, params=frag.html_block(params), memory=frag.html_block(memory),
        rows=rows, count=len(points))



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
        peft_version=peft_version, speed_notes={k: v for k, v in notes.items() if v},
        not_timed={slug: c.NOT_TIMED for slug, c in sorted(converters().items()) if getattr(c, "BENCH", ()) is None})


def fill_markers(markdown: str, page: str, catalog: Catalog, results: dict[str, Result], frag: Fragments) -> str:
    """Replace ``<!-- adapterspec:NAME -->`` markers in hand-written pages; an unknown marker is an error."""
    def render(m: re.Match) -> str:
        name = m.group(1)
        if name not in MARKERS:
            raise ValueError(f"{page}: unknown marker '<!-- adapterspec:{name} -->'; known: {', '.join(MARKERS)}")
        return MARKERS[name](catalog, results, frag)
    return MARKER.sub(render, markdown)


def _rubric(catalog: Catalog, results: dict[str, Result], frag: Fragments) -> str:
    from adapterspec.catalog.benchmark import PE_TOLERANCE

    checks = {"PE": f"reproduced when its best run under 1% of the parameters is within {PE_TOLERANCE:g} points of "
                    "full fine-tuning, contradicted when further below",
              "BL": "reproduced when its best run is at or above LoRA rank 32, contradicted when below",
              "BF": "reproduced when its best run is at or above full fine-tuning, contradicted when below"}
    return _env.get_template("rubric.md.j2").render(rubric=RUBRIC, max_score=MAX_SCORE, discounts=DISCOUNTS,
                                                    checks=checks)


def _themes(catalog: Catalog, results: dict[str, Result], frag: Fragments) -> str:
    return _env.get_template("themes.md.j2").render(frag=frag, themes=catalog.themes, catalog=catalog, grade=grade)


def _count(catalog: Catalog, results: dict[str, Result], frag: Fragments) -> str:
    return str(len(catalog))


def _tolerance(catalog: Catalog, results: dict[str, Result], frag: Fragments) -> str:
    from adapterspec.catalog.verify import RTOL

    return f"{RTOL:g}"


MARKERS = {"rubric": _rubric, "themes": _themes, "count": _count, "tolerance": _tolerance}
