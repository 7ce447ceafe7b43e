"""Independent results: the benchmark the peft maintainers run over their methods (MetaMathQA → GSM8K, Llama-3.2-3B).

The result files are third-party and not committed: they are read at build time from
``../shared/sources/peft_method_comparison`` beside the project (or ``$ADAPTERSPEC_BENCHMARK``). An entry lists the
experiments that ran its method (``benchmark:``); its page shows their figures beside the same benchmark's LoRA and
full fine-tuning runs, and flags a rubric dimension the benchmark contradicts. Every figure comes from the files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BENCHMARK = Path("..") / "shared" / "sources" / "peft_method_comparison"
LORA_BASELINE = "lora--llama-3.2-3B-rank32"
FULL_FINETUNING = "full-finetuning--llama-3.2-3B-lr_0.00001"
SETTING = ("Llama-3.2-3B trained on MetaMathQA for 5,000 steps, tested on GSM8K; one run (seed 0) per "
           "configuration; trainable parameters not matched across methods")
PE_TOLERANCE = 2.0  # points of accuracy below full fine-tuning that still count as "competitive" (PE)


@dataclass(frozen=True)
class Run:
    """One experiment's headline figures."""

    name: str  # the file stem, e.g. "lora--llama-3.2-3B-rank32"
    experiment: str
    status: str
    test_accuracy: float | None
    trainable_params: int
    total_params: int
    memory_max_gib: float
    train_time_s: float
    targets: tuple[str, ...]

    @property
    def failed(self) -> bool:
        """A configuration that did not train (0% accuracy or an error) says nothing about the method."""
        return self.status != "success" or not self.test_accuracy

    @property
    def params_percent(self) -> float:
        return 100 * self.trainable_params / self.total_params if self.total_params else float("nan")


class Benchmark:
    """The folder of result files, or nothing (``available`` is False)."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder or os.environ.get("ADAPTERSPEC_BENCHMARK") or DEFAULT_BENCHMARK)
        self.available = self.folder.is_dir()
        self._cache: dict[str, Run] = {}

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.folder.glob("*.json")) if self.available else []

    def run(self, name: str) -> Run | None:
        if name in self._cache:
            return self._cache[name]
        path = self.folder / f"{name}.json"
        if not path.exists():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        info, run_info = data["train_info"], data["run_info"]
        final = info["metrics"][-1] if info.get("metrics") else {}
        targets = (run_info.get("peft_config") or {}).get("target_modules") or ()
        run = Run(
            name=name, experiment=run_info["experiment_name"], status=info["status"],
            test_accuracy=final.get("test accuracy"), trainable_params=info["num_trainable_params"],
            total_params=info["num_total_params"], memory_max_gib=info["accelerator_memory_max"] / 2**30,
            train_time_s=info["train_time"], targets=tuple(sorted(targets)) if isinstance(targets, list) else (targets,),
        )
        self._cache[name] = run
        return run

    def fingerprint(self, names: list[str]) -> str:
        if not self.available:
            return "unavailable"
        parts = []
        for n in sorted(names + [LORA_BASELINE, FULL_FINETUNING]):
            p = self.folder / f"{n}.json"
            parts.append(f"{n}:{p.stat().st_size}:{p.stat().st_mtime_ns}" if p.exists() else f"{n}:-")
        return ";".join(parts)


@dataclass(frozen=True)
class Comparison:
    """A method's independent runs beside the benchmark's LoRA and full fine-tuning."""

    runs: list[Run]
    lora: Run | None
    full: Run | None

    @property
    def best(self) -> Run | None:
        ok = [r for r in self.runs if not r.failed]
        return max(ok, key=lambda r: r.test_accuracy) if ok else None

    def verdict(self, dimension: str) -> tuple[str, str | None]:
        """What this benchmark says about a rubric dimension: ``("reproduced" | "contradicted", the figures)`` for the
        dimensions it can test (PE, BL, BF), ``("untested", None)`` otherwise or when every run failed.

        PE: the best run that trains under 1% of the model is within `PE_TOLERANCE` points of full fine-tuning (or
        above it). BL: the best run is at or above LoRA rank 32. BF: the best run is at or above full fine-tuning.
        """
        best = self.best
        if best is None:
            return "untested", None
        acc = f"{best.experiment}, {100 * best.test_accuracy:.1f}%"
        if dimension == "BL" and self.lora and best.name != self.lora.name:
            lora = 100 * self.lora.test_accuracy
            if best.test_accuracy < self.lora.test_accuracy:
                return "contradicted", f"its best run here ({acc}) is below LoRA rank 32 ({lora:.1f}%)"
            return "reproduced", f"its best run here ({acc}) is at or above LoRA rank 32 ({lora:.1f}%)"
        if dimension == "BF" and self.full:
            full = 100 * self.full.test_accuracy
            if best.test_accuracy < self.full.test_accuracy:
                return "contradicted", f"its best run here ({acc}) is below full fine-tuning ({full:.1f}%)"
            return "reproduced", f"its best run here ({acc}) is at or above full fine-tuning ({full:.1f}%)"
        if dimension == "PE" and self.full:
            small = [r for r in self.runs if not r.failed and r.params_percent < 1]
            if not small:
                return "untested", None
            top = max(small, key=lambda r: r.test_accuracy)
            gap = 100 * (self.full.test_accuracy - top.test_accuracy)
            figures = (f"its best run under 1% of the parameters ({top.experiment}, {top.params_percent:.2f}%, "
                       f"{100 * top.test_accuracy:.1f}%) is {abs(gap):.1f} points {'below' if gap > 0 else 'above'} "
                       f"full fine-tuning ({100 * self.full.test_accuracy:.1f}%)")
            return ("contradicted" if gap > PE_TOLERANCE else "reproduced"), figures
        return "untested", None

    def contradicts(self, dimension: str) -> str | None:
        """Why the benchmark contradicts a claimed rubric dimension (PE, BL, BF), or None."""
        status, why = self.verdict(dimension)
        return why if status == "contradicted" else None


def compare(benchmark: Benchmark, names: list[str]) -> Comparison | None:
    if not benchmark.available:
        return None
    runs = [r for r in (benchmark.run(n) for n in names) if r is not None]
    return Comparison(runs=runs, lora=benchmark.run(LORA_BASELINE), full=benchmark.run(FULL_FINETUNING))
