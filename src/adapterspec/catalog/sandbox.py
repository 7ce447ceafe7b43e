"""What pseudocode may say, checked before it runs; and how it runs, inside a worker (`adapterspec.catalog.worker`).

An entry's pseudocode is untrusted. The guarantee is the process boundary: it only ever executes in a sandboxed
worker process, under resource limits, on copies of tensors, and only values come back. The static check here is
defence in depth and, above all, a precise error message for a contributor:

* only function definitions at the top level; no imports, classes, ``global``, ``with``, ``try``, generators,
  decorators, f-strings;
* names: the ``ops`` vocabulary, a few builtins, and the snippet's own names; nothing starting with ``_`` but ``_``
  itself;
* attributes: an allowlist of tensor maths (`ATTRIBUTES`), so frames, code objects, storages and ``str.format`` are
  out of reach; attributes cannot be assigned;
* every parameter of every function is a plain named parameter (no ``*args``, ``**kwargs``); defaults, where given,
  are literals (a mutable default would keep state from one call to the next).

The verifier binds each parameter of ``forward`` and ``init`` to a tensor or hyperparameter of the reference module
and rejects a parameter it cannot bind.
"""

from __future__ import annotations

import ast
import builtins
import copy
from dataclasses import dataclass
from typing import Any, Callable

FILENAME = "<pseudocode>"
BUILTINS = ("abs", "enumerate", "float", "int", "len", "max", "min", "range", "reversed", "sum", "tuple", "zip",
            "list", "dict", "bool", "round")
# Tensor and container attributes pseudocode may use: pure maths on values it was given.
ATTRIBUTES = frozenset("""
    T mT H mH shape ndim real imag conj numel size dim
    reshape view flatten unsqueeze squeeze transpose permute expand expand_as repeat flip roll narrow contiguous
    sum mean prod cumsum cumprod norm abs sqrt exp log sign clamp pow square neg reciprocal tanh sigmoid relu
    clone diag diagonal tril triu trace outer matmul t max min argmax argmin amax amin sort argsort gather
    index_select masked_fill chunk split softmax double float item tolist
    append extend items keys values
""".split())
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
    ast.GeneratorExp: "generator expressions are not allowed; use a list comprehension",
    ast.JoinedStr: "f-strings are not allowed: pseudocode computes values, not text",
    ast.Delete: "'del' is not allowed",
    ast.Try: "'try' is not allowed: pseudocode states the maths, it does not handle errors",
    ast.Match: "'match' is not allowed (its patterns name attributes as strings, out of reach of the checks)",
}
MAX_NESTING = 64  # syntax-tree depth; far beyond any formula, far below what compile() can recurse through


class SnippetError(Exception):
    """A problem with a snippet; ``line`` is the 1-based line within the snippet, when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message, self.line = message, line


class CallTimeout(BaseException):
    """Raised (by the worker's alarm) inside a call that ran past its deadline; a BaseException, so that nothing in
    the snippet's path turns it into an ordinary error."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds


@dataclass
class Snippet:
    """A parsed and statically checked pseudocode snippet (the parent never executes it)."""

    source: str
    tree: ast.Module

    @property
    def functions(self) -> list[str]:
        return [n.name for n in self.tree.body if isinstance(n, ast.FunctionDef)]

    def _def(self, function: str) -> ast.FunctionDef | None:
        return next((n for n in self.tree.body if isinstance(n, ast.FunctionDef) and n.name == function), None)

    def returned_names(self, function: str) -> list[str] | None:
        """Names in ``function``'s final ``return a, b, c`` (None if it returns an expression)."""
        node = self._def(function)
        if node is None:
            return None
        ret = node.body[-1]
        if not isinstance(ret, ast.Return) or ret.value is None:
            return None
        elts = ret.value.elts if isinstance(ret.value, ast.Tuple) else [ret.value]
        if all(isinstance(e, ast.Name) for e in elts):
            return [e.id for e in elts]  # type: ignore[attr-defined]
        return None

    def parameters(self, function: str) -> list[str]:
        """Every parameter of ``function``: the verifier binds each one, or rejects the snippet."""
        node = self._def(function)
        if node is None:
            return []
        a = node.args
        return [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]


def _check_arguments(node: ast.FunctionDef | ast.Lambda) -> None:
    a = node.args
    if a.vararg or a.kwarg:
        raise SnippetError("*args and **kwargs are not allowed: name every parameter, so that the verifier binds it",
                           node.lineno)
    for default in (*a.defaults, *(d for d in a.kw_defaults if d is not None)):
        if not isinstance(default, ast.Constant):
            raise SnippetError("a parameter default must be a literal number, string, True, False or None",
                               default.lineno)


def check_tree(tree: ast.Module) -> None:
    """Raise `SnippetError` at the first construct pseudocode may not use."""
    allowed_names = set(BUILTINS) | _vocabulary()
    stack: list[tuple[ast.AST, int]] = [(tree, 0)]
    while stack:  # iteratively: a deeply nested snippet must not overflow this check either
        node, depth = stack.pop()
        if depth > MAX_NESTING:
            raise SnippetError(f"nested more than {MAX_NESTING} levels deep", getattr(node, "lineno", None))
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    for node in ast.walk(tree):
        for kind, why in _FORBIDDEN.items():
            if isinstance(node, kind):
                raise SnippetError(why, getattr(node, "lineno", None))
        if isinstance(node, (ast.FunctionDef, ast.Lambda)):
            if isinstance(node, ast.FunctionDef) and node.decorator_list:
                raise SnippetError("decorators are not allowed", node.lineno)
            _check_arguments(node)
        if isinstance(node, ast.Attribute):
            if not isinstance(node.ctx, ast.Load):
                raise SnippetError(f"assigning to an attribute ('.{node.attr} = ...') is not allowed", node.lineno)
            if node.attr not in ATTRIBUTES:
                raise SnippetError(f"attribute '.{node.attr}' is not allowed in pseudocode; allowed: "
                                   f"{', '.join(sorted(ATTRIBUTES))}", node.lineno)
        if isinstance(node, ast.Name) and node.id.startswith("_") and node.id != "_":
            raise SnippetError(f"name '{node.id}' is not allowed (names starting with '_' are reserved)", node.lineno)
        if isinstance(node, ast.arg) and node.arg.startswith("_"):
            raise SnippetError(f"parameter '{node.arg}' is not allowed (names starting with '_' are reserved)",
                               node.lineno)
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in dir(builtins) \
                and node.id not in allowed_names:
            raise SnippetError(f"'{node.id}' is not available in pseudocode; builtins: {', '.join(BUILTINS)}",
                               node.lineno)
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            continue  # a docstring
        if not isinstance(node, ast.FunctionDef):
            raise SnippetError("only function definitions are allowed at the top level", node.lineno)


def _vocabulary() -> set[str]:
    from adapterspec import ops

    return set(ops.__all__)


def parse(source: str) -> Snippet:
    """Parse and check the snippet; nothing is executed."""
    try:
        tree = ast.parse(source, filename=FILENAME)
    except SyntaxError as e:
        raise SnippetError(f"syntax error: {e.msg}", e.lineno) from None
    except (ValueError, RecursionError, MemoryError) as e:  # NUL bytes, absurd nesting
        raise SnippetError(f"cannot be parsed: {type(e).__name__}") from None
    check_tree(tree)
    return Snippet(source=source, tree=tree)


def execute(source: str, calls: list[tuple[str, dict[str, Any]]],
            deadline: tuple[Callable[[], Any], Callable[[], Any]]) -> list[Any]:
    """Run each ``(function, kwargs)`` on a freshly defined copy of the snippet. Only called inside a worker.

    Each call gets its own globals, its own function objects and its own copies of its arguments, so nothing one call
    does is seen by the next.
    ``deadline`` is a pair (arm, disarm) of callables that bracket each call, definition included (a default
    argument is evaluated when the function is defined).
    """
    from adapterspec import ops

    snippet = parse(source)
    try:
        code = compile(snippet.tree, FILENAME, "exec")
    except (RecursionError, MemoryError, ValueError) as e:
        raise SnippetError(f"cannot be compiled: {type(e).__name__}") from None
    # __import__ stays: torch's C++ code imports lazily through the *calling* frame's builtins. A snippet cannot name
    # it (names starting with "_" are refused above), and in the worker no new file can be opened anyway.
    safe_builtins = {name: getattr(builtins, name) for name in (*BUILTINS, "__import__")}
    results = []
    for function, kwargs in calls:
        scope: dict[str, Any] = {"__builtins__": safe_builtins, **{n: getattr(ops, n) for n in ops.__all__}}
        arm, disarm = deadline
        try:
            arm()
            try:
                exec(code, scope)  # defines the functions (check_tree allows nothing else at top level)
                results.append(scope[function](**copy.deepcopy(kwargs)))
            finally:
                disarm()
        except CallTimeout as e:
            raise SnippetError(f"{function}: did not finish within {e.seconds:g} s (an endless loop?)",
                               _snippet_line(e)) from None
        except MemoryError as e:
            raise SnippetError(f"{function}: ran out of the sandbox's memory", _snippet_line(e)) from None
        except Exception as e:  # noqa: BLE001 — any failure of user pseudocode is reported, not propagated
            raise SnippetError(f"{function}: raised {type(e).__name__}: {str(e)[:500]}", _snippet_line(e)) from None
    return results


def _snippet_line(e: BaseException) -> int | None:
    tb, line = e.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
