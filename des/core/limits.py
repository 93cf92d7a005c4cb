"""Every bound on the work an input may ask for, in one table, checked before the work starts.

A scenario, sweep or topology spec can ask for more than a machine can do (a ring of 10^9 NPUs,
``chunk_size: 1 B``, ``repeat: 10000000``, a sweep of 10^9 points) or for physics that make no
sense (a bandwidth of ``1e-300 B/s``). Each such input is checked against a named limit here
*before* anything is built, and refused with a :class:`LimitError` (a
:class:`~des.core.schema.SchemaError`, so the CLI exits 2) that names the limit, the value, the
default and how to raise it.

Raising a limit, later sources winning:

* the defaults in :data:`LIMITS`;
* the environment: ``DES_LIMITS="max_npus=300000,max_links=5e6"``;
* a ``limits:`` mapping in a scenario or sweep file (``limits: {max_npus: 300000}``; a sweep's
  apply to the sweep itself and to every point it runs), in force while that file is read and
  run (:func:`using`).

The API is small on purpose::

    limits.check("max_npus", n, "topology.npus")   # LimitError when n > the current limit
    limits.current()["max_npus"]                    # the limits in force, by name
    with limits.using({"max_npus": 300_000}): ...   # raise (or lower) some for a while

A limit is an upper bound (``max_*``: the value must be <= it) or a lower bound (``min_*``: the
value must be >= it).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import numbers
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from des.core.schema import SchemaError, short, show, unknown

__all__ = ["ENV", "LIMITS", "Limit", "LimitError", "check", "current", "get", "parse_overrides",
           "using"]

#: The environment variable that raises limits for a whole process tree (sweep workers too).
ENV = "DES_LIMITS"


class LimitError(SchemaError):
    """An input that asks for more work (or stranger physics) than a named limit allows."""


@dataclass(frozen=True)
class Limit:
    """One named bound: its default, what it bounds (for messages) and the unit it is in."""

    name: str
    default: float
    what: str
    unit: str = ""

    @property
    def lower(self) -> bool:
        """A ``min_*`` limit: values below it are refused."""
        return self.name.startswith("min_")


_TABLE = (
    # size of the machine
    Limit("max_npus", 65_536, "NPUs in a topology"),
    Limit("max_links", 1_000_000, "directed links in a topology (a fully connected fabric "
          "has n(n-1))"),
    # work of a run
    Limit("max_chunks", 100_000, "chunks one collective is cut into (chunks, or its size / "
          "chunk_size)"),
    Limit("max_repeat", 100_000, "repeats of one collective"),
    Limit("max_graph_nodes", 20_000_000, "event-graph nodes of a run"),
    Limit("max_messages", 1_000_000_000, "messages a run is estimated to simulate"),
    Limit("warn_messages", 20_000_000, "messages above which a run logs a warning that it "
          "may take long"),
    # sweeps
    Limit("max_sweep_points", 100_000, "points of a sweep (the product of its axes)"),
    Limit("max_expression_chars", 2_000, "characters of one sweep expression"),
    Limit("max_expression_nodes", 500, "syntax-tree nodes of one sweep expression"),
    Limit("max_expression_depth", 50, "nesting depth of one sweep expression"),
    Limit("max_expression_bits", 4_096, "bits of an integer a sweep expression computes"),
    Limit("max_expression_text", 10_000, "characters of a string a sweep expression computes"),
    # physics
    Limit("min_bandwidth", 1e-6, "link bandwidth", "bytes/ns, i.e. 1 kB/s"),
    Limit("max_bandwidth", 1e12, "link bandwidth", "bytes/ns, i.e. 1 ZB/s"),
    Limit("max_latency", 1e12, "link or switch latency", "ns, i.e. 1000 s"),
    Limit("max_model_dim", 1 << 24, "a model dimension (hidden size, layers, heads, "
          "vocabulary, sequence)"),
)

#: The limits by name, with their defaults.
LIMITS: dict[str, Limit] = {limit.name: limit for limit in _TABLE}

_OVERRIDES: contextvars.ContextVar[tuple[tuple[str, float], ...]] = contextvars.ContextVar(
    "des_limit_overrides", default=())
_ENV_CACHE: dict[str, dict[str, float]] = {}


def _number(value: Any, where: str) -> float:
    """A limit's value: a finite number >= 0 (``1e6``, ``300_000`` and ``"300000"`` too)."""
    number: Any = value
    if isinstance(value, str):
        try:
            number = float(value.strip().replace("_", "")) if value.strip() else None
        except ValueError:
            number = None
    if (isinstance(number, bool) or not isinstance(number, numbers.Real)
            or not math.isfinite(float(number)) or float(number) < 0):
        raise LimitError(f"{where}: a limit must be a finite number >= 0, got {show(value)}")
    return int(number) if float(number).is_integer() else float(number)


def parse_overrides(value: Any, where: str = "limits") -> dict[str, float]:
    """A ``limits:`` mapping (or a ``DES_LIMITS`` string ``name=value,...``) checked: known
    names, finite numbers >= 0."""
    if isinstance(value, str):
        pairs: dict[str, Any] = {}
        for item in filter(None, (part.strip() for part in value.split(","))):
            name, eq, number = item.partition("=")
            if not eq:
                raise LimitError(f"{where}: expected name=value pairs separated by commas, "
                                 f"got {short(item)}")
            pairs[name.strip()] = number
        value = pairs
    if not isinstance(value, Mapping):
        raise LimitError(f"{where}: must be a mapping of limit names to numbers, e.g. "
                         f"{{max_npus: 300000}}, got {show(value)}")
    out: dict[str, float] = {}
    for name, number in value.items():
        if name not in LIMITS:
            raise LimitError(unknown(where, name, LIMITS, what="limit"))
        out[name] = _number(number, f"{where}.{name}")
    return out


def _env() -> dict[str, float]:
    text = os.environ.get(ENV, "")
    if text not in _ENV_CACHE:
        _ENV_CACHE.clear()
        _ENV_CACHE[text] = parse_overrides(text, ENV) if text.strip() else {}
    return _ENV_CACHE[text]


def current() -> dict[str, float]:
    """The limits in force, by name: defaults, then ``DES_LIMITS``, then :func:`using`."""
    values = {name: limit.default for name, limit in LIMITS.items()}
    values.update(_env())
    values.update(_OVERRIDES.get())
    return values


def get(name: str) -> float:
    """The value in force of one limit."""
    if name not in LIMITS:
        raise KeyError(unknown("limits", name, LIMITS, what="limit"))
    overrides = dict(_OVERRIDES.get())
    if name in overrides:
        return overrides[name]
    return _env().get(name, LIMITS[name].default)


@contextlib.contextmanager
def using(overrides: Mapping[str, Any] | None, where: str = "limits") -> Iterator[None]:
    """Raise (or lower) the named limits inside the ``with`` block (checked like a file's
    ``limits:`` section); nested blocks stack, the innermost winning."""
    checked = parse_overrides(overrides or {}, where)
    token = _OVERRIDES.set((*_OVERRIDES.get(), *checked.items()))
    try:
        yield
    finally:
        _OVERRIDES.reset(token)


def exceeds(name: str, value: float) -> bool:
    """Whether ``value`` breaks limit ``name`` (above a ``max_*``, below a ``min_*``)."""
    bound = get(name)
    return value < bound if LIMITS[name].lower else value > bound


def check(name: str, value: float, where: str = "", *, what: str = "") -> None:
    """Refuse ``value`` with a :class:`LimitError` when it breaks limit ``name``; ``where`` is
    the input it came from (a key path, a spec) and ``what`` says how it was worked out
    (``"k^3/4 hosts of a k=1000 fat tree"``)."""
    if not exceeds(name, value):
        return
    limit = LIMITS[name]
    bound = get(name)
    prefix = f"{where}: " if where else ""
    how = f" ({what})" if what else ""
    relation = "is below" if limit.lower else "exceeds"
    unit = f" {limit.unit}" if limit.unit else ""
    verb = "lower" if limit.lower else "raise"
    raise LimitError(
        f"{prefix}{_fmt(value)}{how} {relation} the limit on {limit.what}: {name} = "
        f"{_fmt(bound)}{unit} (default {_fmt(limit.default)}); if you mean it, {verb} it with "
        f"'limits: {{{name}: N}}' in the scenario or sweep file, or {ENV}=\"{name}=N\"")


def _fmt(value: float) -> str:
    """A limit or a value for a message: ``65,536``, ``1e+09``, ``about 10^200``."""
    if isinstance(value, int) and not isinstance(value, bool):
        if abs(value) < 10**15:
            return f"{value:,}"
        if value.bit_length() > 1000:
            return f"about 10^{int(value.bit_length() * math.log10(2))}"
        return f"{float(value):.3g}"
    if math.isfinite(value) and float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:g}"
