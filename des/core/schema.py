"""One way to read and check user input (scenarios, GPU and model presets, sweep files).

A :class:`Section` wraps one mapping of a YAML document and reads it key by key: each value goes
through a *parser*, any callable ``parse(value, where) -> parsed`` (the unit parsers of
:mod:`des.core.units` are parsers too), and :meth:`Section.finish` refuses keys nobody asked for.
Every error is a :class:`SchemaError` (or the subclass the Section was given) whose message
starts with the key path (``network.topology.dims[1]``), shows the bad value shortened the way
:mod:`reprlib` does, says what is allowed, and suggests the closest key or value on a typo::

    network.chunkz: unknown key 'chunkz' (did you mean 'chunks'?); expected one of ...
    topology.npus: must be a positive integer, got str '4'

Parsers raise any ``ValueError`` naming ``where``; :meth:`Section.get` turns it into the
Section's error class, adding the key path when the message lacks it.
"""

from __future__ import annotations

import datetime
import difflib
import enum
import itertools
import math
import numbers
import reprlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = [
    "Parser",
    "SchemaError",
    "Section",
    "boolean",
    "check",
    "entries",
    "fraction",
    "key_text",
    "nonempty_text",
    "nonneg_int",
    "nonneg_number",
    "optional",
    "positive",
    "positive_int",
    "positive_number",
    "probability",
    "short",
    "show",
    "text",
    "unknown",
]

#: A parser takes the raw value and its key path and returns the checked, converted value.
Parser = Callable[[Any, str], Any]

_MISSING: Any = object()


class SchemaError(ValueError):
    """Input that cannot be used; the message names the key path, the value and what is
    allowed. The errors of scenarios, hardware, models and sweeps derive from it."""


class _BoundedRepr(reprlib.Repr):
    """:class:`reprlib.Repr` bounded in time and memory whatever it is given: types are
    dispatched with isinstance (a subclass of list is cut like a list), mappings and sets are
    shown in their own order without sorting them whole, huge integers are never converted to
    text in full, and objects of other types show only their type name. Nested values stop at
    ``maxlevel``, so a structure that aliases share exponentially often costs at most
    ``maxlist ** maxlevel`` small reprs."""

    def repr1(self, x: Any, level: int) -> str:
        if x is None or isinstance(x, bool):
            return repr(x)
        if isinstance(x, int):
            return self.repr_int(x, level)
        if isinstance(x, float):
            return float.__repr__(x)
        if isinstance(x, str):
            return self.repr_str(str.__str__(x), level)
        if isinstance(x, (bytes, bytearray)):
            cut = bytes(x[:self.maxstring])
            return repr(cut) + ("..." if len(x) > self.maxstring else "")
        if isinstance(x, Mapping):
            return self._mapping(x, level)
        if isinstance(x, (list, tuple, set, frozenset)):
            kind = next(t for t in (list, tuple, set, frozenset) if isinstance(x, t))
            return getattr(self, f"repr_{kind.__name__}")(kind(itertools.islice(
                x, self.maxlist + 1)) if len(x) > self.maxlist else x, level)
        if isinstance(x, (complex, datetime.date, datetime.time, enum.Enum)):
            text = repr(x)
            return text if len(text) <= self.maxother else text[:self.maxother - 3] + "..."
        return f"<{type(x).__name__}>"

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 128:  # str() of a huge int costs quadratic time, or raises
            digits = int(x.bit_length() * math.log10(2)) + 1
            return f"<{'-' if x < 0 else ''}int of about {digits} digits>"
        return super().repr_int(int(x), level)

    def repr_set(self, x: Any, level: int) -> str:
        return self._items(x, level, "{", "}") if x else "set()"

    def repr_frozenset(self, x: Any, level: int) -> str:
        return f"frozenset({self._items(x, level, '{', '}')})" if x else "frozenset()"

    def _items(self, x: Any, level: int, left: str, right: str) -> str:
        if level <= 0:
            return f"{left}...{right}"
        parts = [self.repr1(item, level - 1) for item in itertools.islice(x, self.maxlist)]
        if len(x) > self.maxlist:
            parts.append("...")
        return left + ", ".join(parts) + right

    def _mapping(self, x: Mapping[Any, Any], level: int) -> str:
        if not x:
            return "{}"
        if level <= 0:
            return "{...}"
        parts = [f"{self.repr1(k, level - 1)}: {self.repr1(v, level - 1)}"
                 for k, v in itertools.islice(x.items(), self.maxdict)]
        if len(x) > self.maxdict:
            parts.append("...")
        return "{" + ", ".join(parts) + "}"


_REPR = _BoundedRepr()
_REPR.maxstring = 60
_REPR.maxother = 60
_REPR.maxlist = _REPR.maxtuple = _REPR.maxset = _REPR.maxfrozenset = 8
_REPR.maxdict = 6
_REPR.maxlevel = 3

#: The longest text :func:`short` returns.
SHORT_MAX = 120


def short(value: Any) -> str:
    """``repr(value)`` cut to a readable length (long strings, lists and mappings elided),
    in bounded time and memory whatever ``value`` is, and never longer than
    :data:`SHORT_MAX` characters."""
    text = _REPR.repr(value)
    return text if len(text) <= SHORT_MAX else text[:SHORT_MAX - 3] + "..."


def show(value: Any) -> str:
    """The type and shortened repr of a bad value: ``str '4'``, ``list [1, 2]``."""
    return f"{type(value).__name__} {short(value)}"


def key_text(key: Any) -> str:
    """A mapping key as it appears in a key path: a short string as is, anything else (or a
    long string) shortened like a value."""
    if isinstance(key, str) and len(key) <= 60 and key.isprintable():
        return key
    return short(key)


def unknown(where: str, value: Any, allowed: Iterable[Any], what: str = "value") -> str:
    """The message for a value (or key) outside ``allowed``, suggesting the closest one."""
    names = [str(a) for a in dict.fromkeys(allowed)]
    hint = (difflib.get_close_matches(value, names, n=1)
            if isinstance(value, str) and len(value) <= 100 else [])
    maybe = f" (did you mean {hint[0]!r}?)" if hint else ""
    return f"{where}: unknown {what} {short(value)}{maybe}; expected one of {', '.join(names)}"


class Section:
    """A mapping read key by key; :meth:`finish` rejects keys nobody asked for.

    ``path`` is the key path of the mapping ('' for a document's top level, then ``label``
    names it in errors). ``keys``, when given, are all the keys the mapping may have: unknown
    ones are refused at once, before any value is read (so a typo is reported as a typo, not
    as a missing key). Errors are raised as ``error`` (default: the class attribute
    :attr:`error`, :class:`SchemaError`), and nested sections inherit it.
    """

    error: type[ValueError] = SchemaError

    def __init__(self, data: Any, path: str, label: str = "", *,
                 keys: Iterable[str] | None = None,
                 error: type[ValueError] | None = None) -> None:
        if error is not None:
            self.error = error
        if not isinstance(data, Mapping):
            raise self.error(f"{path or label or 'input'}: must be a mapping of keys, "
                             f"got {show(data)}")
        self.data = data
        self.path = path
        self.known: list[str] = []
        if keys is not None:
            self.known = list(keys)
            self.finish()

    def where(self, key: str) -> str:
        """The key path of ``key`` in this mapping."""
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, message: str) -> ValueError:
        """An error of this section's class for ``key`` ('' for the mapping itself)."""
        where = self.where(key) if key else (self.path or "input")
        return self.error(f"{where}: {message}")

    def get(self, key: str, parse: Parser | None = None, default: Any = _MISSING) -> Any:
        """The value at ``key`` converted by ``parse(value, where)``; ``default`` when absent
        (no default: the key is required)."""
        self.known.append(key)
        if key not in self.data:
            if default is _MISSING:
                raise self.fail(key, f"required key is missing{self._typo_hint(key)}")
            return default
        value = self.data[key]
        return value if parse is None else check(parse, value, self.where(key), self.error)

    def choice(self, key: str, allowed: Iterable[Any], default: Any = _MISSING,
               what: str = "value") -> Any:
        """A value that must be one of ``allowed`` (suggests the closest on a typo)."""
        allowed = list(allowed)
        value = self.get(key, default=default)
        if value not in allowed:
            raise self.error(unknown(self.where(key), value, allowed, what))
        return value

    def section(self, key: str, required: bool = False) -> Section:
        """A nested mapping (empty when absent and not required), raising the same errors."""
        value = self.get(key, default=_MISSING if required else {})
        return type(self)(value, self.where(key), error=self.error)

    def finish(self) -> None:
        """Raise on keys that were never asked for."""
        extra = [k for k in self.data if k not in self.known]
        if extra:
            bad = extra[0]
            raise self.error(unknown(self.where(key_text(bad)), bad, self.known, what="key"))

    def _typo_hint(self, key: str) -> str:
        strays = [k for k in self.data if isinstance(k, str) and len(k) <= 100
                  and k not in self.known]
        hint = difflib.get_close_matches(key, strays, n=1, cutoff=0.75)
        return f" (is {hint[0]!r} a typo for it?)" if hint else ""


def check(parse: Parser, value: Any, where: str, error: type[ValueError] = SchemaError) -> Any:
    """``parse(value, where)``, any ValueError or TypeError raised as ``error`` whose message
    starts with ``where``."""
    try:
        return parse(value, where)
    except error:
        raise
    except (ValueError, TypeError) as err:
        msg = str(err)
        raise error(msg if msg.startswith(where) else f"{where}: {msg}") from None


# ---------------------------------------------------------------------- parsers
def _real(value: Any) -> float | None:
    """``value`` as a finite float, or None for bools, non-numbers, NaN and infinities."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def positive_int(value: Any, where: str) -> int:
    """A whole number >= 1 (not a bool, not a float)."""
    number = _int(value)
    if number is None or number < 1:
        raise SchemaError(f"{where}: must be a positive integer, got {show(value)}")
    return number


def nonneg_int(value: Any, where: str) -> int:
    """A whole number >= 0."""
    number = _int(value)
    if number is None or number < 0:
        raise SchemaError(f"{where}: must be an integer >= 0, got {show(value)}")
    return number


def positive_number(value: Any, where: str) -> float:
    """A finite number > 0, as a float."""
    number = _real(value)
    if number is None or not number > 0:
        raise SchemaError(f"{where}: must be a finite number > 0, got {show(value)}")
    return number


def nonneg_number(value: Any, where: str) -> float:
    """A finite number >= 0, as a float."""
    number = _real(value)
    if number is None or number < 0:
        raise SchemaError(f"{where}: must be a finite number >= 0, got {show(value)}")
    return number


def fraction(value: Any, where: str) -> float:
    """A number in (0, 1]."""
    number = _real(value)
    if number is None or not 0 < number <= 1:
        raise SchemaError(f"{where}: must be a number in (0, 1], got {show(value)}")
    return number


def probability(value: Any, where: str) -> float:
    """A number in [0, 1]."""
    number = _real(value)
    if number is None or not 0 <= number <= 1:
        raise SchemaError(f"{where}: must be a probability in [0, 1], got {show(value)}")
    return number


def boolean(value: Any, where: str) -> bool:
    """YAML true or false (not 1, 0 or "yes")."""
    if not isinstance(value, bool):
        raise SchemaError(f"{where}: must be true or false, got {show(value)}")
    return value


def text(value: Any, where: str) -> str:
    """Any string."""
    if not isinstance(value, str):
        raise SchemaError(f"{where}: must be text, got {show(value)}")
    return value


def nonempty_text(value: Any, where: str) -> str:
    """A string with something other than spaces in it."""
    if not isinstance(value, str) or not value.strip():
        raise SchemaError(f"{where}: must be a non-empty string, got {show(value)}")
    return value


def optional(parse: Parser) -> Parser:
    """``parse``, but a null (YAML ``~``) stays None."""
    def parse_optional(value: Any, where: str) -> Any:
        return None if value is None else parse(value, where)
    return parse_optional


def positive(parse: Parser, unit: str) -> Parser:
    """``parse`` (a unit parser, say) and then refuse a result that is not > 0 ``unit``."""
    def parse_positive(value: Any, where: str) -> float:
        number = parse(value, where)
        if not number > 0:
            got = short(value) if _real(value) == number else f"{short(value)} (= {number})"
            raise SchemaError(f"{where}: must be > 0 {unit}, got {got}")
        return number
    return parse_positive


def entries(parse: Parser, *, keys: Iterable[str] | None = None, what: str = "key",
            nonempty: bool = False, expected: str = "a mapping") -> Parser:
    """A mapping whose values each go through ``parse`` (at ``where.key``); its keys must be
    among ``keys`` when given (``what`` names them in errors)."""
    allowed = None if keys is None else list(keys)

    def parse_entries(value: Any, where: str) -> dict[Any, Any]:
        if not isinstance(value, Mapping) or (nonempty and not value):
            empty = "non-empty " if nonempty else ""
            raise SchemaError(f"{where}: must be {empty}{expected}, got {show(value)}")
        out = {}
        for key, item in value.items():
            if allowed is not None and key not in allowed:
                raise SchemaError(unknown(where, key, allowed, what))
            out[key] = parse(item, f"{where}.{key_text(key)}")
        return out
    return parse_entries
