"""``adapterspec`` — the command line.

```text
adapterspec verify [SLUG ...] [--entries PATH] [--papers DIR]
    verify entries, one line each
adapterspec schema [--write]          print (or write) entries/ and papers/ schema.json
adapterspec bib [KEY ...]             BibTeX of the bibliography (papers/), generated
adapterspec new SLUG [--name NAME]    scaffold entries/SLUG.yaml + methods/SLUG.py
adapterspec list                      the methods with a reference module
adapterspec peft [SLUG ...]           compare modules with peft's layers (needs peft)
adapterspec build [--site-dir site]   strict site build, swapped into place on success
adapterspec arena [--quick] [--methods M ...] [--jobs N] [--out FILE]
    the controlled experiments (results + figures)
```
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

EXIT_FAILED, EXIT_BAD_INPUT = 1, 2


def _catalog(entries: str):
    from adapterspec.catalog import CatalogError, load_catalog

    try:
        return load_catalog(entries)
    except CatalogError as e:
        print(f"adapterspec: {len(e.errors)} problem(s) in {entries}:", file=sys.stderr)
        for err in e.errors:
            print(f"  {err}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT) from None


def cmd_verify(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    from adapterspec.catalog.benchmark import Benchmark
    from adapterspec.catalog.papers import PaperTexts
    from adapterspec.catalog.verify import verify

    catalog = _catalog(args.entries)
    papers = PaperTexts(args.papers)
    if not papers.available:
        print(f"note: paper texts not found at {papers.folder}; quotes are reported as unchecked", file=sys.stderr)
    try:
        results = verify(catalog, args.slugs or None, papers, progress=lambda r: print(r.summary(), flush=True),
                         benchmark=Benchmark(args.benchmark))
    except KeyError as e:
        print(f"adapterspec: {e.args[0]}", file=sys.stderr)
        return EXIT_BAD_INPUT
    failed = [r for r in results if not r.ok]
    for r in failed:
        for err in r.errors():
            print(f"  {err}", file=sys.stderr)
    total = time.perf_counter() - start
    print(f"{len(results) - len(failed)}/{len(results)} entries verified in {total:.1f} s"
          + (f"; failed: {', '.join(r.slug for r in failed)}" if failed else ""))
    return EXIT_FAILED if failed else 0


def cmd_schema(args: argparse.Namespace) -> int:
    from adapterspec.catalog.loader import SCHEMA_FILE, load_themes, schema_text

    import json

    from adapterspec.catalog.bibliography import bibliography_schema

    text = schema_text(load_themes(Path(args.entries)))
    papers = Path(args.entries).parent / "papers"
    if args.write:
        path = Path(args.entries) / SCHEMA_FILE
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
        if papers.is_dir():
            (papers / SCHEMA_FILE).write_text(json.dumps(bibliography_schema(), indent=2, ensure_ascii=False) + "\n",
                                              encoding="utf-8")
            print(f"wrote {papers / SCHEMA_FILE}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_bib(args: argparse.Namespace) -> int:
    from adapterspec.catalog import CatalogError
    from adapterspec.catalog.bibliography import bibtex, load_bibliography

    try:
        bib = load_bibliography(args.bibliography)
    except CatalogError as e:
        for err in e.errors:
            print(err, file=sys.stderr)
        return EXIT_BAD_INPUT
    unknown = [k for k in args.keys if k not in bib]
    if unknown:
        print(f"adapterspec: unknown key(s) {', '.join(unknown)}; recorded: {', '.join(sorted(bib.records))}",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    for key in args.keys or sorted(bib.records):
        sys.stdout.write(bibtex(bib[key]) + "\n")
    return 0


def cmd_new(args: argparse.Namespace) -> int:
    import re

    import jinja2

    from adapterspec.catalog.loader import load_themes

    slug = args.slug
    if not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", slug):
        print(f"adapterspec: '{slug}' is not a valid slug (lowercase letters, digits and single dashes)", file=sys.stderr)
        return EXIT_BAD_INPUT
    entry = Path(args.entries) / f"{slug}.yaml"
    module = Path(args.methods) / f"{slug.replace('-', '_')}.py"
    existing = [str(p) for p in (entry, module) if p.exists()]
    if existing:
        print(f"adapterspec: will not overwrite {', '.join(existing)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    env = jinja2.Environment(loader=jinja2.PackageLoader("adapterspec.catalog", "templates"),
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    name = args.name or slug.upper()
    class_name = re.sub(r"\W", "", name) or slug.title().replace("-", "")
    themes = sorted(load_themes(Path(args.entries)))
    module.write_text(env.get_template("new_method.py.j2").render(slug=slug, name=name, class_name=class_name))
    entry.write_text(env.get_template("new_entry.yaml.j2").render(slug=slug, name=name, themes=themes))
    print(f"wrote {module}\nwrote {entry}\nnext: fill in the TODOs, then `adapterspec verify {slug}`")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from adapterspec.registry import adapter_class, available, hyperparameters

    for slug in available():
        hp = ", ".join(f"{k}={v!r}" for k, v in hyperparameters(slug).items())
        print(f"{slug:<12} {adapter_class(slug).__name__:<10} {hp}")
    return 0


def cmd_peft(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    try:
        import peft  # noqa: F401 — a dev dependency
    except ImportError:
        print("adapterspec: peft is not installed (pip install -e '.[dev]')", file=sys.stderr)
        return EXIT_BAD_INPUT
    from adapterspec.interop import equality
    from adapterspec.interop.peft import converters

    catalog = {it.entry.module_slug: it.entry for it in _catalog(args.entries)}
    slugs = args.slugs or sorted(converters())
    unknown = sorted(set(slugs) - set(converters()))
    if unknown:
        print(f"adapterspec: no peft converter for {', '.join(unknown)}; have: {', '.join(sorted(converters()))}",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    failed = []
    for slug in slugs:
        entry = catalog.get(slug)
        eq = equality.run(slug, formula=entry.properties.trainable_parameters if entry else None)
        status = "equal" if eq.ok else "DIFFER"
        print(f"{status:<6} {slug:<12} {len(eq.cases):>3} cases  max rel err float32 {eq.worst('float32'):.1e}  "
              f"float64 {eq.worst('float64'):.1e}  vs {eq.peft_layer} (peft {eq.peft_version})", flush=True)
        for f in eq.failures():
            print(f"  {f}", file=sys.stderr)
        failed += [slug] if not eq.ok else []
    print(f"{len(slugs) - len(failed)}/{len(slugs)} methods equal peft's layers in {time.perf_counter() - start:.1f} s"
          + (f"; differ: {', '.join(failed)}" if failed else ""))
    return EXIT_FAILED if failed else 0


def cmd_build(args: argparse.Namespace) -> int:
    """``mkdocs build --strict`` into a fresh folder beside the site, swapped in only if the build succeeds: a failed
    build (a bad entry, a strict-mode warning) leaves the previous site exactly as it was, and says so."""
    import shutil
    import subprocess
    import tempfile

    site = Path(args.site_dir).resolve()
    site.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{site.name}-building-", dir=site.parent))
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(staging), "-f", args.config_file]
    code = subprocess.call(cmd)
    if code != 0:
        shutil.rmtree(staging, ignore_errors=True)
        state = "left exactly as it was" if site.exists() else "not created"
        print(f"adapterspec: the build failed (see above); {site.name}/ {state}.", file=sys.stderr)
        return EXIT_FAILED
    old = site.with_name(f".{site.name}-old-{staging.name.rsplit('-', 1)[-1]}")
    if site.exists():
        site.rename(old)  # two renames on one file system: the site is never half written
    staging.rename(site)
    shutil.rmtree(old, ignore_errors=True)
    print(f"adapterspec: built {site}")
    return 0


def cmd_arena(args: argparse.Namespace) -> int:
    import json

    from adapterspec.arena import figures, runner

    try:
        p = runner.plan(args.quick, args.methods, args.targets, args.budgets, args.tier)
    except KeyError as e:
        print(f"adapterspec: {e.args[0]}", file=sys.stderr)
        return EXIT_BAD_INPUT
    out = Path(args.out or ("arena-quick.json" if args.quick else runner.DEFAULT_OUT))
    fig_dir = Path(args.figures) if args.figures else (
        Path(runner.DEFAULT_FIGURES) if out == Path(runner.DEFAULT_OUT) else out.with_name(out.stem + "-figures"))
    checkpoint = out.with_name(out.name + ".cells.jsonl")  # finished cells, kept until the results are written
    doc = runner.run(p, jobs=max(1, args.jobs), progress=runner.main_progress, checkpoint=checkpoint)
    if args.merge and out.exists():
        doc = runner.merge(json.loads(out.read_text(encoding="utf-8")), doc)
    runner.write(doc, out)
    checkpoint.unlink(missing_ok=True)
    paths = figures.write_figures(doc, fig_dir)
    est = doc["provenance"].get("estimated_full_run_seconds_2_cores")
    print(f"arena: {len(doc['records'])} fits in {runner.fmt_seconds(doc['provenance']['wall_seconds'])}; wrote {out}"
          f" and {', '.join(str(p) for p in paths)}"
          + (f"; the full grid would take about {runner.fmt_seconds(est)} on 2 cores (extrapolated from these fits)"
             if est else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="adapterspec", description="Adapters as Hypotheses: verify the catalog.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("verify", help="verify entries against their reference modules")
    p.add_argument("slugs", nargs="*", metavar="SLUG", help="entries to verify (default: all)")
    p.add_argument("--entries", default="entries", help="entries directory (default: ./entries)")
    p.add_argument("--papers", default=None, help="paper texts folder (default: $ADAPTERSPEC_PAPERS or "
                   "../shared/sources/papers)")
    p.add_argument("--benchmark", default=None, help="peft benchmark results folder (default: $ADAPTERSPEC_BENCHMARK "
                   "or ../shared/sources/peft_method_comparison)")
    p.set_defaults(func=cmd_verify)
    p = sub.add_parser("schema", help="the JSON Schema of entries, generated from the loader's model")
    p.add_argument("--entries", default="entries")
    p.add_argument("--write", action="store_true", help="write entries/schema.json")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("bib", help="BibTeX of the bibliography in papers/, generated from its records")
    p.add_argument("keys", nargs="*", metavar="KEY", help="citation keys (default: all)")
    p.add_argument("--bibliography", default="papers", help="bibliography folder (default: ./papers)")
    p.set_defaults(func=cmd_bib)
    p = sub.add_parser("new", help="scaffold a method: entries/SLUG.yaml and src/adapterspec/methods/SLUG.py")
    p.add_argument("slug", metavar="SLUG")
    p.add_argument("--name", default=None, help="display name, e.g. VeRA (default: the slug in capitals)")
    p.add_argument("--entries", default="entries")
    p.add_argument("--methods", default=str(Path("src") / "adapterspec" / "methods"))
    p.set_defaults(func=cmd_new)
    p = sub.add_parser("list", help="methods with a reference implementation")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("peft", help="run the equality matrix against peft's layers (needs peft, a dev dependency)")
    p.add_argument("slugs", nargs="*", metavar="SLUG", help="methods to compare (default: every converter)")
    p.add_argument("--entries", default="entries", help="entries directory, for the parameter formulas")
    p.set_defaults(func=cmd_peft)
    p = sub.add_parser("build", help="strict site build; site/ is replaced only when the build succeeds")
    p.add_argument("--site-dir", default="site")
    p.add_argument("--config-file", default="mkdocs.yml")
    p.set_defaults(func=cmd_build)
    p = sub.add_parser("arena", help="fit every method to known target structures at matched parameter budgets")
    p.add_argument("--quick", action="store_true", help="a small smoke run (tier 1: 3 methods, 3 targets, 1 budget; "
                   "tier 2: 2 methods, a briefly pretrained model)")
    p.add_argument("--methods", nargs="+", metavar="SLUG", help="only these methods (default: every method)")
    p.add_argument("--targets", nargs="+", metavar="NAME", help="only these target structures")
    p.add_argument("--budgets", nargs="+", type=float, metavar="FRACTION",
                   help="only these budgets, e.g. 0.02 (each tier keeps the ones on its own grid)")
    p.add_argument("--tier", type=int, nargs="+", choices=(1, 2), help="only these tiers (default: both)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--out", default=None, help="results file (default docs/data/arena.json; arena-quick.json with "
                   "--quick)")
    p.add_argument("--figures", default=None, help="folder for the SVG figures (default docs/assets/arena beside the "
                   "default results file, else FILE-figures/)")
    p.add_argument("--merge", action="store_true", help="keep the cells of an existing results file that this run "
                   "does not rerun (an interrupted run resumes by itself from FILE.cells.jsonl)")
    p.set_defaults(func=cmd_arena)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
