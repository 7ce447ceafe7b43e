"""papers/: one record per cited paper; entries cite by key; BibTeX is generated; quotes are checked only against the
text whose SHA-256 the record keeps."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from adapterspec.catalog import CatalogError, load_catalog, verify_entry
from adapterspec.catalog.bibliography import bibliography_schema, bibtex, load_bibliography
from adapterspec.catalog.papers import PaperTexts
from adapterspec.cli import main
from conftest import ENTRIES, PAPERS, ROOT

BIB = ROOT / "papers"


def test_every_citation_resolves_and_every_record_is_cited(catalog):
    bib = load_bibliography(BIB)
    cited = {key for item in catalog for key in item.entry.papers}
    assert cited <= set(bib.records)
    assert set(bib.records) <= cited, f"records nobody cites: {sorted(set(bib.records) - cited)}"
    for item in catalog:
        assert list(item.papers) == item.entry.papers  # resolved, in the entry's order


def test_schema_file_is_generated_from_the_model():
    on_disk = json.loads((BIB / "schema.json").read_text(encoding="utf-8"))
    assert on_disk == json.loads(json.dumps(bibliography_schema())), "run `adapterspec schema --write`"


def test_records_fingerprint_the_saved_texts(papers):
    """A record with a text finds it by its hash; a record without one has no saved text, or cites another version
    than the one saved (Bone's v3)."""
    if not papers.available:
        pytest.skip(f"paper texts not available at {papers.folder}")
    for record in load_bibliography(BIB):
        path, why = papers.find(record)
        if record.text is not None:
            assert path is not None, f"{record.key}: {why}"
        else:
            assert record.version or not papers.candidates(record), \
                f"{record.key}: a text is saved at {papers.candidates(record)} but its hash is not recorded"


def test_bibtex_is_well_formed_for_every_record():
    bib = load_bibliography(BIB)
    for record in bib:
        text = bibtex(record)
        assert text.startswith(("@misc{" + record.key + ",", "@inproceedings{" + record.key + ","))
        assert text.count("{") == text.count("}")
        assert f"eprint = {{{record.arxiv}" in text and "doi = {10." in text
    out = re.findall(r"^@\w+\{([a-z0-9]+),", "\n".join(bibtex(r) for r in bib), flags=re.M)
    assert sorted(out) == sorted(bib.records)


def test_bibtex_escapes_what_latex_would_read(tmp_path):
    folder = tmp_path / "papers"
    folder.mkdir()
    (folder / "doe2024fifty.yaml").write_text(
        "key: doe2024fifty\narxiv: '2401.00001'\ntitle: 50% of weights & $x_i$ {braces}\nauthors: [Jane Doe]\n"
        "year: 2024\n", encoding="utf-8")
    text = bibtex(load_bibliography(folder)["doe2024fifty"])
    assert r"50\% of weights \& \$x\_i\$ \{braces\}" in text


def test_a_bad_record_names_file_line_and_field(tmp_path):
    folder = tmp_path / "papers"
    folder.mkdir()
    (folder / "doe2024x.yaml").write_text("key: doe2024x\narxiv: 'arXiv:2401.1'\ntitle: T\nauthors: [Jane Doe]\n"
                                          "year: 2024\n", encoding="utf-8")
    (folder / "doe2024y.yaml").write_text("key: other2024y\narxiv: '2401.00002'\ntitle: T\nauthors: [Jane Doe]\n"
                                          "year: 2024\n", encoding="utf-8")
    with pytest.raises(CatalogError) as info:
        load_bibliography(folder)
    messages = [str(e) for e in info.value.errors]
    assert any("doe2024x.yaml:2" in m and "arxiv" in m for m in messages), messages
    assert any("doe2024y.yaml" in m and "key must equal the file name" in m for m in messages), messages


def test_a_text_whose_hash_differs_is_not_used_to_check_quotes(catalog, tmp_path):
    """Another version of the paper (here: one character changed) may hold the quote or not: either way its quotes
    are reported as unchecked, saying why, and never as checked."""
    if not (PAPERS / "lora_low_rank_adaptation.md").exists():
        pytest.skip("paper texts not available")
    folder = tmp_path / "texts"
    folder.mkdir()
    for key, name in (("hu2021lora", "lora_low_rank_adaptation.md"), ("biderman2024lora", "biderman_lora_limitations.md")):
        text = (PAPERS / name).read_text(encoding="utf-8")
        (folder / f"{key}.md").write_text(text + ("\nv3 erratum\n" if key == "hu2021lora" else ""), encoding="utf-8")
    result = verify_entry(catalog.entries["lora"], PaperTexts(folder))
    assert result.ok and result.quotes == "partly unchecked"
    quote_papers = {c.name.split("(")[-1].rstrip(")") for c in result.checks if c.name.startswith("quote")}
    assert quote_papers == {"biderman2024lora"}  # found by <key>.md, hash equal: checked
    reasons = result.observed["unchecked_quotes"]
    assert reasons and all("SHA-256 differs" in r for r in reasons.values())


def test_cli_bib_prints_generated_bibtex(capsys):
    assert main(["bib", "hu2021lora", "--bibliography", str(BIB)]) == 0
    assert capsys.readouterr().out.startswith("@inproceedings{hu2021lora,")
    assert main(["bib", "nobody2020x", "--bibliography", str(BIB)]) == 2
    assert "unknown key" in capsys.readouterr().err


def test_entries_without_a_bibliography_fail_with_a_hint(tmp_path):
    root = tmp_path / "entries"
    shutil.copytree(ENTRIES, root)
    (tmp_path / "papers").mkdir()  # beside the entries: takes precedence, and is empty
    with pytest.raises(CatalogError) as info:
        load_catalog(root)
    assert any("unknown paper 'hu2021lora'" in str(e) and "lora.yaml" in str(e) for e in info.value.errors)


def test_citation_cff_describes_this_version():
    import yaml

    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    assert {"message", "title", "authors", "version"} <= set(cff)
    assert all("name" in a or "family-names" in a for a in cff["authors"])
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(encoding="utf-8"), re.M).group(1)
    assert cff["version"] == version, "CITATION.cff's version must follow pyproject.toml's"
