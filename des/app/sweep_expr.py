"""The sweep's safe expression interpreter: constraints and derived values are arithmetic and
comparisons over a point's scenario values, parsed with :mod:`ast` and evaluated by walking only
the node types listed here (numbers, names, + - * / // % **, comparisons, and/or/not), so a sweep
file cannot run code."""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from des.app.sweep_types import SweepError

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
    """Parse a constraint, allowing only the nodes :func:`evaluate` knows."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as err:
        raise SweepError(f"{where}: cannot read {text!r}: {err.msg}") from None
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
            raise SweepError(f"exponent {right!r} is too large in {ast.unparse(tree)!r}")
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

