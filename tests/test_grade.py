"""The two scores: the papers' evidence weighed (support, protocol), then what independent results take away."""

from __future__ import annotations

import pytest

from adapterspec.catalog.benchmark import FULL_FINETUNING, LORA_BASELINE, Benchmark, compare
from adapterspec.catalog.grade import DISCOUNTS, RUBRIC, grade, item_weight
from adapterspec.catalog.model import Evidence
from test_benchmark import SOURCE, fake_run


def _with(entry, **fields):
    """``entry`` with its first evidence item changed (a copy, validated like a loaded entry)."""
    first = entry.evidence[0].model_dump()
    first.update(fields)
    data = entry.model_dump()
    data["evidence"] = [first]
    return type(entry).model_validate(data)


@pytest.fixture
def lora(catalog):
    return catalog.entries["lora"].entry


def test_new_fields_are_optional_with_defaults(lora):
    ev = Evidence.model_validate({k: v for k, v in lora.evidence[0].model_dump().items()
                                  if k not in ("support", "protocol", "seeds_or_variance_reported")})
    assert ev.support == "full" and ev.protocol == [] and ev.seeds_or_variance_reported is None
    assert item_weight(ev) == 1.0


def test_a_partial_item_earns_less_than_a_full_one(lora):
    full = _with(lora, support="full", protocol=[], seeds_or_variance_reported=True)
    partial = _with(lora, support="partial", protocol=[], seeds_or_variance_reported=True)
    d = full.evidence[0].dimension
    assert grade(full).detail[d].claimed == RUBRIC[d].points
    assert grade(partial).detail[d].claimed == RUBRIC[d].points * DISCOUNTS["partial"].factor
    assert grade(partial).score < grade(full).score


@pytest.mark.parametrize("flag", ["baselines-copied", "test-set-selection", "tuned-only-proposed"])
def test_each_protocol_flag_discounts(lora, flag):
    clean = _with(lora, protocol=[], seeds_or_variance_reported=True)
    flagged = _with(lora, protocol=[flag], seeds_or_variance_reported=True)
    assert grade(flagged).score == pytest.approx(grade(clean).score * DISCOUNTS[flag].factor)
    assert grade(flagged).score < grade(clean).score


def test_one_run_discounts_and_unrecorded_does_not(lora):
    several = grade(_with(lora, protocol=[], seeds_or_variance_reported=True)).score
    assert grade(_with(lora, protocol=[], seeds_or_variance_reported=None)).score == several
    assert grade(_with(lora, protocol=[], seeds_or_variance_reported=False)).score < several


def test_discounts_multiply_and_the_best_item_counts(lora):
    weak = _with(lora, support="partial", protocol=["baselines-copied"], seeds_or_variance_reported=False)
    assert item_weight(weak.evidence[0]) == pytest.approx(0.5 * 0.75 * 0.75)
    strong = lora.evidence[0].model_copy(update={"support": "full", "protocol": [], "seeds_or_variance_reported": True})
    both = weak.model_copy(update={"evidence": [weak.evidence[0], strong]})
    d = strong.dimension
    assert grade(both).detail[d].claimed == RUBRIC[d].points
    assert grade(both).detail[d].item == 1


def test_a_contradicted_dimension_lowers_the_replicated_score(catalog, tmp_path):
    dora = catalog.entries["dora"].entry  # claims BL, BF, DE
    fake_run(tmp_path, LORA_BASELINE, 0.50, 10)
    fake_run(tmp_path, FULL_FINETUNING, 0.55, 1000)
    fake_run(tmp_path, "dora--worse", 0.45, 11)
    g = grade(dora, compare(Benchmark(tmp_path), ["dora--worse"]))
    assert g.contradicted == ("BL", "BF")
    assert g.detail["BL"].replicated == 0 and g.detail["BF"].replicated == 0
    assert g.replicated == pytest.approx(g.score - g.detail["BL"].claimed - g.detail["BF"].claimed, abs=0.01)
    assert g.replicated < g.score
    fake_run(tmp_path, "dora--better", 0.60, 11)
    g = grade(dora, compare(Benchmark(tmp_path), ["dora--better"]))
    assert g.reproduced == ("BL", "BF") and g.replicated == g.score
    assert g.detail["DE"].independent == "untested"


def test_parameter_efficiency_is_checked_against_full_finetuning(catalog, tmp_path):
    vera = catalog.entries["vera"].entry  # claims PE
    fake_run(tmp_path, LORA_BASELINE, 0.50, 10)
    fake_run(tmp_path, FULL_FINETUNING, 0.55, 1000)
    fake_run(tmp_path, "vera--far", 0.40, 1)  # 0.1% of the parameters, 15 points below full fine-tuning
    assert grade(vera, compare(Benchmark(tmp_path), ["vera--far"])).detail["PE"].independent == "contradicted"
    fake_run(tmp_path, "vera--close", 0.54, 1)  # 1 point below: competitive
    assert grade(vera, compare(Benchmark(tmp_path), ["vera--close"])).detail["PE"].independent == "reproduced"
    fake_run(tmp_path, "vera--big", 0.54, 500)  # 50% of the parameters: not a PE run
    assert grade(vera, compare(Benchmark(tmp_path), ["vera--big"])).detail["PE"].independent == "untested"


@pytest.mark.skipif(not SOURCE.is_dir(), reason="benchmark results not available")
def test_real_benchmark_lowers_ia3_below_its_claim(catalog):
    """(IA)³ claims BL and BF; peft's benchmark contradicts both, so it no longer ties LoRA at the top."""
    ia3 = catalog.entries["ia3"].entry
    g = grade(ia3, compare(Benchmark(SOURCE), ia3.benchmark))
    assert set(g.contradicted) == {"BL", "BF"} and g.replicated < g.score


def test_entries_record_the_issues_protocol_findings(catalog):
    """The weaknesses the fact-check found are recorded, so they discount: LoKr's PE is partial, SHiRA's baselines
    are DoRA's, RoAd's LLaMA results were picked on the test set."""
    lokr = [ev for ev in catalog.entries["lokr"].entry.evidence if ev.dimension == "PE"]
    assert lokr and all(ev.support == "partial" for ev in lokr)
    assert all("baselines-copied" in ev.protocol for ev in catalog.entries["shira"].entry.evidence)
    road_bl = [ev for ev in catalog.entries["road"].entry.evidence if ev.dimension == "BL"]
    assert road_bl and "test-set-selection" in road_bl[0].protocol
