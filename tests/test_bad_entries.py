"""Bad input gets an error a person can act on: the file, the field or line, and what was expected — never a
traceback. Each case is the LoRA entry with one flaw."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapterspec.catalog import CatalogError, load_catalog, verify_entry
from conftest import ENTRIES

GOOD = (ENTRIES / "lora.yaml").read_text(encoding="utf-8")


def line_of(text: str, needle: str) -> int:
    for i, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in the entry")


@dataclass
class Case:
    id: str
    old: str
    new: str
    expect: tuple[str, ...]  # fragments of the error message
    line_of: str | None = None  # the error must point at the line holding this text (in the bad file)
    stage: str = "load"  # "load" (CatalogError) or "verify" (a failed check)


CASES = [
    Case("yaml-syntax", "name: LoRA\n", "name: [LoRA\n", ("YAML syntax error",), line_of=None),
    Case("missing-field", "hypothesis: >", "hypothesis_moved: >", ("hypothesis", "required field is missing")),
    Case("unknown-field", "implications: >", "implication: >", ("implication", "unknown field"), "implication: >"),
    Case("mistyped-field", "  mergeable: true", "  mergeable: sometimes", ("properties.mergeable", "boolean"),
         "mergeable: sometimes"),
    Case("paper-not-a-key", "- hu2021lora\n", "- '2106.09685'\n", ("papers[0]", "pattern"), "- '2106.09685'"),
    Case("unknown-paper-key", "- hu2021lora\n", "- hu2021lorax\n", ("unknown paper 'hu2021lorax'", "papers/"),
         "- hu2021lorax"),
    Case("evidence-cites-uncited-paper", "  paper: hu2021lora\n", "  paper: liu2024dora\n",
         ("paper 'liu2024dora' is not in this entry's papers",), "paper: liu2024dora"),
    Case("duplicate-key", "implications: >", "name: LoRA again\nimplications: >", ("duplicate key 'name'", "first on line"),
         "name: LoRA again"),
    Case("unknown-theme", "- low-rank\n", "- low-rankk\n", ("unknown theme 'low-rankk'", "valid:", "gain-control"),
         "- low-rankk"),
    Case("unknown-related", "- pissa\n", "- pisa\n", ("unknown related entry 'pisa'", "valid:", "dora"), "- pisa"),
    Case("pseudocode-import", "def forward(", "import os\n  def forward(", ("imports are not allowed",),
         "import os", stage="verify"),
    Case("pseudocode-raises", "ΔW = (α / r) * (B @ A)", "ΔW = (α / r) * (B @ A) * (1 // 0)",
         ("raised", "ZeroDivisionError"), "(1 // 0)", stage="verify"),
    Case("pseudocode-endless-loop", "ΔW = (α / r) * (B @ A)", "ΔW = (α / r) * (B @ A)\n      while True: r = r",
         ("did not finish",), "while True", stage="verify"),
    Case("pseudocode-wrong-shape", "return (W0 + ΔW) @ x + bias", "return ((W0 + ΔW) @ x + bias)[:3]",
         ("returned shape (3,)", "expected (12,)"), stage="verify"),
    Case("pseudocode-unknown-symbol", "def forward(x, W0, bias, A, B, α, r):", "def forward(x, W0, bias, A, B, α, r, κ):",
         ("parameter 'κ' is not a symbol",), stage="verify"),
    Case("wrong-parameter-formula", "trainable_parameters: r * (d_in + d_out)", "trainable_parameters: r * d_in",
         ("trainable parameter count", "r * d_in"), "trainable_parameters: r * d_in", stage="verify"),
    Case("false-identity-claim", "identity_at_init: true", "identity_at_init: false",
         ("identity_at_init", "declared False"), "identity_at_init: false", stage="verify"),
    Case("shared-unknown-symbol", "identity_at_init: true", "identity_at_init: true\n  shared_across_layers: [Z]",
         ("properties.shared_across_layers", "'Z' is not a tensor symbol"), "shared_across_layers: [Z]",
         stage="verify"),
    Case("bad-hyperparameter", "    r: 4\n", "    rank: 4\n", ("unknown hyperparameter", "rank", "valid: r, alpha"),
         "hyperparameters:", stage="verify"),
]


def write_catalog(tmp_path: Path, text: str, **others: str) -> Path:
    """An entries folder with lora.yaml replaced by ``text`` (and any ``slug=text`` replaced too)."""
    root = tmp_path / "entries"
    root.mkdir()
    shutil.copy(ENTRIES / "themes.yaml", root)
    for slug in ("dora", "pissa"):  # lora's related entries
        shutil.copy(ENTRIES / f"{slug}.yaml", root)
    (root / "lora.yaml").write_text(text, encoding="utf-8")
    for slug, other in others.items():
        (root / f"{slug}.yaml").write_text(other, encoding="utf-8")
    return root


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_entry_error_names_file_and_field(case: Case, tmp_path: Path):
    assert case.old in GOOD, f"case {case.id} no longer applies to lora.yaml"
    bad = GOOD.replace(case.old, case.new, 1)
    root = write_catalog(tmp_path, bad)
    if case.stage == "load":
        with pytest.raises(CatalogError) as info:
            load_catalog(root)
        errors = [e for e in info.value.errors if e.file.endswith("lora.yaml")]
    else:
        result = verify_entry(load_catalog(root).entries["lora"])
        assert not result.ok
        errors = result.errors()
    assert errors, "no error names lora.yaml"
    message = "\n".join(str(e) for e in errors)
    assert "lora.yaml" in message
    for fragment in case.expect:
        assert fragment in message, f"{fragment!r} not in:\n{message}"
    if case.line_of:
        expected = line_of(bad, case.line_of)
        assert any(e.line == expected for e in errors), f"expected line {expected} in:\n{message}"


def test_yaml_syntax_error_names_the_line(tmp_path: Path):
    bad = GOOD.replace("name: LoRA\n", "name: LoRA\nfull_name: [unclosed\n", 1)
    with pytest.raises(CatalogError) as info:
        load_catalog(write_catalog(tmp_path, bad))
    (err,) = info.value.errors
    assert err.file.endswith("lora.yaml") and err.line is not None and "YAML syntax error" in err.message
    assert abs(err.line - line_of(bad, "full_name: [unclosed")) <= 1


def test_cli_reports_bad_input_without_traceback(tmp_path: Path):
    root = write_catalog(tmp_path, GOOD.replace("  mergeable: true", "  mergeable: sometimes"))
    proc = subprocess.run([sys.executable, "-m", "adapterspec.cli", "verify", "--entries", str(root)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "lora.yaml:" in proc.stderr and "properties.mergeable" in proc.stderr


def test_cli_reports_failed_check_without_traceback(tmp_path: Path):
    root = write_catalog(tmp_path, GOOD.replace("return (W0 + ΔW) @ x + bias", "return (W0 - ΔW) @ x + bias"))
    proc = subprocess.run([sys.executable, "-m", "adapterspec.cli", "verify", "lora", "--entries", str(root)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "FAIL lora" in proc.stdout and "pseudocode.forward" in proc.stderr


def test_cli_unknown_slug(tmp_path: Path):
    proc = subprocess.run([sys.executable, "-m", "adapterspec.cli", "verify", "lorra", "--entries", str(ENTRIES)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "lorra" in proc.stderr and "available" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_comparison_that_could_not_fail_is_an_error(catalog, monkeypatch):
    """If the adapter state stayed at its identity init, 'snippet == module' would hold for a wrong snippet too."""
    import importlib

    verify_module = importlib.import_module("adapterspec.catalog.verify")  # the module, not the function it exports
    monkeypatch.setattr(verify_module, "randomize_", lambda module, generator=None: module)
    result = verify_entry(catalog.entries["lora"])
    assert not result.ok
    assert any("could not fail" in c.detail for c in result.failures)


def test_unknown_marker_in_a_page_is_an_error(catalog):
    from adapterspec.catalog.render import Fragments, fill_markers

    with pytest.raises(ValueError, match="unknown marker.*adapterspec:scorecard.*known: rubric"):
        fill_markers("text <!-- adapterspec:scorecard -->", "index.md", catalog, {}, Fragments("index.md"))


def test_yml_extension_is_reported(tmp_path: Path):
    root = write_catalog(tmp_path, GOOD)
    (root / "vera.yml").write_text("id: vera\n", encoding="utf-8")
    with pytest.raises(CatalogError) as info:
        load_catalog(root)
    assert any(e.file.endswith("vera.yml") and "vera.yaml" in e.message for e in info.value.errors)


def _small_catalog(tmp_path: Path) -> Path:
    """A copy of the entries the tests below edit (and those they relate to)."""
    root = tmp_path / "entries"
    root.mkdir()
    for name in ("themes.yaml", "lora.yaml", "dora.yaml", "pissa.yaml", "oft.yaml", "ia3.yaml", "oftv2.yaml",
                 "psoft.yaml"):
        shutil.copy(ENTRIES / name, root)
    return root


def _edit(root: Path, slug: str, old: str, new: str) -> None:
    """Replace the first ``old`` in ``root/slug.yaml`` by ``new`` (``old`` must be there: a stale case fails)."""
    path = root / f"{slug}.yaml"
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} is no longer in {slug}.yaml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _verify_edited(tmp_path: Path, slug: str, old: str, new: str):
    """Verify entry ``slug`` with its first ``old`` replaced by ``new``."""
    root = _small_catalog(tmp_path)
    _edit(root, slug, old, new)
    return verify_entry(load_catalog(root).entries[slug])


def test_a_tensor_built_from_the_layer_cannot_be_declared_shared(tmp_path: Path):
    """PiSSA's A comes from the SVD of the layer's own weight, so claiming one copy serves every layer is caught."""
    result = _verify_edited(tmp_path, "pissa", "properties:\n", "properties:\n  shared_across_layers: [A]\n")
    message = "\n".join(str(e) for e in result.errors())
    assert "shared across layers: A" in message and "independent of the layer's weights: False" in message


@pytest.mark.parametrize("old, new, expect", [
    ("    side: input\n", "    side: output\n", "the output side has"),  # OFT's R acts on the inputs
    ("  preserves_input_gram: false\n", "  preserves_input_gram: true\n", "declared True; max|W'ᵀW' − W0ᵀW0|"),
    ("  - symbol: R\n", "  - symbol: Q\n", "orthogonal Q"),  # the skew generator is not orthogonal
])
def test_orthogonality_claims_are_checked(tmp_path: Path, old, new, expect):
    """A rotation declared on the wrong side, an invariant the side does not imply, a matrix that is not orthogonal:
    each is caught on OFT's non-square layers."""
    result = _verify_edited(tmp_path, "oft", old, new)
    message = "\n".join(str(e) for e in result.errors())
    assert not result.ok and expect in message and "oft.yaml" in message, message


@pytest.mark.parametrize("when, expect", [
    # a false claim for one variant only is caught there, with the variant named
    ("  - condition: r == 2\n    preserves_neuron_gram: false\n", "preserves neuron gram [12×16, r=2]"),
    ("  - condition: r == 2\n    identity_at_init: false\n", "identity_at_init [12×16, r=2]"),
    ("  - condition: rank == 2\n    identity_at_init: true\n", "unknown name 'rank'"),
    ("  - condition: r == 4\n    orthogonal:\n    - symbol: Q\n      side: input\n", "orthogonal Q"),
])
def test_conditional_claims_are_checked(tmp_path: Path, when, expect):
    """``properties.when`` replaces claims for the variants where its condition holds, and they are checked there:
    OFT with a second variant (r = 2) and a false claim made for it alone."""
    root = _small_catalog(tmp_path)
    text = (root / "oft.yaml").read_text(encoding="utf-8")
    text = text.replace("    r: 4\n", "    r: 4\n  variants:\n  - r: 2\n", 1)
    text = text.replace("  orthogonal:\n", "  when:\n" + when + "  orthogonal:\n", 1)
    (root / "oft.yaml").write_text(text, encoding="utf-8")
    result = verify_entry(load_catalog(root).entries["oft"])
    message = "\n".join(str(e) for e in result.errors())
    assert not result.ok and expect in message and "oft.yaml" in message, message
    # a true claim made the same way passes: with no orthogonal matrix declared for r = 2, nothing else changes
    good = text.replace(when, "  - condition: r == 2\n    orthogonal: []\n", 1)
    (root / "oft.yaml").write_text(good, encoding="utf-8")
    assert verify_entry(load_catalog(root).entries["oft"]).ok


@pytest.mark.parametrize("slug, old, new, expect", [
    # PiSSA's update leaves the principal subspace once B and A train
    ("pissa", "  rank_bound: r\n", "  rank_bound: r\n  svd_subspace:\n    rank: r\n    side: both\n",
     "ΔW outside span(U_r)"),
    # a subspace too small for PSOFT's update, and one too large for the check to be able to fail
    ("psoft", "    rank: r\n    side: both\n", "    rank: r - 1\n    side: both\n", "svd subspace (both)"),
    ("psoft", "    rank: r\n    side: both\n", "    rank: max(d_in, d_out)\n    side: both\n", "could not fail"),
    # PSOFT's R is r × r: declared on the input side, or for a subspace of the wrong size, it does not tile
    ("psoft", "    side: subspace\n    dim: r\n", "    side: input\n", "the input side has"),
    ("psoft", "    dim: r\n", "    dim: 2 * r\n", "the subspace has dim = 2 * r"),
    ("psoft", "  - symbol: R\n", "  - symbol: B\n", "orthogonal B"),
])
def test_subspace_claims_are_checked(tmp_path: Path, slug, old, new, expect):
    """A false claim that ΔW stays in W0's top singular subspace, or about PSOFT's r × r rotation, is caught."""
    result = _verify_edited(tmp_path, slug, old, new)
    message = "\n".join(str(e) for e in result.errors())
    assert not result.ok and expect in message and f"{slug}.yaml" in message, message


def test_true_subspace_claim_passes(tmp_path: Path):
    """The check is not simply failing: PSOFT's own claim holds on its random states (every variant)."""
    result = _verify_edited(tmp_path, "psoft", "  rank_bound: r\n", "  rank_bound: r\n")
    checks = [c for c in result.checks if c.name.startswith("svd subspace")]
    assert result.ok and len(checks) == 8 and all(c.error is not None and c.error < 1e-12 for c in checks)


def test_subspace_side_needs_a_dimension(tmp_path: Path):
    root = _small_catalog(tmp_path)
    _edit(root, "psoft", "    dim: r\n", "")
    with pytest.raises(CatalogError, match="exactly when side is 'subspace'"):
        load_catalog(root)


@pytest.mark.parametrize("old, new, expect", [
    ("(b_0 - b_T) * u ** 3)", "(b_0 - b_T) * u ** 2)", "pseudocode.budget"),  # a quadratic schedule
    ("Ī = β1 * Ī + (1 - β1) * I ", "Ī = β1 * Ī + (1 - β2) * I ", "pseudocode.importance"),  # wrong EMA coefficient
    ("return Λ * (S > τ)", "return Λ * (S >= τ)", "pseudocode.prune"),  # one triplet too many pruned
    ("def triplet_score(s_P, s_λ, s_Q):", "def triplet_scores(s_P, s_λ, s_Q):",
     "triplet_score(...), which the pseudocode does not define"),
])
def test_training_procedure_claims_are_checked(tmp_path: Path, old, new, expect):
    """A method's training procedure (AdaLoRA's rank schedule) is verified through the pseudocode functions its module
    names in `Adapter.procedure_cases`: a wrong schedule, a wrong coefficient, a wrong threshold or a missing function
    fails, naming the function and the pseudocode field."""
    root = tmp_path / "entries"
    shutil.copytree(ENTRIES, root)
    _edit(root, "adalora", old, new)
    result = verify_entry(load_catalog(root).entries["adalora"])
    message = "\n".join(str(e) for e in result.errors())
    assert not result.ok and expect in message and "adalora.yaml" in message, message
    assert all(f.field == "pseudocode" for f in result.failures), message


@pytest.mark.parametrize("slug, old, new, expect", [
    # LoRA's BA points anywhere: not inside W0's top-r singular subspace on either side
    ("lora", "  rank_bound: r\n", "  rank_bound: r\n  svd_subspace:\n    rank: r\n    side: both\n",
     "ΔW outside span(U_r)"),
    ("lora", "  rank_bound: r\n", "  rank_bound: r\n  svd_subspace:\n    rank: r\n    side: right\n",
     "ΔW outside span(V_r)"),
    # SVFT's update uses every one of the n = min(d_in, d_out) singular pairs: one fewer is caught
    ("svft", "    rank: min(d_in, d_out)\n", "    rank: min(d_in, d_out) - 1\n", "svd subspace (both)"),
    # a subspace as large as the layer holds any ΔW: a claim that could not fail is refused
    ("svft", "    rank: min(d_in, d_out)\n", "    rank: max(d_in, d_out)\n", "could not fail"),
])
def test_svd_subspace_claims_are_checked(tmp_path: Path, slug, old, new, expect):
    """ΔW declared inside W0's top-r singular subspace where it is not, or a subspace too small or too large to say
    anything: each is caught."""
    root = tmp_path / "entries"
    shutil.copytree(ENTRIES, root)
    text = (root / f"{slug}.yaml").read_text(encoding="utf-8")
    assert old in text
    (root / f"{slug}.yaml").write_text(text.replace(old, new, 1), encoding="utf-8")
    result = verify_entry(load_catalog(root).entries[slug])
    message = "\n".join(str(e) for e in result.errors())
    assert not result.ok and expect in message and f"{slug}.yaml" in message and "svd_subspace" in message, message
