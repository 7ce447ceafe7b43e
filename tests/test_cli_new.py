"""`adapterspec new SLUG` writes the two files of a method; they load, and cannot pass verification until filled in."""

from __future__ import annotations

import importlib.util
import shutil

import pytest
import torch

from adapterspec.catalog.loader import load_entry
from adapterspec.cli import main
from conftest import ENTRIES


def test_new_scaffolds_two_files_that_load_but_do_not_verify(tmp_path, capsys):
    entries, methods = tmp_path / "entries", tmp_path / "methods"
    entries.mkdir(), methods.mkdir()
    shutil.copy(ENTRIES / "themes.yaml", entries)
    assert main(["new", "my-method", "--name", "MyMethod", "--entries", str(entries), "--methods", str(methods)]) == 0
    item = load_entry(entries / "my-method.yaml")  # schema-valid placeholders
    assert item.entry.id == "my-method" and item.entry.name == "MyMethod"
    spec = importlib.util.spec_from_file_location("my_method", methods / "my_method.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(NotImplementedError, match="my-method"):
        module.MyMethod(torch.nn.Linear(4, 4))
    # never overwrites
    assert main(["new", "my-method", "--entries", str(entries), "--methods", str(methods)]) == 2
    assert "will not overwrite" in capsys.readouterr().err


def test_new_rejects_a_bad_slug(tmp_path, capsys):
    assert main(["new", "My_Method", "--entries", str(ENTRIES), "--methods", str(tmp_path)]) == 2
    assert "not a valid slug" in capsys.readouterr().err
