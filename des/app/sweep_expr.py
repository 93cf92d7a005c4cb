"""The sweep's safe expression interpreter: constraints and derived values are arithmetic and
comparisons over a point's scenario values, parsed with :mod:`ast` and evaluated by walking only
the node types listed here (numbers, names, + - * / // % **, comparisons, and/or/not), so a sweep
file cannot run code. Work is bounded too: an expression has at most :data:`MAX_TEXT`
characters and :data:`MAX_DEPTH` levels, and no intermediate value may exceed
:data:`MAX_RESULT` (bits of an integer, characters of a string) -- refused before it is
computed, so ``'x' * 10 ** 9`` or ``(9 ** 256) ** 256 ** 256`` cannot exhaust memory."""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from des.app.sweep_types import SweepError
from des.core.schema import short

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
}


#: Longest expression text, deepest expression tree, largest value (bits or characters).
MAX_TEXT, MAX_DEPTH, MAX_RESULT = 1000, 40, 10_000


def check_expression(text: str, where: str) -> ast.Expression:
    """Parse a constraint, allowing only the nodes :func:`evaluate` knows."""
    if len(text) > MAX_TEXT:
        raise SweepError(f"{where}: an expression of {len(text):,} characters; at most "
                         f"{MAX_TEXT} are read")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, RecursionError, MemoryError, ValueError) as err:
        why = err.msg if isinstance(err, SyntaxError) else "too complex"
        raise SweepError(f"{where}: cannot read {short(text)}: {why}") from None
    if _depth(tree) > MAX_DEPTH:
        raise SweepError(f"{where}: {short(text)} nests deeper than {MAX_DEPTH} levels")
    allowed = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.Name,
               ast.Constant, ast.Load, ast.And, ast.Or, ast.Not, ast.USub, ast.UAdd,
               ast.Attribute, *_BINARY, *_COMPARE)
    for node in ast.walk(tree):
        if not isinstance(node, allowed):
            raise SweepError(f"{where}: {type(node).__name__} is not allowed in {text!r}; "
                             "use numbers, axis names, arithmetic, comparisons, and/or/not")
        if isinstance(node, ast.Constant) and not isinstance(node.value, int | float | str):
            raise SweepError(f"{where}: constant {node.value!r} is not allowed")
    return tree


def evaluate(tree: ast.AST, names: Mapping[str, Any]) -> Any:
    """Evaluate a checked constraint with ``names`` bound."""
    if isinstance(tree, ast.Expression):
        return evaluate(tree.body, names)
    if isinstance(tree, ast.Constant):
        return tree.value
    if isinstance(tree, ast.Name | ast.Attribute):
        dotted = ast.unparse(tree)
        if dotted not in names:
            raise SweepError(f"unknown name {dotted!r} in a constraint; known: "
                             f"{', '.join(sorted(names))}")
        return names[dotted]
    if isinstance(tree, ast.BinOp):
        left, right = evaluate(tree.left, names), evaluate(tree.right, names)
        if isinstance(tree.op, ast.Pow) and isinstance(right, int | float) and abs(right) > 256:
            raise SweepError(f"exponent {short(right)} is too large in {short(ast.unparse(tree))}")
        _check_size(tree, left, right)
        return _BINARY[type(tree.op)](left, right)
    if isinstance(tree, ast.UnaryOp):
        value = evaluate(tree.operand, names)
        return {ast.USub: operator.neg, ast.UAdd: operator.pos,
                ast.Not: operator.not_}[type(tree.op)](value)
    if isinstance(tree, ast.BoolOp):
        values = (evaluate(v, names) for v in tree.values)
        return all(values) if isinstance(tree.op, ast.And) else any(values)
    if isinstance(tree, ast.Compare):
        left = evaluate(tree.left, names)
        for op, right_node in zip(tree.ops, tree.comparators, strict=True):
            right = evaluate(right_node, names)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    raise SweepError(f"cannot evaluate {ast.unparse(tree)!r}")


def _depth(tree: ast.AST) -> int:
    """Levels of an expression tree (iteratively: the tree may be deep)."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _size(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, int):
        return abs(value).bit_length()
    return 0


def _check_size(tree: ast.BinOp, left: Any, right: Any) -> None:
    """Refuse a binary operation whose result would exceed MAX_RESULT, before computing it."""
    estimate = 0
    if isinstance(tree.op, ast.Mult) and isinstance(left, str | int) and isinstance(
            right, str | int):
        if isinstance(left, str) or isinstance(right, str):  # repetition
            text, count = (left, right) if isinstance(left, str) else (right, left)
            estimate = len(text) * max(count, 0) if isinstance(count, int) else 0
        else:
            estimate = _size(left) + _size(right)
    elif isinstance(tree.op, ast.Pow) and isinstance(left, int) and isinstance(right, int):
        estimate = _size(left) * max(right, 0)
    if max(estimate, _size(left), _size(right)) > MAX_RESULT:
        raise SweepError(f"{short(ast.unparse(tree))}: the value would exceed {MAX_RESULT:,} "
                         "bits or characters")


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

