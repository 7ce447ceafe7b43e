"""The build as users run it: `make build` is atomic, `make serve` shows errors in the browser, the published site
holds only what it should, and the pull-request workflow cannot leak anything."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, copy_project

ENV = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
BIN = Path(sys.executable).parent


def _project(tmp_path: Path) -> Path:
    return copy_project(tmp_path / "project")


def _break_lora(project: Path) -> None:
    entry = project / "entries" / "lora.yaml"
    entry.write_text(entry.read_text().replace("trainable_parameters: r * (d_in + d_out)",
                                               "trainable_parameters: r * d_in"))


def _build(project: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "adapterspec"), "build"], cwd=project, capture_output=True, text=True,
                          timeout=600, env={**ENV, "PYTHONPATH": str(project / "src")})


def test_a_failed_build_leaves_the_previous_site_exactly_as_it_was(tmp_path):
    project = _project(tmp_path)
    site = project / "site"
    site.mkdir()
    (site / "index.html").write_text("the previous site")
    _break_lora(project)
    proc = _build(project)
    assert proc.returncode != 0
    assert "left exactly as it was" in proc.stderr
    assert "entries/lora.yaml" in proc.stderr and "trainable_parameters" in proc.stderr
    assert [p.name for p in site.iterdir()] == ["index.html"]
    assert (site / "index.html").read_text() == "the previous site"
    assert not list(project.glob(".site-*")), "the staging folder of the failed build was left behind"


def test_a_strict_mode_warning_also_leaves_the_site_alone(tmp_path):
    project = _project(tmp_path)
    (project / "site").mkdir()
    (project / "site" / "index.html").write_text("the previous site")
    (project / "docs" / "contributing.md").write_text("# Contributing\n\n[a broken link](nowhere.md)\n")
    proc = _build(project)
    assert proc.returncode != 0
    assert (project / "site" / "index.html").read_text() == "the previous site"


def test_a_successful_build_replaces_the_site(tmp_path):
    project = _project(tmp_path)
    (project / "site").mkdir()
    (project / "site" / "stale.html").write_text("stale")
    proc = _build(project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not (project / "site" / "stale.html").exists()
    assert (project / "site" / "methods" / "lora" / "index.html").exists()
    assert not list(project.glob(".site-*"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def test_serve_shows_a_failing_entry_in_the_browser(tmp_path):
    """While an entry fails, `make serve` answers every page with the error (file, line, field), instead of leaving
    the request hanging; fixing the entry brings the page back."""
    project = _project(tmp_path)
    good = (project / "entries" / "lora.yaml").read_text()
    _break_lora(project)
    port = _free_port()
    flags = next(line.split("mkdocs serve", 1)[1].split("--dev-addr")[0].split()
                 for line in (project / "Makefile").read_text().splitlines() if "mkdocs serve" in line)
    proc = subprocess.Popen([str(BIN / "mkdocs"), "serve", *flags, "--dev-addr", f"127.0.0.1:{port}"], cwd=project,
                            env={**ENV, "PYTHONPATH": str(project / "src")}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while True:
            status, body = _get(f"http://127.0.0.1:{port}/methods/lora/")
            if status == 200 or time.monotonic() > deadline or proc.poll() is not None:
                break
            time.sleep(0.5)
        assert status == 200, "mkdocs serve did not answer"
        assert "The catalog failed to build" in body
        assert "entries/lora.yaml:" in body and "trainable_parameters" in body
        status, home = _get(f"http://127.0.0.1:{port}/")
        assert status == 200 and "The catalog failed to build" in home
        (project / "entries" / "lora.yaml").write_text(good)
        deadline = time.monotonic() + 240  # a full re-verification and peft equality: minutes on a loaded machine
        # until the rebuilt page is served (while it rebuilds, a request may also go unanswered for a moment)
        while (status != 200 or "The catalog failed to build" in body) and time.monotonic() < deadline:
            time.sleep(0.5)
            status, body = _get(f"http://127.0.0.1:{port}/methods/lora/")
        assert status == 200 and "The catalog failed to build" not in body and "checks passed" in body
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_symlinks_in_folders_the_build_reads_are_refused(tmp_path):
    from adapterspec.catalog import CatalogError
    from adapterspec.catalog.site import build_site

    project = _project(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("a token")
    (project / "docs" / "leak.md").symlink_to(secret)
    with pytest.raises(CatalogError) as info:
        build_site(project, cache=None, progress=lambda _: None)
    assert "docs/leak.md" in str(info.value) and "symbolic link" in str(info.value)


def test_the_pull_request_workflow_runs_the_tests_with_nothing_to_steal():
    path = ROOT / ".github" / "workflows" / "ci.yml"
    text = path.read_text()
    flow = yaml.safe_load(text)
    triggers = flow.get("on", flow.get(True))  # YAML 1.1 reads the key `on` as True
    assert "pull_request" in triggers and "pull_request_target" not in triggers
    assert flow["permissions"] == {"contents": "read"}
    assert "secrets." not in text
    for job in flow["jobs"].values():
        assert job.get("permissions", {"contents": "read"}) == {"contents": "read"}
        steps = job["steps"]
        checkout = [s for s in steps if str(s.get("uses", "")).startswith("actions/checkout")]
        assert checkout and all(s.get("with", {}).get("persist-credentials") is False for s in checkout)
        readme = (ROOT / "README.md").read_text()
        assert any(s.get("run") == "make test" for s in steps) and "make test" in readme
