"""Verification results cached by content, so that a rebuild re-verifies only what changed.

The key of an entry hashes what verification reads of its YAML (not its prose, so that editing a sentence does not
re-verify), the source of every module its reference class is built from (the method file, its base classes' files,
``adapter.py``, ``ops.py``), the verifier itself, the torch version and the paper texts it cites. Anything else
changing leaves the cached result valid.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

import torch

from adapterspec.catalog.benchmark import Benchmark
from adapterspec.catalog.loader import LoadedEntry
from adapterspec.catalog.papers import PaperTexts
from adapterspec.catalog.verify import Result
from adapterspec.catalog.worker import in_forked_process
from adapterspec.registry import adapter_class

_ENGINE = ("adapterspec.adapter", "adapterspec.ops", "adapterspec.registry", "adapterspec.catalog.verify",
           "adapterspec.catalog.sandbox", "adapterspec.catalog.worker", "adapterspec.catalog.wire",
           "adapterspec.catalog.formula", "adapterspec.catalog.papers", "adapterspec.catalog.bibliography",
           "adapterspec.catalog.model", "adapterspec.catalog.benchmark", "adapterspec.catalog.cache", "adapterspec.catalog.figures")


def _source_key(slug: str, modules: tuple[str, ...], extra_files: tuple[Path, ...], *parts: str) -> str:
    """Hash of the named modules' and the method's source files (its class and base classes), plus ``parts``."""
    h = hashlib.sha256("|".join((*parts, torch.__version__)).encode())
    files = {Path(sys.modules[m].__file__) for m in modules} | set(extra_files)
    files |= {Path(inspect.getfile(c)) for c in adapter_class(slug).__mro__ if c.__module__.startswith("adapterspec.")}
    for f in sorted(files):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:20]


def _load(path: Path | None, key: str, load: Callable[[dict], Any]) -> Any | None:
    """What is stored at ``path`` under ``key``, or None (a missing, stale or corrupt file is a miss)."""
    if path is None or not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        return load(data["result"]) if data.get("key") == key else None
    except (ValueError, KeyError, TypeError):
        return None


def _store(path: Path | None, key: str, result: dict) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"key": key, "result": result}))


VERIFIED_FIELDS = ("pseudocode", "implementation", "properties", "papers", "evidence", "benchmark")


def verified_input(item: LoadedEntry) -> str:
    """What verification reads from the entry, with the lines it may report: prose is not part of it, so editing a
    summary or a caveat leaves the stored result valid (and `mkdocs serve` fast)."""
    e = item.entry
    data = e.model_dump(mode="json", include={"id", "pseudocode", "implementation", "properties", "papers",
                                              "benchmark"})
    data["evidence"] = [(ev.dimension, ev.quote, ev.paper) for ev in e.evidence]
    data["lines"] = sorted((repr(k), v) for k, v in item.lines.items() if k and k[0] in VERIFIED_FIELDS)
    return json.dumps(data, sort_keys=True, ensure_ascii=False)


def entry_key(item: LoadedEntry, papers: PaperTexts, benchmark: Benchmark) -> str:
    return _source_key(item.entry.module_slug, _ENGINE, (), verified_input(item),
                       papers.fingerprint(list(item.papers.values())),
                       benchmark.fingerprint(item.entry.benchmark))


def cached_result(item: LoadedEntry, papers: PaperTexts, benchmark: Benchmark, cache_dir: Path | None) -> Result | None:
    """The stored verification result of the entry as it is now, or None."""
    path = cache_dir / f"{item.slug}.json" if cache_dir else None
    return _load(path, entry_key(item, papers, benchmark), Result.from_json)


def store_result(item: LoadedEntry, papers: PaperTexts, benchmark: Benchmark, cache_dir: Path | None,
                 result: Result) -> None:
    if cache_dir is not None:
        _store(cache_dir / f"{item.slug}.json", entry_key(item, papers, benchmark), result.to_json())


def _peft_not_applicable(item: LoadedEntry) -> str | None:
    from adapterspec.interop.peft import converters  # does not import peft

    if item.entry.code.peft is None:
        return "peft has no implementation of this method"
    if item.entry.module_slug not in converters():
        return f"no converter from {item.entry.code.peft} yet"
    try:
        importlib.metadata.version("peft")
    except importlib.metadata.PackageNotFoundError:
        return "peft is not installed where this site was built, so the comparison did not run"
    return None


def _peft_key(item: LoadedEntry) -> str:
    from adapterspec.interop.peft import converters

    slug = item.entry.module_slug
    return _source_key(slug, (*_ENGINE, "adapterspec.interop.peft", "adapterspec.interop.equality"),
                       (Path(converters()[slug].__file__),), item.entry.properties.trainable_parameters,
                       importlib.metadata.version("peft"))


class PeftEqualities:
    """Every entry's equality matrix against peft (`adapterspec.interop.equality.Equality`), or ``None`` and why not.

    Cached like verification, keyed by the converter, the method's source, the harness and the peft and torch
    versions. What is not cached runs in a process forked from this one (trusted code: our converters against
    peft), so that importing peft and running the matrix take the other core while this process verifies entries.
    Call `result` for the answers.
    """

    def __init__(self, items: list[LoadedEntry], cache_dir: Path | None) -> None:
        from adapterspec.interop.equality import Equality

        self.cache_dir = cache_dir
        self.done: dict[str, tuple[Any, str]] = {}
        self.todo: list[tuple[LoadedEntry, str]] = []
        for item in items:
            why = _peft_not_applicable(item)
            if why:
                self.done[item.slug] = (None, why)
                continue
            key = _peft_key(item)
            hit = _load(self._path(item), key, Equality.from_json)
            if hit is not None:
                self.done[item.slug] = (hit, "cached")
            else:
                self.todo.append((item, key))
        jobs = [(item.entry.module_slug, item.entry.properties.trainable_parameters) for item, _ in self.todo]
        self._wait = in_forked_process(lambda: _run_equalities(jobs)) if jobs else None

    def _path(self, item: LoadedEntry) -> Path | None:
        return self.cache_dir / f"{item.slug}.peft.json" if self.cache_dir else None

    def result(self) -> dict[str, tuple[Any, str]]:
        from adapterspec.interop.equality import Equality

        if self._wait is not None:
            for (item, key), data in zip(self.todo, self._wait()):
                _store(self._path(item), key, data)
                self.done[item.slug] = (Equality.from_json(data), "")
            self._wait = None
        return self.done


def _run_equalities(jobs: list[tuple[str, str]]) -> list[dict]:
    """Import peft once, then split the jobs over one forked process per core."""
    import peft  # noqa: F401 — the slow part (it imports transformers), done before the split

    from adapterspec.interop import equality

    def run(part: list[tuple[str, str]]) -> list[dict]:
        return [equality.run(slug, formula=formula).to_json() for slug, formula in part]

    ways = max(1, min(os.cpu_count() or 1, len(jobs)))
    parts = [jobs[i::ways] for i in range(ways)]
    others = [in_forked_process(lambda part=part: run(part)) for part in parts[1:]]
    done = [run(parts[0]), *(wait() for wait in others)]
    return [done[i % ways][i // ways] for i in range(len(jobs))]
