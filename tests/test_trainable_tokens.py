"""Trainable Tokens: what the update can touch, errors, and the entry-format pieces a method without a paper needs
(``papers: []`` with ``documentation:``, a list hyperparameter and ``len`` in formulas, the "ungraded: no paper"
page)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

import adapterspec
from adapterspec.catalog import load_catalog, verify_entry
from adapterspec.catalog.errors import CatalogError
from adapterspec.catalog.formula import FormulaError, evaluate_formula
from adapterspec.catalog.grade import grade
from adapterspec.catalog.render import Fragments, method_page
from adapterspec.methods.trainable_tokens import TrainableTokens

D64 = torch.float64
ROOT = Path(__file__).resolve().parent.parent
ENTRIES = ROOT / "entries"


def make(token_indices=(2, 7, 11), V=16, d=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = TrainableTokens.example_base(V, d, g, D64)
    module = adapterspec.create("trainable-tokens", base, token_indices=list(token_indices))
    return adapterspec.randomize_(module, torch.Generator().manual_seed(seed + 1)), g


def test_only_the_chosen_rows_change_and_sequences_without_them_are_untouched():
    module, g = make()
    with torch.no_grad():
        dW = module.delta_weight()  # (V, d)
        moved = [t for t in range(16) if float(dW[t].abs().max()) > 0]
        assert moved == [2, 7, 11] and int(torch.linalg.matrix_rank(dW)) == 3
        torch.testing.assert_close(module.merged_weight()[[2, 7, 11]], module.E, rtol=0, atol=0)
        other = torch.tensor([[0, 1, 3, 15, 4], [5, 6, 8, 9, 10]])
        torch.testing.assert_close(module(other), module.base(other), rtol=0, atol=0)
        mixed = torch.tensor([[0, 7, 3]])
        assert float((module(mixed) - module.base(mixed))[0, 1].abs().max()) > 1e-3


def test_identity_at_init_unless_init_weights_is_false():
    base = TrainableTokens.example_base(16, 12, torch.Generator().manual_seed(0), D64)
    x = TrainableTokens.example_inputs(base, 2, torch.Generator().manual_seed(1), D64)
    same = TrainableTokens(base, token_indices=[4, 1])
    torch.testing.assert_close(same(x), base(x), rtol=0, atol=0)
    torch.manual_seed(0)
    noisy = TrainableTokens(base, token_indices=[4, 1], init_weights=False)
    with torch.no_grad():
        assert float((noisy(x) - base(x)).abs().max()) > 1e-2


def test_gradients_reach_only_the_trained_rows():
    module, _ = make()
    x = torch.tensor([[2, 7, 11, 0, 1]])
    module(x).pow(2).sum().backward()
    assert module.E.grad is not None and float(module.E.grad.abs().min()) > 0
    assert module.base.weight.grad is None


@pytest.mark.parametrize("indices, match", [
    ([], "at least one token id"),
    ([3, 16], "token ids in 0 … 15"),
    ([-1], "token ids in 0 … 15"),
    ([5, 5], "must be distinct"),
])
def test_bad_token_indices_are_actionable(indices, match):
    base = TrainableTokens.example_base(16, 12, torch.Generator().manual_seed(0), D64)
    with pytest.raises(ValueError, match=match):
        TrainableTokens(base, token_indices=indices)


# -- formulas over a list hyperparameter ------------------------------------------------------------------------------
def test_len_of_a_list_hyperparameter_in_formulas():
    names = {"token_indices": [1, 5, 9], "d_model": 12, "r": 4}
    assert evaluate_formula("len(token_indices) * d_model", names) == 36
    for bad, why in [("token_indices * 2", "not a number"), ("len(r)", r"len\(\) takes a list"),
                     ("token_indices", "not a number"), ("max(token_indices)", "not a number")]:
        with pytest.raises(FormulaError, match=why):
            evaluate_formula(bad, names)


# -- an entry with no paper ------------------------------------------------------------------------------------------------
def _catalog(tmp_path: Path, old: str = "", new: str = ""):
    root = tmp_path / "entries"
    root.mkdir()
    for path in ENTRIES.glob("*.yaml"):
        shutil.copy(path, root)
    text = (root / "trainable-tokens.yaml").read_text(encoding="utf-8")
    assert old in text
    (root / "trainable-tokens.yaml").write_text(text.replace(old, new, 1), encoding="utf-8")
    return load_catalog(root)


def test_no_paper_needs_documentation(tmp_path):
    line = "documentation: https://huggingface.co/docs/peft/package_reference/trainable_tokens\n"
    with pytest.raises(CatalogError, match="cite at least one paper, or, for a method with no paper, give"):
        _catalog(tmp_path, line, "")


def test_a_wrong_parameter_formula_over_the_list_is_caught(tmp_path):
    catalog = _catalog(tmp_path, "trainable_parameters: len(token_indices) * d_model",
                       "trainable_parameters: 3 * d_model")  # right for the entry's three ids, wrong for the variant
    result = verify_entry(catalog.entries["trainable-tokens"])
    assert not result.ok
    assert any("trainable parameter count" in c.name and "token_indices=[15, 0]" in c.name for c in result.failures)


def test_the_page_says_ungraded_no_paper_and_links_the_documentation():
    catalog = load_catalog(ENTRIES)
    item = catalog.entries["trainable-tokens"]
    assert grade(item.entry).breakdown == "ungraded: no paper"
    result = verify_entry(item)
    frag = Fragments("methods/trainable-tokens.md")
    page = method_page(item, result, catalog, ROOT, frag)
    assert "**No paper:**" in page and "### Cite" not in page
    assert any("ungraded (no paper)" in h for h in frag.html.values())  # the at-a-glance card
    assert any("huggingface.co/docs/peft/package_reference/trainable_tokens" in h for h in frag.html.values())
