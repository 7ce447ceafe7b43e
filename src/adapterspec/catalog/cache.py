"""Verification results cached by content, so that a rebuild re-verifies only what changed.

The key of an entry hashes its YAML, the source of every module its reference class is built from (the method file,
its base classes' files, ``adapter.py``, ``ops.py``), the verifier itself, the torch version and the paper texts it
cites. Anything else changing leaves the cached result valid.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import json
import sys
from pathlib import Path
from typing import Any, Callable

import torch

from adapterspec.catalog.benchmark import Benchmark
from adapterspec.catalog.loader import LoadedEntry
from adapterspec.catalog.papers import PaperTexts
from adapterspec.catalog.verify import Result, verify_entry
from adapterspec.registry import adapter_class

_ENGINE = ("adapterspec.adapter", "adapterspec.ops", "adapterspec.registry", "adapterspec.catalog.verify",
           "adapterspec.catalog.sandbox", "adapterspec.catalog.papers", "adapterspec.catalog.model",
           "adapterspec.catalog.benchmark")


def _source_key(slug: str, modules: tuple[str, ...], extra_files: tuple[Path, ...], *parts: str) -> str:
    """Hash of the named modules' and the method's source files (its class and base classes), plus ``parts``."""
    h = hashlib.sha256("|".join((*parts, torch.__version__)).encode())
    files = {Path(sys.modules[m].__file__) for m in modules} | set(extra_files)
    files |= {Path(inspect.getfile(c)) for c in adapter_class(slug).__mro__ if c.__module__.startswith("adapterspec.")}
    for f in sorted(files):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:20]


def _cached(path: Path | None, key: str, compute: Callable[[], Any], load: Callable[[dict], Any]) -> tuple[Any, bool]:
    """``compute()``'s result, read from ``path`` when stored there under ``key`` (and whether it was)."""
    if path is not None and path.exists():
        try:
            data = json.loads(path.read_text())
            if data.get("key") == key:
                return load(data["result"]), True
        except (ValueError, KeyError, TypeError):
            pass  # a corrupt cache file is just a miss
    result = compute()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"key": key, "result": result.to_json()}))
    return result, False


def entry_key(item: LoadedEntry, papers: PaperTexts, benchmark: Benchmark) -> str:
    return _source_key(item.entry.module_slug, _ENGINE, (), item.text,
                       papers.fingerprint([p.arxiv for p in item.entry.papers]),
                       benchmark.fingerprint(item.entry.benchmark))


def verify_cached(item: LoadedEntry, papers: PaperTexts, benchmark: Benchmark,
                  cache_dir: Path | None) -> tuple[Result, bool]:
    """The entry's verification result, and whether it came from the cache."""
    if cache_dir is None:
        return verify_entry(item, papers, benchmark), False
    return _cached(cache_dir / f"{item.slug}.json", entry_key(item, papers, benchmark),
                   lambda: verify_entry(item, papers, benchmark), Result.from_json)


def peft_equality(item: LoadedEntry, cache_dir: Path | None) -> tuple[Any, str]:
    """The entry's equality matrix against peft (`adapterspec.interop.equality.Equality`), or ``None`` and why not.

    Cached like verification, keyed by the converter, the method's source, the harness and the peft and torch versions.
    """
    from adapterspec.interop.peft import converters

    slug = item.entry.module_slug
    if item.entry.code.peft is None:
        return None, "peft has no implementation of this method"
    if slug not in converters():
        return None, f"no converter from {item.entry.code.peft} yet"
    try:
        peft_version = importlib.metadata.version("peft")
    except importlib.metadata.PackageNotFoundError:
        return None, "peft is not installed where this site was built, so the comparison did not run"
    from adapterspec.interop import equality

    formula = item.entry.properties.trainable_parameters
    key = _source_key(slug, (*_ENGINE, "adapterspec.interop.peft", "adapterspec.interop.equality"),
                      (Path(converters()[slug].__file__),), formula, peft_version)
    result, cached = _cached(cache_dir / f"{item.slug}.peft.json" if cache_dir else None, key,
                             lambda: equality.run(slug, formula=formula), equality.Equality.from_json)
    return result, "cached" if cached else ""
