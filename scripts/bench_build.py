"""Median wall-clock timings of `adapterspec verify` (all entries, imports included) and a full strict site build.

    python scripts/bench_build.py [--runs 5]

Each run is a fresh process. The site build runs with the verification cache cleared, so that it includes
verifying every entry (the worst case; a rebuild with the cache warm is faster).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, **(env or {})})
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    verify, build = [], []
    for i in range(args.runs):
        verify.append(timed([str(BIN / "adapterspec"), "verify"]))
        shutil.rmtree(ROOT / ".cache" / "verify", ignore_errors=True)
        with tempfile.TemporaryDirectory() as out:
            build.append(timed([str(BIN / "mkdocs"), "build", "--strict", "--site-dir", out],
                               env={"NO_MKDOCS_2_WARNING": "1"}))
        print(f"run {i + 1}/{args.runs}: verify {verify[-1]:.2f} s, build {build[-1]:.2f} s", flush=True)
    print(f"median over {args.runs} runs: adapterspec verify {statistics.median(verify):.2f} s (target ≤ 5 s), "
          f"full build {statistics.median(build):.2f} s (target ≤ 30 s)")


if __name__ == "__main__":
    main()
