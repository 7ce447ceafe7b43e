"""Material for MkDocs reaches end of life in 2027; Zensical is its successor. Does Zensical build this site?

Zensical is not a dependency (it would pin its own Markdown stack): the test runs the `zensical` found on PATH, or the
one named by ``ADAPTERSPEC_ZENSICAL``, and skips, saying why, where there is none. Checked 2026-11-30 with
Zensical 0.0.73: it builds the hand-written pages, but it does not run MkDocs hooks, so the catalog (every page
`docs/hooks/catalog.py` generates) is missing; the test reports that as an expected failure, naming what broke.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from conftest import ROOT, copy_project


def _zensical() -> str:
    path = os.environ.get("ADAPTERSPEC_ZENSICAL") or shutil.which("zensical")
    if not path:
        pytest.skip("Zensical is not installed (pip install zensical, or set ADAPTERSPEC_ZENSICAL to its executable)")
    return path


def test_zensical_builds_the_catalog(tmp_path):
    zensical = _zensical()
    version = subprocess.run([zensical, "--version"], capture_output=True, text=True).stdout.strip()
    project = copy_project(tmp_path / "project")
    run = subprocess.run([zensical, "build", "-f", "mkdocs.yml"], cwd=project, capture_output=True, text=True,
                         timeout=900, env={**os.environ, "NO_COLOR": "1"})
    built = project / "site"
    generated = ["methods/lora/index.html", "methods/index.html", "peft/index.html", "bibliography/index.html"]
    missing = [p for p in generated if not (built / p).exists()]
    hand_written = (built / "contributing" / "index.html").exists()
    if run.returncode != 0 or missing:
        reason = (f"{version}: exit status {run.returncode}; hand-written pages built: {hand_written}; "
                  f"generated pages missing: {', '.join(missing) or 'none'} (Zensical does not run the MkDocs hook "
                  "docs/hooks/catalog.py). Last output: " + " ".join(run.stdout.split()[-40:] + run.stderr.split()[-40:]))
        pytest.xfail(reason)
    assert "checks passed" in (built / "methods" / "lora" / "index.html").read_text(encoding="utf-8")
