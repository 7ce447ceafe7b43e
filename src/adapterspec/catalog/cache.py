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
from typing import Any

import torch

from adapterspec.catalog.benchmark import Benchmark
from adapterspec.catalog.loader import LoadedEntry
from adapterspec.catalog.papers import PaperTexts
from adapterspec.catalog.verify import Result, verify_entry
from adapterspec.registry import adapter_class

_ENGINE = ("adapterspec.adapter", "adapterspec.ops", "adapterspec.registry", "adapterspec.catalog.verify",
           "adapterspec.catalog.sandbox", "adapterspec.catalog.papers", "adapterspec.catalog.model",
           "adapterspec.catalog.benchmark")


def entry_key(item: LoadedEntry, papers: PaperTexts, benchmark: Benchmark) -> str:
    h = hashlib.sha256(item.text.encode())
    files = {Path(sys.modules[m].__file__) for m in _ENGINE}
    cls = adapter_class(item.entry.module_slug)
    files |= {Path(inspect.getfile(c)) for c in cls.__mro__ if c.__module__.startswith("adapterspec.")}
    for f in sorted(files):
        h.update(f.name.encode() + f.read_bytes())
    h.update(torch.__version__.encode())
    h.update(papers.fingerprint([p.arxiv for p in item.entry.papers]).encode())
    h.update(benchmark.fingerprint(item.entry.benchmark).encode())
    return h.hexdigest()[:20]


def verify_cached(item: LoadedEntry, papers: PaperTexts, benchmark: Benchmark,
                  cache_dir: Path | None) -> tuple[Result, bool]:
    """The entry's verification result, and whether it came from the cache."""
    if cache_dir is None:
        return verify_entry(item, papers, benchmark), False
    key = entry_key(item, papers, benchmark)
    path = cache_dir / f"{item.slug}.json"
    if path.exists():
        try:
            data = json.loads(path.read_text())
            if data.get("key") == key:
                return Result.from_json(data["result"]), True
        except (ValueError, KeyError, TypeError):
            pass  # a corrupt cache file is just a miss
    result = verify_entry(item, papers, benchmark)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": key, "result": result.to_json()}))
    return result, False


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
    h = hashlib.sha256(f"{formula}|{peft_version}|{torch.__version__}".encode())
    files = {Path(sys.modules[m].__file__) for m in (*_ENGINE, "adapterspec.interop.peft", "adapterspec.interop.equality")}
    files.add(Path(converters()[slug].__file__))
    files |= {Path(inspect.getfile(c)) for c in adapter_class(slug).__mro__ if c.__module__.startswith("adapterspec.")}
    for f in sorted(files):
        h.update(f.name.encode() + f.read_bytes())
    key = h.hexdigest()[:20]
    path = cache_dir / f"{item.slug}.peft.json" if cache_dir else None
    if path is not None and path.exists():
        try:
            data = json.loads(path.read_text())
            if data.get("key") == key:
                return equality.Equality.from_json(data["result"]), "cached"
        except (ValueError, KeyError, TypeError):
            pass
    result = equality.run(slug, formula=formula)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"key": key, "result": result.to_json()}))
    return result, ""
