"""Run pseudocode with nothing in scope but the ``ops`` vocabulary, arithmetic and iteration.

The snippet is checked statically (no imports, no private attributes, only function definitions at top level), then
executed under a line-level deadline so that a loop that never ends is stopped and reported, not waited for.
"""

from __future__ import annotations

import ast
import builtins
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

from adapterspec import ops

FILENAME = "<pseudocode>"
SAFE_BUILTINS = {
    name: getattr(builtins, name)
    for name in ("abs", "enumerate", "float", "int", "len", "max", "min", "range", "reversed", "sum", "tuple",
                 "zip", "list", "dict", "bool", "round")
}
VOCABULARY = {name: getattr(ops, name) for name in ops.__all__}
_FORBIDDEN = {
    ast.Import: "imports are not allowed (only the ops vocabulary is in scope)",
    ast.ImportFrom: "imports are not allowed (only the ops vocabulary is in scope)",
    ast.Global: "'global' is not allowed",
    ast.Nonlocal: "'nonlocal' is not allowed",
    ast.ClassDef: "classes are not allowed; define functions",
    ast.With: "'with' is not allowed",
    ast.AsyncFunctionDef: "async functions are not allowed",
    ast.Await: "'await' is not allowed",
    ast.Yield: "generators are not allowed",
    ast.YieldFrom: "generators are not allowed",
    ast.Delete: "'del' is not allowed",
    ast.Try: "'try' is not allowed: pseudocode states the maths, it does not handle errors",
}


class SnippetError(Exception):
    """A problem with a snippet; ``line`` is the 1-based line within the snippet, when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message, self.line = message, line


@dataclass
class Snippet:
    """A compiled, statically checked pseudocode snippet."""

    source: str
    functions: dict[str, Callable[..., Any]]
    tree: ast.Module

    def returned_names(self, function: str) -> list[str] | None:
        """Names in ``function``'s final ``return a, b, c`` (None if it returns an expression)."""
        for node in self.tree.body:
            if isinstance(node, ast.FunctionDef) and node.name == function:
                ret = node.body[-1]
                if not isinstance(ret, ast.Return) or ret.value is None:
                    return None
                elts = ret.value.elts if isinstance(ret.value, ast.Tuple) else [ret.value]
                if all(isinstance(e, ast.Name) for e in elts):
                    return [e.id for e in elts]  # type: ignore[attr-defined]
        return None

    def parameters(self, function: str) -> list[str]:
        for node in self.tree.body:
            if isinstance(node, ast.FunctionDef) and node.name == function:
                return [a.arg for a in node.args.args]
        return []


def check_tree(tree: ast.Module) -> None:
    for node in ast.walk(tree):
        for kind, why in _FORBIDDEN.items():
            if isinstance(node, kind):
                raise SnippetError(why, getattr(node, "lineno", None))
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise SnippetError(f"private attribute '.{node.attr}' is not allowed", node.lineno)
        if isinstance(node, ast.Name) and node.id.startswith("__"):
            raise SnippetError(f"name '{node.id}' is not allowed", node.lineno)
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            continue  # a docstring
        if not isinstance(node, ast.FunctionDef):
            raise SnippetError("only function definitions are allowed at the top level", node.lineno)


def compile_snippet(source: str) -> Snippet:
    """Parse, check and define the snippet's functions (nothing runs yet)."""
    try:
        tree = ast.parse(source, filename=FILENAME)
    except SyntaxError as e:
        raise SnippetError(f"syntax error: {e.msg}", e.lineno) from None
    check_tree(tree)
    scope: dict[str, Any] = {"__builtins__": SAFE_BUILTINS, **VOCABULARY}
    exec(compile(tree, FILENAME, "exec"), scope)  # only defines functions: check_tree allows nothing else
    functions = {n.name: scope[n.name] for n in tree.body if isinstance(n, ast.FunctionDef)}
    return Snippet(source=source, functions=functions, tree=tree)


def call(fn: Callable[..., Any], kwargs: dict[str, Any], timeout: float = 2.0) -> Any:
    """Call a snippet function; stop it after ``timeout`` seconds of its own lines; report where it failed."""
    deadline = time.perf_counter() + timeout

    def tracer(frame, event, arg):
        if frame.f_code.co_filename != FILENAME:
            return None
        if time.perf_counter() > deadline:
            raise _Timeout(frame.f_lineno)
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        return fn(**kwargs)
    except _Timeout as t:
        raise SnippetError(f"did not finish within {timeout:g} s (an endless loop?)", t.line) from None
    except Exception as e:  # noqa: BLE001 — any failure of user pseudocode is reported, not propagated
        line = _snippet_line(e)
        raise SnippetError(f"raised {type(e).__name__}: {e}", line) from None
    finally:
        sys.settrace(previous)


class _Timeout(BaseException):
    def __init__(self, line: int) -> None:
        self.line = line


def _snippet_line(e: BaseException) -> int | None:
    tb, line = e.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
