"""The built site as a reader sees it, in headless Chromium: maths rendered, tabs switch, dark mode toggles.

Needs Debian's `chromium` and the `playwright` package (in the dev extra); `.ci/run` installs Chromium. Skipped, with
the reason, where either is missing.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading

import pytest

from conftest import ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def site_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("site")


@pytest.fixture(scope="module")
def base_url(site_dir):
    out = site_dir
    subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                   check=True, capture_output=True, timeout=600, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(out))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def page():
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield browser.new_page(viewport={"width": 1280, "height": 900})
        browser.close()


def test_method_page_renders_maths_and_switches_tabs(base_url, page, tmp_path):
    page.goto(f"{base_url}/methods/oft/")
    page.wait_for_selector(".katex")
    assert page.locator(".katex-display").count() >= 2
    assert page.locator(".katex-error").count() == 0
    code = page.locator(".tabbed-set").first
    assert "def forward" in code.locator(".tabbed-block").nth(0).inner_text()
    code.get_by_text("Reference implementation").click()
    implementation = code.locator(".tabbed-block").nth(1)
    assert implementation.is_visible()
    assert "def adapted_weight" in implementation.inner_text() and "--8<--" not in implementation.inner_text()
    page.screenshot(path=str(tmp_path / "oft.png"))


def test_dark_mode_toggle(base_url, page):
    page.goto(f"{base_url}/")
    before = page.locator("body").get_attribute("data-md-color-scheme")
    page.locator("label.md-header__button[for^='__palette']:visible").first.click()
    after = page.locator("body").get_attribute("data-md-color-scheme")
    assert {before, after} == {"default", "slate"}


def test_catalog_links_reach_every_method(base_url, page, catalog):
    page.goto(f"{base_url}/methods/")
    for item in catalog:
        link = page.locator(f"table a[href='{item.slug}/']")
        assert link.count() == 1, item.slug


def test_every_page_renders_without_errors_or_third_party_requests(base_url, site_dir, page):
    """Each page of the built site: no console error, no page error, no KaTeX error, no LaTeX left raw, and no
    request to any host but the site's own."""
    pages = sorted(p.parent.relative_to(site_dir).as_posix() for p in site_dir.rglob("index.html"))
    assert len(pages) >= 20
    problems: list[str] = []
    current: list[str] = []
    page.on("console", lambda m: current.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: current.append(f"page error: {e}"))
    page.on("request", lambda r: current.append(f"third-party request: {r.url}")
            if not r.url.startswith(base_url) and not r.url.startswith("data:") else None)
    for rel in pages:
        current.clear()
        page.goto(f"{base_url}/{'' if rel == '.' else rel + '/'}", wait_until="networkidle")
        page.wait_for_timeout(100)
        try:  # a long page (the API reference) may still be typesetting on a loaded machine: give it time
            page.wait_for_function("() => [...document.querySelectorAll('.arithmatex')]"
                                   ".every(e => e.querySelector('.katex'))", timeout=10_000)
        except playwright.Error:
            pass  # reported below, element by element
        errors = page.locator(".katex-error").count()
        if errors:
            current.append(f"{errors} .katex-error element(s)")
        unrendered = page.evaluate("""() => [...document.querySelectorAll('.arithmatex')]
            .filter(e => !e.querySelector('.katex')).map(e => e.textContent.slice(0, 80))""")
        current += [f"maths not rendered: {t}" for t in unrendered]
        problems += [f"/{rel}: {c}" for c in current]
    assert not problems, "\n".join(problems)


OVERFLOWING = """() => [...document.querySelectorAll('.md-content .katex-display, .md-content pre > code')]
    .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.textContent.slice(0, 60))"""
PAGE_SCROLLS = "() => document.documentElement.scrollWidth > document.documentElement.clientWidth + 1"
OPEN_EVERYTHING = """() => {
    document.querySelectorAll('details').forEach(d => { d.open = true; });
    document.querySelectorAll('.tabbed-set > input').forEach(i => { i.checked = true; });
}"""


def _pages(site_dir):
    return sorted(f"{p.parent.relative_to(site_dir).as_posix()}/".removeprefix("./")
                  for p in site_dir.rglob("index.html"))


def test_every_page_fits_without_sideways_scrolling(base_url, site_dir, page):
    """On a desktop screen (1400 px) no display equation or code block of any page, generated or hand-written, needs
    sideways scrolling, with every tab (the Reference implementation too) and every collapsed section opened; on a
    phone (390 px) wide content scrolls inside its own box, never the page."""
    pages = _pages(site_dir)
    assert "methods/oft/" in pages and "contributing/" in pages and "reference/api/" in pages
    problems = []
    for width in (1400, 390):
        context = page.context.browser.new_context(viewport={"width": width, "height": 900})
        reader = context.new_page()
        for rel in pages:
            reader.goto(f"{base_url}/{rel}", wait_until="networkidle")
            if width == 1400:
                for step in ("as first seen", "opened"):
                    if step == "opened":
                        reader.evaluate(OPEN_EVERYTHING)
                    problems += [f"{width}px /{rel} ({step}): scrolls sideways: {t!r}"
                                 for t in reader.evaluate(OVERFLOWING)]
            if reader.evaluate(PAGE_SCROLLS):
                problems.append(f"{width}px /{rel}: the whole page scrolls sideways")
        context.close()
    assert not problems, "\n".join(sorted(set(problems)))


# -- the Catalog's explorer --------------------------------------------------------------------------------------------
def _reader(page, width: int, javascript: bool = True):
    context = page.context.browser.new_context(viewport={"width": width, "height": 900},
                                               java_script_enabled=javascript)
    return context, context.new_page()


def _visible_rows(reader) -> list[dict]:
    return reader.evaluate("""() => [...document.querySelectorAll('.adapterspec-explorer tbody tr')]
        .filter(r => !r.hidden).map(r => ({slug: r.dataset.slug, merge: r.dataset.mergeable, ident: r.dataset.identity,
            pct: r.dataset.pct, params: r.dataset.params, replicated: +r.dataset.replicated,
            count: r.querySelector('.adapterspec-count').textContent}))""")


def test_explorer_without_javascript_is_a_plain_table(base_url, page, catalog):
    context, reader = _reader(page, 1400, javascript=False)
    reader.goto(f"{base_url}/methods/?merge=1&maxpct=0.001", wait_until="networkidle")
    rows = reader.locator(".adapterspec-explorer tbody tr")
    assert rows.count() == len(catalog)  # the query string filters nothing without JavaScript
    assert reader.locator(".adapterspec-controls").count() == 0
    header = reader.locator(".adapterspec-explorer thead th").all_inner_texts()
    assert "Score after independent results" in header[2] and "Trainable parameters" in header[4]
    lora = reader.locator("#m-lora")
    assert "65,536" in lora.inner_text()  # LoRA at r = 8 on 4096 × 4096, computed by the build
    context.close()


def test_explorer_answers_the_question_and_keeps_it_in_the_address(base_url, page, catalog):
    """Mergeable, identity at init, under 0.5% of a 4096 × 4096 layer at r = 8, by replicated score: the filters
    select exactly those rows, in that order, and the address reproduces the view."""
    context, reader = _reader(page, 1400)
    reader.goto(f"{base_url}/methods/", wait_until="networkidle")
    reader.locator("input[name=merge]").check()
    reader.locator("input[name=ident]").check()
    reader.locator("input[name=maxpct]").fill("0.5")
    rows = _visible_rows(reader)
    assert rows and len(rows) < len(catalog)
    assert all(r["merge"] == "1" and r["ident"] == "1" and float(r["pct"]) <= 0.5 for r in rows)
    assert [r["replicated"] for r in rows] == sorted((r["replicated"] for r in rows), reverse=True)
    hidden = reader.evaluate("() => [...document.querySelectorAll('.adapterspec-explorer tbody tr[hidden]')]"
                             ".map(r => r.dataset.slug)")
    assert "oft" in hidden and "c3a" in hidden  # OFT trains 6% at r = 8; C3A is not the identity at init
    assert "merge=1" in reader.url and "ident=1" in reader.url and "maxpct=0.5" in reader.url
    shared = reader.url
    other, again = _reader(page, 390)
    again.goto(shared, wait_until="networkidle")
    assert [r["slug"] for r in _visible_rows(again)] == [r["slug"] for r in rows]
    assert again.locator("input[name=merge]").is_checked()
    assert not again.evaluate(PAGE_SCROLLS)
    assert again.locator(".adapterspec-explorer thead").bounding_box()["x"] < 0  # cards: the header is off-screen
    other.close()
    context.close()


def test_explorer_counts_parameters_for_the_typed_layer_and_sorts(base_url, page, catalog):
    import pytest as _pytest

    from adapterspec.catalog import explorer

    context, reader = _reader(page, 1400)
    reader.goto(f"{base_url}/methods/?d_in=768&d_out=3072&r=16", wait_until="networkidle")
    rows = {r["slug"]: r for r in _visible_rows(reader)}
    assert rows["lora"]["count"] == f"{16 * (768 + 3072):,}"
    for item in catalog:  # the page's evaluator agrees with the build's on every entry's formula
        expected = explorer.count(item.entry.module_slug, item.entry.properties.trainable_parameters, 768, 3072, 16)
        got = rows[item.slug]["params"]
        assert (int(got) if got else None) == expected, item.slug
    reader.locator("input[name=r]").fill("4")
    assert reader.locator("#m-lora .adapterspec-count").inner_text() == f"{4 * (768 + 3072):,}"
    assert "r=4" in reader.url
    reader.locator("th[data-key=params] button").click()
    order = [int(r["params"]) for r in _visible_rows(reader) if r["params"]]
    assert order == sorted(order, reverse=True) and "sort=params" in reader.url
    reader.locator("th[data-key=params] button").click()
    order = [int(r["params"]) for r in _visible_rows(reader) if r["params"]]
    assert order == sorted(order) and "dir=asc" in reader.url
    # the evaluator is a parser, not eval: names outside the formula language are refused
    for bad in ("constructor", "__proto__", "alert(1)", "(1).constructor", "x => 1", "[1]", "a.b", "'a' + 1"):
        with _pytest.raises(Exception):
            reader.evaluate("(src) => Formula.evaluate(src, {a: 1})", bad)
    assert reader.evaluate("() => Formula.evaluate('7 // 2 + 7 % -3 + 2 ** 3 ** 2 + round(2.5) + (1 if 0 else 4)', {})") \
        == 7 // 2 + 7 % -3 + 2 ** 3 ** 2 + round(2.5) + (1 if 0 else 4)
    context.close()


def test_compare_view_round_trips_through_its_address(base_url, page):
    for width in (1400, 390):
        context, reader = _reader(page, width)
        reader.goto(f"{base_url}/compare/?m=lora,dora", wait_until="networkidle")
        shown = reader.evaluate("() => [...document.querySelectorAll('.adapterspec-compare-table thead th[data-m]')]"
                                ".filter(th => !th.hidden).map(th => th.dataset.m)")
        assert shown == ["lora", "dora"]
        body = reader.locator(".adapterspec-compare-table tbody").inner_text()
        assert "Hypothesis" in body and "Pseudocode" in body and "Evidence" in body
        assert reader.locator(".adapterspec-compare-table td[data-m=lora] .katex").count() >= 1
        reader.locator(".adapterspec-picker input[value=oft]").check()
        assert reader.url.endswith("?m=lora,dora,oft")
        reader.locator(".adapterspec-picker input[value=vera]").check()
        assert reader.locator(".adapterspec-picker input[value=pissa]").is_disabled()  # four at most
        url = reader.url
        reader.goto(url, wait_until="networkidle")
        shown = reader.evaluate("() => [...document.querySelectorAll('.adapterspec-compare-table thead th[data-m]')]"
                                ".filter(th => !th.hidden).map(th => th.dataset.m)")
        assert shown == ["lora", "dora", "oft", "vera"]
        assert not reader.evaluate(PAGE_SCROLLS)
        context.close()


def test_explorer_and_compare_screenshots(base_url, page, tmp_path):
    """Pictures to look at (kept in pytest's temporary folder): the explorer and the compare view at both widths."""
    for width in (1400, 390):
        context, reader = _reader(page, width)
        reader.goto(f"{base_url}/methods/?merge=1&ident=1&maxpct=0.5", wait_until="networkidle")
        reader.screenshot(path=str(tmp_path / f"explorer-{width}.png"), full_page=True)
        reader.goto(f"{base_url}/compare/?m=lora,dora", wait_until="networkidle")
        reader.screenshot(path=str(tmp_path / f"compare-{width}.png"), full_page=True)
        context.close()
