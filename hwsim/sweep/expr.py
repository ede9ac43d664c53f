"""Constraint expressions over sweep columns: ``"fa_decode.kv_cache_bytes <= memory.hbm.capacity"``.

A small, safe subset of Python expressions, evaluated on numpy columns: numbers, strings,
``True``/``False``, column names (dotted names such as ``memory.hbm.bandwidth`` are one name),
``+ - * / // % **``, comparisons (chains too), ``and``/``or``/``not`` and the functions
``min``, ``max``, ``abs``, ``log``, ``log2``, ``log10``, ``sqrt``. Nothing else is allowed, so
a sweep file cannot run code.

Bounded work: every number (literal or column) is a float64, never a Python integer, so no
expression can build a number with millions of digits (``9**9**9``); division by zero gives
inf/NaN as in numpy. An expression is refused, with the reason, when it is longer than
:data:`MAX_CHARS` characters, has more than :data:`MAX_NODES` parts or nests deeper than
:data:`MAX_DEPTH`, when a literal is not a finite float64, or when an exponent exceeds
:data:`MAX_EXPONENT` in magnitude (float64 overflows past 2^1024 anyway). What is left is a
few numpy operations per part: microseconds per row.
"""

from __future__ import annotations

import ast
import functools
import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from hwsim.spec.errors import SpecError

#: longest expression read (characters): a constraint is one line a person writes
MAX_CHARS = 2000
#: most syntax-tree parts (names, numbers, operators) in one expression
MAX_NODES = 500
#: deepest nesting of operations (``-(-(-x))`` is three); Python's own parser has limits too
MAX_DEPTH = 32
#: largest exponent magnitude of ``**``: 2^1024 is float64's limit, so beyond it only inf/0
MAX_EXPONENT = 1024

_BIN: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_SYMBOL = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
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
#: arguments each function takes: (fewest, most)
_ARITY = {"min": (1, 16), "max": (1, 16)}
_ALLOWED = (
    ast.Expression,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.UnaryOp,
    ast.Not,
    ast.USub,
    ast.UAdd,
    ast.BinOp,
    ast.Compare,
    ast.Constant,
    ast.Name,
    ast.Attribute,
    ast.Load,
    ast.Call,
    ast.operator,
    ast.cmpop,
)


def _dotted(node: ast.AST) -> str | None:
    """``memory.hbm.bandwidth`` parses as attribute access; read it back as one name."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return None if head is None else f"{head}.{node.attr}"
    return None


def _depth(node: ast.AST, limit: int) -> int:
    """Nesting depth of ``node``, stopping (iteratively, so no recursion limit) past ``limit``."""
    deepest = 0
    stack = [(node, 1)]
    while stack:
        n, d = stack.pop()
        if isinstance(n, ast.Attribute):
            continue  # a dotted name is one name, however many dots
        deepest = max(deepest, d)
        if deepest > limit:
            return deepest
        stack.extend((c, d + 1) for c in ast.iter_child_nodes(n))
    return deepest


@functools.lru_cache(maxsize=256)
def parse(expr: str) -> ast.Expression:
    """Parse and check a constraint; :class:`SpecError` if it is not in the allowed subset or
    over a size limit (module docstring)."""
    if not isinstance(expr, str):
        raise SpecError(f"constraint {expr!r}: expected text such as 'batch * context <= 1e6'")
    if len(expr) > MAX_CHARS:
        raise SpecError(
            f"constraint '{expr[:40]}...' is {len(expr):,} characters long; the limit is "
            f"{MAX_CHARS:,}: split it into several constraints"
        )
    # '[' and ']' in names (memory[hbm].capacity) become dots, as spec paths allow
    text = expr.replace("[", ".").replace("]", "")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as err:
        raise SpecError(f"constraint {expr!r} is not a valid expression ({err.msg})") from None
    except (ValueError, RecursionError, MemoryError) as err:  # e.g. a 5000-digit literal
        reason = str(err).split(";")[0] or type(err).__name__
        raise SpecError(f"constraint {expr!r} is not a valid expression ({reason})") from None
    nodes = list(ast.walk(tree))
    if len(nodes) > MAX_NODES:
        raise SpecError(
            f"constraint {expr!r} has {len(nodes):,} parts; the limit is {MAX_NODES}: "
            "split it into several constraints"
        )
    if _depth(tree, MAX_DEPTH) > MAX_DEPTH:
        raise SpecError(f"constraint {expr!r} nests deeper than {MAX_DEPTH} levels: simplify it")
    for node in nodes:
        _check_node(expr, node)
    return tree


def _check_node(expr: str, node: ast.AST) -> None:
    ok = isinstance(node, _ALLOWED)
    if isinstance(node, ast.operator) and type(node) not in _BIN:
        ok = False
    if isinstance(node, ast.Attribute) and _dotted(node) is None:
        ok = False
    if isinstance(node, ast.Name | ast.Attribute) and "__" in (_dotted(node) or ""):
        ok = False  # names are column lookups anyway; dunders are never columns
    if isinstance(node, ast.Call):
        if not (isinstance(node.func, ast.Name) and node.func.id in _FUNCS and not node.keywords):
            raise SpecError(
                f"constraint {expr!r}: only the functions {', '.join(_FUNCS)} may be called"
            )
        lo, hi = _ARITY.get(node.func.id, (1, 1))
        if not lo <= len(node.args) <= hi or any(isinstance(a, ast.Starred) for a in node.args):
            want = f"{lo} to {hi} arguments" if hi > lo else "one argument"
            raise SpecError(f"constraint {expr!r}: {node.func.id}() takes {want}")
    if isinstance(node, ast.Constant):
        v = node.value
        if isinstance(v, bool | str):
            pass
        elif isinstance(v, int | float):
            try:
                finite = math.isfinite(float(v))
            except OverflowError:
                finite = False
            if not finite:
                raise SpecError(
                    f"constraint {expr!r}: the number {_short(v)} is not a finite float64 "
                    "(|x| < 1.8e308)"
                )
        else:
            ok = False
    if not ok:
        raise SpecError(f"constraint {expr!r}: '{type(node).__name__}' is not allowed")


def _short(v: Any) -> str:
    text = (
        str(v)
        if not isinstance(v, int) or v.bit_length() < 200
        else f"a {len(str(v))}-digit integer"
    )
    return text if len(text) <= 40 else text[:37] + "..."


def names(expr: str) -> set[str]:
    """Column names a constraint reads."""
    tree = parse(expr)
    out: set[str] = set()
    calls = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    stack: list[ast.AST] = [tree.body]
    while stack:
        node = stack.pop()
        name = _dotted(node)
        if name is not None and id(node) not in calls:
            out.add(name)
            continue
        stack.extend(ast.iter_child_nodes(node))
    return out


def _number_column(values: Any) -> Any:
    """A column as float64 where it is numeric (ints and bools too: bounded arithmetic), as
    it is otherwise (text)."""
    arr = np.asarray(values)
    if arr.dtype.kind in "biuf":
        return arr.astype(np.float64)
    return arr


def _kind(v: Any) -> str:
    arr = np.asarray(v)
    return "a number" if arr.dtype.kind in "biuf" else "text"


def evaluate(expr: str, columns: Mapping[str, Any], n: int) -> np.ndarray:
    """Evaluate a constraint on columns of length ``n``; a boolean array of length ``n``.
    Numbers are float64 (module docstring); text may be compared, not computed with."""
    tree = parse(expr)

    def ev(node: ast.AST) -> Any:
        name = _dotted(node)
        if name is not None:
            if name not in columns:
                raise SpecError(f"constraint {expr!r}: unknown name '{name}'")
            return _number_column(columns[name])
        if isinstance(node, ast.Constant):  # parse() allowed only text, bools and numbers
            c = node.value
            return c if isinstance(c, str) else np.float64(c)  # type: ignore[arg-type]
        if isinstance(node, ast.UnaryOp):
            operand = ev(node.operand)
            if isinstance(node.op, ast.Not):
                return np.logical_not(operand)
            return -operand if isinstance(node.op, ast.USub) else +operand
        if isinstance(node, ast.BinOp):
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow):
                _check_exponent(expr, right)
            return _BIN[type(node.op)](left, right)
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
            if fn in (np.minimum, np.maximum):
                out = args[0]
                for a in args[1:]:
                    out = fn(out, a)
                return out
            return fn(*args)
        raise SpecError(f"constraint {expr!r}: cannot evaluate '{type(node).__name__}'")

    try:
        with np.errstate(all="ignore"):
            value = ev(tree.body)
            return np.broadcast_to(np.asarray(value, dtype=bool), (n,)).copy()
    except (TypeError, ValueError) as err:
        # text in arithmetic ('a' * 3, log(dtype)), text ordered against a number, columns of
        # other lengths: the user's expression, named with numpy's complaint
        raise SpecError(
            f"constraint {expr!r} cannot be evaluated: {str(err).splitlines()[0][:120]} "
            "(text can only be compared with == and !=)"
        ) from None


def _check_exponent(expr: str, exponent: Any) -> None:
    """Refuse ``x ** e`` with ``|e|`` over :data:`MAX_EXPONENT` (text is refused later)."""
    arr = np.asarray(exponent)
    if arr.dtype.kind not in "biuf" or arr.size == 0:
        return
    mags = np.abs(arr.astype(np.float64))
    worst = float(np.nanmax(mags)) if not np.all(np.isnan(mags)) else 0.0
    if worst > MAX_EXPONENT:
        raise SpecError(
            f"constraint {expr!r}: an exponent of {worst:.6g} is over the limit of "
            f"{MAX_EXPONENT} (float64 overflows past 2^1024); use log() to compare large powers"
        )
