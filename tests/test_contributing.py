"""The Contributing page's worked example, followed step by step on a scratch copy of the project: the scaffold, the
files exactly as the page shows them, the paper's text and its hash, verification (and the error the page shows when
something is wrong), then a strict site build with the new method's page. If the page and the build drift apart, this
fails."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, copy_project

DOC = ROOT / "docs" / "contributing.md"
BIN = Path(sys.executable).parent


def titled_blocks(markdown: str) -> dict[str, str]:
    """``{path: content}`` of every fenced block carrying ``title="path"``."""
    return {m.group(1): m.group(2) for m in
            re.finditer(r'^```\w+ title="([^"]+)"\n(.*?)^```$', markdown, flags=re.M | re.S)}


def console_lines(markdown: str, command: str) -> list[list[str]]:
    """The output lines shown under each ``$ command`` console block."""
    out = []
    for block in re.findall(r"^```console\n(.*?)^```$", markdown, flags=re.M | re.S):
        lines = block.splitlines()
        if lines and lines[0] == f"$ {command}":
            out.append(lines[1:])
    return out


def run(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(project / "src"), "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([str(BIN / args[0]), *args[1:]], cwd=project, env=env, capture_output=True, text=True,
                          timeout=1200)


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory):
    """The project after steps 1-4, done as the page says."""
    doc = DOC.read_text(encoding="utf-8")
    files = titled_blocks(doc)
    project = copy_project(tmp_path_factory.mktemp("contrib") / "project")
    if (ROOT / ".cache").is_dir():  # results of the other entries' verification: the build only redoes toy-gain
        shutil.copytree(ROOT / ".cache", project / ".cache")
    # Step 1, the command the page shows.
    scaffold = re.search(r"^\.venv/bin/(adapterspec new .+)$", doc, flags=re.M).group(1).split()
    made = run(project, *scaffold)
    assert made.returncode == 0, made.stderr
    slug = scaffold[2]
    assert (project / "entries" / f"{slug}.yaml").exists()
    # Steps 2-4: the files, verbatim; the hash pasted in as the page says.
    expected = {"src/adapterspec/methods/toy_gain.py", "entries/toy-gain.yaml", "papers/doe2026toygain.yaml",
                "papers/text/doe2026toygain.md"}
    assert set(files) == expected, set(files)
    for path, content in files.items():
        target = project / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
    text = project / "papers" / "text" / "doe2026toygain.md"
    record = project / "papers" / "doe2026toygain.yaml"
    assert "PASTE-THE-OUTPUT-OF-sha256sum" in record.read_text(encoding="utf-8")
    record.write_text(record.read_text(encoding="utf-8").replace(
        "PASTE-THE-OUTPUT-OF-sha256sum", hashlib.sha256(text.read_bytes()).hexdigest()), encoding="utf-8")
    return project, slug, doc


def test_the_worked_example_verifies_as_the_page_shows(walkthrough):
    project, slug, doc = walkthrough
    result = run(project, "adapterspec", "verify", slug)
    assert result.returncode == 0, result.stdout + result.stderr
    shown = console_lines(doc, f".venv/bin/adapterspec verify {slug}")[0]
    got = result.stdout.splitlines()
    words = lambda line: line.split()[:4]  # noqa: E731 — status, slug, check count; timings differ
    assert words(got[0]) == words(shown[0]) and "quotes checked" in got[0], (got, shown)
    assert got[-1].startswith("1/1 entries verified")


def test_the_errors_the_page_shows_are_the_errors_the_build_prints(walkthrough):
    project, slug, doc = walkthrough
    entry = project / "entries" / f"{slug}.yaml"
    good = entry.read_text(encoding="utf-8")
    try:  # the two mistakes the page describes
        entry.write_text(good.replace("trainable_parameters: d_out", "trainable_parameters: d_in")
                         .replace("about 0.02% of the parameters", "about 0.2% of the parameters"), encoding="utf-8")
        result = run(project, "adapterspec", "verify", slug)
    finally:
        entry.write_text(good, encoding="utf-8")
    assert result.returncode == 1
    printed = " ".join((result.stdout + result.stderr).split())
    shown = console_lines(doc, f".venv/bin/adapterspec verify {slug}")[1]
    # the page folds long lines: join its error lines back, and find each in what was printed
    errors = " ".join(" ".join(shown[2:]).split()).split(" entries/")
    assert len(errors) == 2
    for error in errors:
        error = error if error.startswith("entries/") else "entries/" + error
        assert error.replace("papers/text/", str(project / "papers" / "text") + "/") in printed, error
    assert shown[0].startswith("FAIL") and result.stdout.startswith("FAIL")


def test_the_worked_example_gets_a_verified_page(walkthrough):
    project, slug, _ = walkthrough
    result = run(project, "adapterspec", "build")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    page = (project / "site" / "methods" / slug / "index.html").read_text(encoding="utf-8")
    assert "checks passed" in page and "quote checked against the paper" in page
    assert "@misc{doe2026toygain," in page.replace("<span", "\n<span") or "doe2026toygain" in page
    assert 'id="cite"' in page


def test_templates_for_new_methods_and_corrections_exist():
    github = ROOT / ".github"
    for name in ("new_method.md", "correction.md"):
        text = (github / "PULL_REQUEST_TEMPLATE" / name).read_text(encoding="utf-8")
        assert "adapterspec verify" in text and "- [ ]" in text
    for name in ("new_method.yml", "correction.yml"):
        form = yaml.safe_load((github / "ISSUE_TEMPLATE" / name).read_text(encoding="utf-8"))
        assert {"name", "description", "body"} <= set(form)
        assert all(item["type"] in {"input", "textarea", "checkboxes", "markdown", "dropdown"} for item in form["body"])
        assert any(item.get("validations", {}).get("required") for item in form["body"])
