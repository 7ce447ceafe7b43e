"""A verifier that cannot fail is worthless: altered copies of each entry's pseudocode must all be caught.

Mutations, applied one site at a time: a flipped sign (+ ↔ −), a dropped term (a ± b → a, → b), a missing transpose
(``M.T`` → ``M``), and an output scaled by 1.001.
"""

from __future__ import annotations

import ast
import copy
from dataclasses import replace

import pytest

from adapterspec.catalog import verify_entry
from conftest import entry_slugs


def _sites(tree: ast.AST, kind: str) -> list[ast.AST]:
    nodes = list(ast.walk(tree))
    if kind == "flip sign":
        return [n for n in nodes if isinstance(n, ast.BinOp) and isinstance(n.op, (ast.Add, ast.Sub))]
    if kind == "drop term":
        return [n for n in nodes if isinstance(n, ast.BinOp) and isinstance(n.op, (ast.Add, ast.Sub))]
    if kind == "drop transpose":
        return [n for n in nodes if isinstance(n, ast.Attribute) and n.attr in ("T", "mT")]
    if kind == "scale output":
        return [n for n in nodes if isinstance(n, ast.Return) and n.value is not None]
    raise ValueError(kind)


class _Mutate(ast.NodeTransformer):
    def __init__(self, target_index: int, kind: str, side: str = "left") -> None:
        self.target, self.kind, self.side, self.seen = target_index, kind, side, -1

    def _is_target(self, node: ast.AST, applicable: bool) -> bool:
        if not applicable:
            return False
        self.seen += 1
        return self.seen == self.target

    def visit_BinOp(self, node):
        hit = self._is_target(node, self.kind in ("flip sign", "drop term") and isinstance(node.op, (ast.Add, ast.Sub)))
        self.generic_visit(node)
        if not hit:
            return node
        if self.kind == "flip sign":
            node.op = ast.Sub() if isinstance(node.op, ast.Add) else ast.Add()
            return node
        return node.left if self.side == "left" else node.right

    def visit_Attribute(self, node):
        hit = self._is_target(node, self.kind == "drop transpose" and node.attr in ("T", "mT"))
        self.generic_visit(node)
        return node.value if hit else node

    def visit_Return(self, node):
        hit = self._is_target(node, self.kind == "scale output" and node.value is not None)
        self.generic_visit(node)
        if hit:
            node.value = ast.BinOp(ast.Constant(1.001), ast.Mult(), node.value)
        return node


def mutants(source: str) -> list[tuple[str, str]]:
    """(description, mutated source) for every site of every mutation kind."""
    out = []
    for kind in ("flip sign", "drop term", "drop transpose", "scale output"):
        # ast.walk order differs from the transformer's visiting order; count sites, mutate each index
        n = len(_sites(ast.parse(source), kind))
        for i in range(n):
            for side in (("left", "right") if kind == "drop term" else ("left",)):
                tree = _Mutate(i, kind, side).visit(copy.deepcopy(ast.parse(source)))
                label = f"{kind} #{i}" + (f" (keep {side})" if kind == "drop term" else "")
                out.append((label, ast.unparse(ast.fix_missing_locations(tree))))
    return out


@pytest.mark.parametrize("slug", entry_slugs())
def test_every_mutant_is_caught(slug, catalog):
    item = catalog.entries[slug]
    found = mutants(item.entry.pseudocode)
    kinds = {label.split(" #")[0] for label, _ in found}
    assert {"flip sign", "scale output"} <= kinds, f"{slug}: too few mutation sites ({kinds})"
    survivors = []
    for label, source in found:
        mutated = replace(item, entry=item.entry.model_copy(update={"pseudocode": source}))
        if verify_entry(mutated).ok:
            survivors.append(f"{label}:\n{source}")
    assert not survivors, f"{slug}: {len(survivors)}/{len(found)} mutants passed verification:\n" + "\n\n".join(survivors)


def test_unmutated_pseudocode_roundtrips_through_unparse(catalog):
    """The mutation harness itself: an unparse of the untouched snippet must still verify (so mutants fail for the
    mutation, not for the rewrite)."""
    for item in catalog:
        source = ast.unparse(ast.parse(item.entry.pseudocode))
        assert verify_entry(replace(item, entry=item.entry.model_copy(update={"pseudocode": source}))).ok, item.slug
