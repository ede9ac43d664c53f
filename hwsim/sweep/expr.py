"""Constraint expressions over sweep columns: ``"fa_decode.kv_cache_bytes <= memory.hbm.capacity"``.

A small, safe subset of Python expressions, evaluated on numpy columns: numbers, strings,
``True``/``False``, column names (dotted names such as ``memory.hbm.bandwidth`` are one name),
``+ - * / // % **``, comparisons (chains too), ``and``/``or``/``not`` and the functions
``min``, ``max``, ``abs``, ``log``, ``log2``, ``log10``, ``sqrt``. Nothing else is allowed, so
a sweep file cannot run code.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from hwsim.spec.errors import SpecError

_BIN: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_CMP: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
_FUNCS: dict[str, Callable[..., Any]] = {
    "min": np.minimum,
    "max": np.maximum,
    "abs": np.abs,
    "log": np.log,
    "log2": np.log2,
    "log10": np.log10,
    "sqrt": np.sqrt,
}


def _dotted(node: ast.AST) -> str | None:
    """``memory.hbm.bandwidth`` parses as attribute access; read it back as one name."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return None if head is None else f"{head}.{node.attr}"
    return None


def parse(expr: str) -> ast.Expression:
    """Parse and check a constraint; :class:`SpecError` if it is not in the allowed subset."""
    # '[' and ']' in names (memory[hbm].capacity) become dots, as spec paths allow
    text = expr.replace("[", ".").replace("]", "")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as err:
        raise SpecError(f"constraint {expr!r} is not a valid expression ({err.msg})") from None
    for node in ast.walk(tree):
        ok = isinstance(
            node,
            ast.Expression
            | ast.BoolOp
            | ast.And
            | ast.Or
            | ast.UnaryOp
            | ast.Not
            | ast.USub
            | ast.UAdd
            | ast.BinOp
            | ast.Compare
            | ast.Constant
            | ast.Name
            | ast.Attribute
            | ast.Load
            | ast.Call
            | ast.operator
            | ast.cmpop,
        )
        if isinstance(node, ast.operator) and type(node) not in _BIN:
            ok = False
        if isinstance(node, ast.Attribute) and _dotted(node) is None:
            ok = False
        if isinstance(node, ast.Name | ast.Attribute) and "__" in (_dotted(node) or ""):
            ok = False  # names are column lookups anyway; dunders are never columns
        if isinstance(node, ast.Call) and not (
            isinstance(node.func, ast.Name) and node.func.id in _FUNCS and not node.keywords
        ):
            raise SpecError(
                f"constraint {expr!r}: only the functions {', '.join(_FUNCS)} may be called"
            )
        if isinstance(node, ast.Constant) and not isinstance(node.value, int | float | str | bool):
            ok = False
        if not ok:
            raise SpecError(f"constraint {expr!r}: '{type(node).__name__}' is not allowed")
    return tree


def names(expr: str) -> set[str]:
    """Column names a constraint reads."""
    tree = parse(expr)
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        name = _dotted(node)
        if name is not None and not (
            isinstance(node, ast.Name) and name in _FUNCS and _is_call_target(tree, node)
        ):
            out.add(name)
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree.body)
    return out


def _is_call_target(tree: ast.AST, node: ast.AST) -> bool:
    return any(isinstance(n, ast.Call) and n.func is node for n in ast.walk(tree))


def evaluate(expr: str, columns: Mapping[str, Any], n: int) -> np.ndarray:
    """Evaluate a constraint on columns of length ``n``; a boolean array of length ``n``."""
    tree = parse(expr)

    def ev(node: ast.AST) -> Any:
        name = _dotted(node)
        if name is not None:
            if name not in columns:
                raise SpecError(f"constraint {expr!r}: unknown name '{name}'")
            return np.asarray(columns[name])
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.UnaryOp):
            v = ev(node.operand)
            if isinstance(node.op, ast.Not):
                return np.logical_not(v)
            return -v if isinstance(node.op, ast.USub) else +v
        if isinstance(node, ast.BinOp):
            return _BIN[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.BoolOp):
            vals = [np.asarray(ev(v), dtype=bool) for v in node.values]
            out = vals[0]
            for v in vals[1:]:
                out = out & v if isinstance(node.op, ast.And) else out | v
            return out
        if isinstance(node, ast.Compare):
            left = ev(node.left)
            result: Any = True
            for op, comp in zip(node.ops, node.comparators, strict=True):
                right = ev(comp)
                result = np.logical_and(result, _CMP[type(op)](left, right))
                left = right
            return result
        if isinstance(node, ast.Call):
            assert isinstance(node.func, ast.Name)
            args = [ev(a) for a in node.args]
            fn = _FUNCS[node.func.id]
            if fn in (np.minimum, np.maximum) and len(args) > 2:
                out = args[0]
                for a in args[1:]:
                    out = fn(out, a)
                return out
            return fn(*args)
        raise SpecError(f"constraint {expr!r}: cannot evaluate '{type(node).__name__}'")

    with np.errstate(divide="ignore", invalid="ignore"):
        value = ev(tree.body)
    return np.broadcast_to(np.asarray(value, dtype=bool), (n,)).copy()
