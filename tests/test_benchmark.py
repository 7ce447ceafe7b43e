"""Independent results: read from peft's benchmark files, never typed; claims they do not reproduce are flagged."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from adapterspec.catalog import verify_entry
from adapterspec.catalog.benchmark import FULL_FINETUNING, LORA_BASELINE, Benchmark, compare
from adapterspec.catalog.render import _contradictions
from conftest import ROOT

SOURCE = ROOT.parent / "shared" / "sources" / "peft_method_comparison"


def fake_run(folder: Path, name: str, accuracy: float, params: int, status: str = "success") -> None:
    folder.mkdir(exist_ok=True)
    data = {"run_info": {"experiment_name": name.replace("--", "/"), "peft_config": {"target_modules": ["q_proj"]}},
            "train_info": {"status": status, "num_trainable_params": params, "num_total_params": 1000,
                           "accelerator_memory_max": 2**30, "train_time": 1.0,
                           "metrics": [{"step": 1}, {"test accuracy": accuracy}]}}
    (folder / f"{name}.json").write_text(json.dumps(data))


def test_figures_come_from_the_files(tmp_path):
    fake_run(tmp_path, LORA_BASELINE, 0.50, 10)
    fake_run(tmp_path, FULL_FINETUNING, 0.55, 1000)
    fake_run(tmp_path, "dora--x", 0.48, 11)
    fake_run(tmp_path, "dora--broken", 0.0, 11)
    cmp = compare(Benchmark(tmp_path), ["dora--x", "dora--broken"])
    assert [r.test_accuracy for r in cmp.runs] == [0.48, 0.0]
    assert cmp.runs[1].failed and not cmp.runs[0].failed
    assert cmp.best.name == "dora--x"  # a failed configuration is never the method's result
    assert "below LoRA rank 32" in cmp.contradicts("BL")
    assert "below full fine-tuning" in cmp.contradicts("BF")
    fake_run(tmp_path, "dora--x", 0.60, 11)
    cmp = compare(Benchmark(tmp_path), ["dora--x"])
    assert cmp.contradicts("BL") is None and cmp.contradicts("BF") is None


def test_only_failed_runs_contradict_nothing(tmp_path):
    fake_run(tmp_path, LORA_BASELINE, 0.50, 10)
    fake_run(tmp_path, "x--zero", 0.0, 5)
    cmp = compare(Benchmark(tmp_path), ["x--zero"])
    assert cmp.best is None and cmp.contradicts("BL") is None


def test_unknown_benchmark_run_is_an_entry_error(catalog, tmp_path):
    fake_run(tmp_path, LORA_BASELINE, 0.50, 10)
    item = catalog.entries["dora"]
    bad = replace(item, entry=item.entry.model_copy(update={"benchmark": ["lora--llama-3.2-3B-rank33-dora"]}))
    result = verify_entry(bad, benchmark=Benchmark(tmp_path))
    assert not result.ok
    (err,) = result.errors()
    assert "benchmark[0]" in str(err) and "no result file" in str(err) and LORA_BASELINE in str(err)


@pytest.mark.skipif(not SOURCE.is_dir(), reason="benchmark results not available")
def test_real_benchmark_flags_dora_claims(catalog):
    """DoRA's paper claims BL and BF; in peft's benchmark its r32 run is below both LoRA r32 and full fine-tuning."""
    entry = catalog.entries["dora"].entry
    flagged = _contradictions(entry, compare(Benchmark(SOURCE), entry.benchmark))
    assert set(flagged) == {"BL", "BF"}, flagged
    assert "below LoRA rank 32" in flagged["BL"] and "below full fine-tuning" in flagged["BF"]
