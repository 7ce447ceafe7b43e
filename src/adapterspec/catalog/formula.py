"""Property formulas (``r * (d_in + d_out)``), evaluated by a small interpreter with bounded numbers.

A formula comes from an entry, so it is never handed to ``eval``: this walks its syntax tree and allows names,
numbers, strings, ``True False None``, ``+ - * / // % **``, comparisons, ``and or not``, ``a if c else b``,
``min max int round sqrt`` and ``len`` of a list hyperparameter (``len(token_indices)``). Every intermediate
number is checked, so ``9**9**9**9`` is an error after one step, not a hang.
"""

from __future__ import annotations

import ast
import math
import operator
from typing import Any, Callable

MAX_LENGTH = 500
LIMIT = 10**18  # no parameter count or rank comes near this
_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
    ast.GtE: operator.ge, ast.Is: operator.is_, ast.IsNot: operator.is_not,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {"min": min, "max": max, "int": int, "round": round, "sqrt": math.sqrt}


class FormulaError(ValueError):
    """A formula that is not allowed or cannot be evaluated."""


def _number(v: Any) -> int | float:
    if not isinstance(v, (int, float)):  # bool is an int, as in Python
        raise FormulaError(f"{v!r} is not a number")
    if isinstance(v, float) and not math.isfinite(v):
        raise FormulaError("the result is not finite")
    if abs(v) > LIMIT:
        raise FormulaError(f"a value exceeds {LIMIT:.0e}")
    return v


def evaluate_formula(expr: str, names: dict[str, Any]) -> float:
    """Evaluate a property formula: names, arithmetic, ``min max int round sqrt`` only.

    Raises:
        FormulaError (a ValueError): the expression uses anything else, or cannot be evaluated with ``names``.
    """
    if len(expr) > MAX_LENGTH:
        raise FormulaError(f"formula longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(expr, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        raise FormulaError(f"cannot parse {expr!r}: {e}") from None

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return node.value if node.value is None or isinstance(node.value, (bool, str)) else _number(node.value)
        if isinstance(node, ast.Name):
            if node.id not in names:
                raise FormulaError(f"unknown name '{node.id}'; names: {', '.join(sorted(names))}")
            v = names[node.id]
            if isinstance(v, (list, tuple)):  # a list hyperparameter (token ids): only len() reads it
                return tuple(_number(x) for x in v)
            return v if v is None or isinstance(v, (bool, str)) else _number(v)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return not ev(node.operand)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = _number(ev(node.operand))
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BoolOp):  # Python's semantics: the deciding operand, evaluated lazily
            for i, operand in enumerate(node.values):
                v = ev(operand)
                if i == len(node.values) - 1 or (not v if isinstance(node.op, ast.And) else v):
                    return v
        if isinstance(node, ast.IfExp):
            return ev(node.body) if ev(node.test) else ev(node.orelse)
        if isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
            left = ev(node.left)
            for op, right_node in zip(node.ops, node.comparators):
                right = ev(right_node)
                try:
                    if not _COMPARE[type(op)](left, right):
                        return False
                except TypeError as e:
                    raise FormulaError(str(e)) from None
                left = right
            return True
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            a, b = _number(ev(node.left)), _number(ev(node.right))
            if isinstance(node.op, ast.Pow) and (abs(b) > 64 or (abs(a) > 1 and abs(b) * math.log2(abs(a)) > 62)):
                raise FormulaError(f"a power exceeds {LIMIT:.0e}")
            try:
                return _number(_BINARY[type(node.op)](a, b))
            except (ZeroDivisionError, OverflowError) as e:
                raise FormulaError(str(e)) from None
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "len"
                and not node.keywords and len(node.args) == 1):
            v = ev(node.args[0])
            if not isinstance(v, tuple):
                raise FormulaError(f"len() takes a list hyperparameter, got {v!r}")
            return len(v)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS
                and not node.keywords and 1 <= len(node.args) <= 4):
            args = [_number(ev(a)) for a in node.args]
            try:
                return _number(_FUNCTIONS[node.func.id](*args))
            except (TypeError, ValueError) as e:
                raise FormulaError(f"{node.func.id}: {e}") from None
        raise FormulaError("only numbers, names, arithmetic, comparisons, and/or/not, if-else and "
                           "min/max/int/round/sqrt/len are allowed")

    try:
        value = ev(tree.body)
        return _number(value)
    except FormulaError as e:
        raise FormulaError(f"cannot evaluate {expr!r}: {e}") from None
    except RecursionError:
        raise FormulaError(f"cannot evaluate {expr!r}: nested too deeply") from None
