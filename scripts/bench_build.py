"""Timings of the build: `adapterspec verify`, a cold strict site build, and `mkdocs serve`'s edit-to-page latency.

    python scripts/bench_build.py [--runs 5] [--before REV]

Each run is a fresh process, on a copy of the working tree in a temporary folder (so nothing here is touched). The
cold build runs with no verification cache, so it includes verifying every entry and running the peft equality
matrix. The serve latency is the time from saving a one-word edit to an entry's summary until `mkdocs serve` returns
the page with the new word (polled every 20 ms).

With ``--before REV``, the same measurements run on a checkout of REV too, alternating run by run with the working
tree, so that both sides see the same machine load: the before/after comparison of one run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
SKIP = {".git", ".venv", "site", ".cache", "__pycache__", ".pytest_cache"}


def copy_tree(rev: str | None, dest: Path) -> Path:
    """The working tree (``rev`` None) or a checkout of ``rev``, in ``dest``, beside a link to ../shared."""
    if rev is None:
        shutil.copytree(ROOT, dest, ignore=lambda d, names: [n for n in names if n in SKIP])
    else:
        dest.mkdir()
        archive = subprocess.run(["git", "archive", rev], cwd=ROOT, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    shared = dest.parent / "shared"
    if not shared.exists() and (ROOT.parent / "shared").exists():
        shared.symlink_to(ROOT.parent / "shared")
    return dest


def timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    env = {**ENV, "PYTHONPATH": str(cwd / "src")}
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def cold_build(tree: Path) -> float:
    shutil.rmtree(tree / ".cache", ignore_errors=True)
    with tempfile.TemporaryDirectory() as out:
        return timed([str(BIN / "mkdocs"), "build", "--strict", "--site-dir", out], tree)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.read().decode()
    except OSError:
        return ""


def serve_flags(tree: Path) -> list[str]:
    """The flags `make serve` passes to `mkdocs serve` in that tree (besides --dev-addr)."""
    for line in (tree / "Makefile").read_text().splitlines():
        if "mkdocs serve" in line:
            words = line.split("mkdocs serve", 1)[1].split()
            return [w for i, w in enumerate(words) if w != "--dev-addr" and (i == 0 or words[i - 1] != "--dev-addr")]
    return []


def serve_latency(tree: Path, edits: int = 3) -> float:
    """Median seconds from a one-word edit of entries/lora.yaml's summary to the served page showing it."""
    port = _free_port()
    env = {**ENV, "PYTHONPATH": str(tree / "src")}
    proc = subprocess.Popen([str(BIN / "mkdocs"), "serve", *serve_flags(tree), "--dev-addr", f"127.0.0.1:{port}"],
                            cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/methods/lora/"
    try:
        deadline = time.monotonic() + 180
        while "LoRA" not in _get(url):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("mkdocs serve did not come up")
            time.sleep(0.2)
        entry = tree / "entries" / "lora.yaml"
        original = entry.read_text()
        latencies = []
        for i in range(edits):
            word = f"Benchword{i}x{os.getpid()}"
            time.sleep(1.0)  # let the server settle between edits
            entry.write_text(original.replace("Freezes each pretrained weight", f"Freezes each {word} weight", 1))
            start = time.perf_counter()
            while word not in _get(url):
                if time.perf_counter() - start > 60:
                    raise RuntimeError("the edit never reached the page")
                time.sleep(0.02)
            latencies.append(time.perf_counter() - start)
        entry.write_text(original)
        return statistics.median(latencies)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--before", metavar="REV", help="also measure a checkout of REV, alternating with this tree")
    parser.add_argument("--no-serve", action="store_true", help="skip the mkdocs serve latency")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"after": copy_tree(None, Path(tmp) / "after")}
        if args.before:
            trees = {"before": copy_tree(args.before, Path(tmp) / "before"), **trees}
        times: dict[str, dict[str, list[float]]] = {k: {"verify": [], "build": [], "serve": []} for k in trees}
        for i in range(args.runs):
            for name, tree in trees.items():
                t = times[name]
                t["verify"].append(timed([str(BIN / "adapterspec"), "verify"], tree))
                t["build"].append(cold_build(tree))
                if not args.no_serve:
                    t["serve"].append(serve_latency(tree))
                print(f"run {i + 1}/{args.runs} {name:>6}: verify {t['verify'][-1]:.2f} s, cold build "
                      f"{t['build'][-1]:.2f} s" + (f", serve edit {t['serve'][-1]:.2f} s" if t["serve"] else ""),
                      flush=True)
    print(f"\nmedian over {args.runs} runs ({os.cpu_count()} cores):")
    for name, t in times.items():
        print(f"  {name:>6}: adapterspec verify {statistics.median(t['verify']):.2f} s, cold strict build "
              f"{statistics.median(t['build']):.2f} s"
              + (f", serve one-word edit {statistics.median(t['serve']):.2f} s" if t["serve"] else ""))


if __name__ == "__main__":
    main()
