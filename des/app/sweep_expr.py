"""The sweep's safe expression interpreter: constraints and derived values are arithmetic and
comparisons over a point's scenario values, parsed with :mod:`ast` and evaluated by walking only
the node types listed here (numbers, names, + - * / // % **, comparisons, and/or/not), so a sweep
file cannot run code. Its cost is bounded too (:mod:`des.core.limits`): the source's length, its
syntax tree's size and depth are checked before evaluation, and every operation's result size
(integer bits, string length; string repetition and formatting are refused) before it is
computed, whatever the operands."""

from __future__ import annotations

import ast
import math
import operator
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from des.app.sweep_types import SweepError
from des.core import limits
from des.core.schema import SchemaError, short, show

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
}


def check_expression(text: str, where: str) -> ast.Expression:
    """Parse a constraint, allowing only the nodes :func:`evaluate` knows, within the limits
    ``max_expression_chars``, ``max_expression_nodes`` and ``max_expression_depth``
    (:mod:`des.core.limits`), checked before and while parsing, so a 100,000-term or deeply
    nested expression is a clear error, not a RecursionError or MemoryError."""
    if not isinstance(text, str):
        raise SweepError(f"{where}: an expression must be text, got {type(text).__name__}")
    limits.check("max_expression_chars", len(text), where, what="characters")
    try:
        with warnings.catch_warnings():  # "invalid decimal literal" and such: not for users
            warnings.simplefilter("ignore", SyntaxWarning)
            tree = ast.parse(text, mode="eval")
    except SyntaxError as err:
        raise SweepError(f"{where}: cannot read {short(text)}: {err.msg}") from None
    except (RecursionError, MemoryError, ValueError) as err:  # the parser's own limits
        raise SweepError(f"{where}: cannot read {short(text)}: {type(err).__name__}: "
                         "too deeply nested or too large") from None
    allowed = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.Name,
               ast.Constant, ast.Load, ast.And, ast.Or, ast.Not, ast.USub, ast.UAdd,
               ast.Attribute, *_BINARY, *_COMPARE)
    most_nodes, most_depth = limits.get("max_expression_nodes"), limits.get(
        "max_expression_depth")
    count = 0
    stack: list[tuple[ast.AST, int]] = [(tree, 0)]
    while stack:  # iterative: the walk itself must not recurse on a deep tree
        node, depth = stack.pop()
        count += 1
        if count > most_nodes:
            limits.check("max_expression_nodes", count, where, what="syntax-tree nodes, "
                         "at least")
        if depth > most_depth:
            limits.check("max_expression_depth", depth, where, what="levels of nesting, "
                         "at least")
        if not isinstance(node, allowed):
            raise SweepError(f"{where}: {type(node).__name__} is not allowed in {short(text)}; "
                             "use numbers, axis names, arithmetic, comparisons, and/or/not")
        if isinstance(node, ast.Constant) and (isinstance(node.value, bool) or not isinstance(
                node.value, int | float | str)):
            raise SweepError(f"{where}: constant {short(node.value)} is not allowed")
        if isinstance(node, ast.Attribute) and not _dotted(node):
            raise SweepError(f"{where}: only dotted scenario keys may use '.', "
                             f"not {short(text)}")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return tree


def _dotted(node: ast.AST) -> bool:
    """A name or a chain of attributes on a name (``workload.parallel.tp``)."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name)


def evaluate(tree: ast.AST, names: Mapping[str, Any]) -> Any:
    """Evaluate a checked constraint with ``names`` bound. Every failure, a division by zero,
    a result too large (``max_expression_bits``, ``max_expression_text``), operands of the
    wrong type, is a :class:`SweepError` (or a :class:`~des.core.limits.LimitError`)."""
    try:
        return _evaluate(tree, names)
    except SchemaError:
        raise
    except (ArithmeticError, TypeError, ValueError) as err:
        raise SweepError(f"cannot evaluate {short(_source(tree))}: {type(err).__name__}: "
                         f"{err}") from None
    except RecursionError:
        raise SweepError(f"cannot evaluate {short(_source(tree))}: nested too deeply") from None


def _source(tree: ast.AST) -> str:
    try:
        return ast.unparse(tree)
    except (RecursionError, ValueError):
        return "<expression>"


def _evaluate(tree: ast.AST, names: Mapping[str, Any]) -> Any:
    if isinstance(tree, ast.Expression):
        return _evaluate(tree.body, names)
    if isinstance(tree, ast.Constant):
        return _checked(tree.value, tree)
    if isinstance(tree, ast.Name | ast.Attribute):
        dotted = ast.unparse(tree)
        if dotted not in names:
            raise SweepError(f"unknown name {dotted!r} in a constraint; known: "
                             f"{', '.join(sorted(names))}")
        return names[dotted]
    if isinstance(tree, ast.BinOp):
        left, right = _evaluate(tree.left, names), _evaluate(tree.right, names)
        _precheck(type(tree.op), left, right, tree)
        return _checked(_BINARY[type(tree.op)](left, right), tree)
    if isinstance(tree, ast.UnaryOp):
        value = _evaluate(tree.operand, names)
        if isinstance(tree.op, ast.USub | ast.UAdd) and not _number(value):
            raise SweepError(f"unary {'-' if isinstance(tree.op, ast.USub) else '+'} needs a "
                             f"number, got {show(value)} in {short(_source(tree))}")
        return {ast.USub: operator.neg, ast.UAdd: operator.pos,
                ast.Not: operator.not_}[type(tree.op)](value)
    if isinstance(tree, ast.BoolOp):
        values = (_evaluate(v, names) for v in tree.values)
        return all(values) if isinstance(tree.op, ast.And) else any(values)
    if isinstance(tree, ast.Compare):
        left = _evaluate(tree.left, names)
        for op, right_node in zip(tree.ops, tree.comparators, strict=True):
            right = _evaluate(right_node, names)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    raise SweepError(f"cannot evaluate {short(_source(tree))}")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _bits(value: Any) -> int:
    """Bits of an integer operand (a float counts as 64: its own range bounds it)."""
    return abs(int(value)).bit_length() if isinstance(value, int) else 64


def _precheck(op: type, left: Any, right: Any, tree: ast.AST) -> None:
    """Refuse an operation whose result would be too large *before* computing it, whatever
    the operands: string repetition and formatting, integers beyond ``max_expression_bits``."""
    text = isinstance(left, str) or isinstance(right, str)
    if text:
        if op is not ast.Add or not (isinstance(left, str) and isinstance(right, str)):
            raise SweepError(f"strings may only be compared or joined with +, not "
                             f"{short(_source(tree))}")
        limits.check("max_expression_text", len(left) + len(right), short(_source(tree)),
                     what="characters of a joined string")
        return
    if not (_number(left) or isinstance(left, bool)) or not (
            _number(right) or isinstance(right, bool)):
        raise SweepError(f"arithmetic needs numbers, got {show(left)} and {show(right)} in "
                         f"{short(_source(tree))}")
    if not (isinstance(left, int) and isinstance(right, int)):
        return  # floats: overflow raises OverflowError or gives inf, refused by _checked
    most = limits.get("max_expression_bits")
    if op is ast.Pow:
        if right < 0 or abs(left) <= 1:
            return
        bits = (abs(left).bit_length() - 1) * right  # a lower bound of the result's bits
        if bits > most:
            limits.check("max_expression_bits", bits, short(_source(tree)),
                         what="bits of a power, at least")
    elif op is ast.Mult:
        bits = _bits(left) + _bits(right)
        if bits > most + 1:
            limits.check("max_expression_bits", bits - 1, short(_source(tree)),
                         what="bits of a product, at least")


def _checked(value: Any, tree: ast.AST) -> Any:
    """A result within bounds: a finite real number, a string of bounded length, a bool."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if value.bit_length() > limits.get("max_expression_bits"):
            limits.check("max_expression_bits", value.bit_length(), short(_source(tree)),
                         what="bits of an integer")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SweepError(f"{short(_source(tree))} is not a finite number ({value})")
        return value
    if isinstance(value, str):
        limits.check("max_expression_text", len(value), short(_source(tree)),
                     what="characters of a string")
        return value
    raise SweepError(f"{short(_source(tree))} gives {show(value)}, not a real number")


def _leaves(doc: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _leaves(value, path + ".")
        elif isinstance(value, int | float | str) and not isinstance(value, bool):
            yield path, value


def scenario_names(scenario: Mapping[str, Any], npus: int) -> dict[str, Any]:
    """Names a constraint may use: every number or string of the scenario by dotted key,
    unique last components, ``npus``."""
    return constraint_names(dict(_leaves(scenario)), npus)


def constraint_names(values: Mapping[str, Any], npus: int) -> dict[str, Any]:
    """Names from ``values``: full keys, unique last components, and ``npus``."""
    names: dict[str, Any] = {"npus": npus}
    short: dict[str, list[str]] = {}
    for key, value in values.items():
        names[key] = value
        short.setdefault(key.rsplit(".", 1)[-1], []).append(key)
    for leaf, keys in short.items():
        if len(keys) == 1 and leaf not in names:
            names[leaf] = values[keys[0]]
    return names

