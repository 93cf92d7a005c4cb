"""Strict parsing of quantities with units in YAML configs, and formatting them for humans.

Internal units of the whole code base: time in nanoseconds, sizes in bytes, bandwidth in
bytes/ns and FLOP rates in FLOP/ns (all floats). The parsers turn ``"50 GB/s"`` or ``"2 us"``
into those units and refuse anything they cannot read exactly, naming the config key.

Conventions:

* Decimal prefixes are powers of 1000: ``kB`` (also ``KB``) = 1e3 B, ``MB`` = 1e6 B,
  ``GB`` = 1e9 B, ``TB`` = 1e12 B; likewise ``GB/s``, ``GFLOP/s`` and so on.
* Binary prefixes are powers of 1024: ``KiB`` = 2**10 B, ``MiB`` = 2**20 B, ``GiB`` = 2**30 B,
  ``TiB`` = 2**40 B; likewise ``GiB/s``.
* ``B`` is a byte and ``b`` a bit, so the case of that letter matters: ``400 Gb/s`` (or
  ``400 Gbps``) is 50 GB/s. Every other unit is case-sensitive too; ``gb/s`` is refused.
* A bare number (``50`` or ``"50"``) is already in the internal unit: bytes, ns, bytes/ns
  (= GB/s) or FLOP/ns (= TFLOP/s / 1000).
* Negative numbers, NaN, infinity, booleans (YAML ``true``) and empty strings are refused.
* Energy figures (:mod:`des.core.energy`): power in watts (``W``, ``kW``), energy per byte moved
  in pJ/B (``"3.9 pJ/bit"`` is 31.2 pJ/B), energy per FLOP in pJ/FLOP.
"""

from __future__ import annotations

import decimal
import math
import numbers
import re
from collections.abc import Mapping
from decimal import Decimal

from des.core.schema import SchemaError, short

__all__ = [
    "UnitError",
    "format_bandwidth",
    "format_energy",
    "format_power",
    "format_size",
    "format_time",
    "parse_bandwidth",
    "parse_byte_energy",
    "parse_count",
    "parse_flop_energy",
    "parse_flops",
    "parse_power",
    "parse_size",
    "parse_time",
]


class UnitError(SchemaError):
    """A config value that cannot be read as the quantity expected; the message names the key
    path, the value and the units allowed."""


# A number: optional sign, digits with optional ``_`` separators (PEP 515), optional fraction,
# optional exponent; then optional spaces and the unit (anything left, checked by table lookup).
_QUANTITY = re.compile(
    r"""^\s*
    (?P<number>[+-]?(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d+)?)
    \s*(?P<unit>\S.*?)?\s*$""",
    re.VERBOSE,
)
_INTEGER = re.compile(r"^\s*\+?\d[\d_]*\s*$")

_KI, _MI, _GI, _TI = 2**10, 2**20, 2**30, 2**40

# kind -> (unit -> factor to SI base, SI base per internal unit, meaning of a bare number).
# Strings are converted as ``number * factor / scale`` in decimal arithmetic, rounded once.
_Table = tuple[Mapping[str, int | float], float, str]
_TABLES: dict[str, _Table] = {
    "size": (
        {
            "B": 1,
            "kB": 1e3,
            "KB": 1e3,
            "MB": 1e6,
            "GB": 1e9,
            "TB": 1e12,
            "KiB": _KI,
            "MiB": _MI,
            "GiB": _GI,
            "TiB": _TI,
        },
        1.0,
        "bytes",
    ),
    "time": (
        {"ns": 1, "us": 1e3, "µs": 1e3, "μs": 1e3, "ms": 1e6, "s": 1e9},
        1.0,
        "ns",
    ),
    "bandwidth": (
        {
            "B/s": 1,
            "kB/s": 1e3,
            "KB/s": 1e3,
            "MB/s": 1e6,
            "GB/s": 1e9,
            "TB/s": 1e12,
            "KiB/s": _KI,
            "MiB/s": _MI,
            "GiB/s": _GI,
            "TiB/s": _TI,
            "Mb/s": 1e6 / 8,
            "Mbps": 1e6 / 8,
            "Gb/s": 1e9 / 8,
            "Gbps": 1e9 / 8,
            "Tb/s": 1e12 / 8,
            "Tbps": 1e12 / 8,
        },
        1e9,
        "bytes/ns (= GB/s)",
    ),
    "FLOP rate": (
        {
            f"{prefix}{spelling}": factor
            for prefix, factor in (("", 1), ("G", 1e9), ("T", 1e12), ("P", 1e15))
            for spelling in ("FLOP/s", "FLOPS", "FLOPs")
        },
        1e9,
        "FLOP/ns (= TFLOP/s / 1000)",
    ),
    # Energy figures: the factors are already in the internal unit (W, pJ/B, pJ/FLOP), so
    # every factor is an exact integer and the conversions stay exact.
    "power": ({"W": 1, "kW": 1000}, 1.0, "W"),
    "energy per byte": (
        {"pJ/B": 1, "pJ/byte": 1, "pJ/bit": 8, "pJ/b": 8, "nJ/B": 1000, "nJ/bit": 8000},
        1.0,
        "pJ/B",
    ),
    "energy per FLOP": ({"pJ/FLOP": 1, "nJ/FLOP": 1000}, 1.0, "pJ/FLOP"),
}


def _fail(kind: str, value: object, where: str, reason: str = "") -> UnitError:
    units, _, bare = _TABLES[kind]
    prefix = f"{where}: " if where else ""
    why = f" ({reason})" if reason else ""
    allowed = ", ".join(units)
    return UnitError(
        f"{prefix}cannot read {short(value)} as a {kind}{why}; expected a number with one of "
        f"{allowed}; a bare number means {bare}"
    )


def _parse(kind: str, value: object, where: str) -> float:
    """Shared parser: ``value`` to the internal unit of ``kind``, or UnitError.

    Strings are converted in decimal arithmetic, so ``"66.9 TFLOP/s"`` is exactly 66900.0 and
    every result is the correctly rounded float of the exact value.
    """
    units, scale, _ = _TABLES[kind]
    if isinstance(value, bool):
        raise _fail(kind, value, where, "a YAML true/false is not a number")
    if isinstance(value, numbers.Real):
        result = float(value)  # a bare number is already in the internal unit
        if math.isnan(result) or math.isinf(result):
            raise _fail(kind, value, where, "must be finite")
        if result < 0:
            raise _fail(kind, value, where, "must not be negative")
        return result
    if not isinstance(value, str):
        raise _fail(kind, value, where, f"a {type(value).__name__}, not a number or string")
    if not value.strip():
        raise _fail(kind, value, where, "empty")
    match = _QUANTITY.match(value)
    if match is None:
        raise _fail(kind, value, where, "not of the form '<number> <unit>'")
    unit = match["unit"]
    if unit is not None and unit not in units:
        raise _fail(kind, value, where, f"unknown unit {unit!r}")
    if match["number"].startswith("-"):
        raise _fail(kind, value, where, "must not be negative")
    with decimal.localcontext() as context:
        context.prec = 60
        try:
            float(match["number"])  # stricter than Decimal about underscores: "1__0", "1_"
            number = Decimal(match["number"])
        except (ValueError, decimal.InvalidOperation):
            raise _fail(kind, value, where, "malformed number") from None
        if unit is not None:
            number = number * Decimal(units[unit]) / Decimal(scale)
        result = float(number)
    if not math.isfinite(result):
        raise _fail(kind, value, where, "too large")
    return result


def parse_size(value: str | float, where: str = "") -> float:
    """A size in bytes from ``"1.5 MiB"``, ``"80GB"``, ``"1_048_576"`` or a bare number of bytes.

    Decimal ``kB``/``KB``, ``MB``, ``GB``, ``TB`` and binary ``KiB``, ``MiB``, ``GiB``, ``TiB``.
    """
    return _parse("size", value, where)


def parse_time(value: str | float, where: str = "") -> float:
    """A duration in ns from ``"2 us"`` (also ``µs``), ``"1.5 ms"``, ``"3 s"`` or bare ns."""
    return _parse("time", value, where)


def parse_bandwidth(value: str | float, where: str = "") -> float:
    """A bandwidth in bytes/ns from ``"50 GB/s"``, ``"1 GiB/s"``, ``"400 Gb/s"`` / ``"400 Gbps"``
    (bits, divided by 8) or a bare number of bytes/ns (= GB/s)."""
    return _parse("bandwidth", value, where)


def parse_flops(value: str | float, where: str = "") -> float:
    """A FLOP rate in FLOP/ns from ``"312 TFLOP/s"`` (also ``TFLOPS``, ``TFLOPs``; prefixes
    none, G, T, P) or a bare number of FLOP/ns (1 TFLOP/s = 1000 FLOP/ns)."""
    return _parse("FLOP rate", value, where)


def parse_power(value: str | float, where: str = "") -> float:
    """A power in watts from ``"400 W"``, ``"1.2 kW"`` or a bare number of watts."""
    return _parse("power", value, where)


def parse_byte_energy(value: str | float, where: str = "") -> float:
    """An energy per byte moved, in pJ/B, from ``"3.9 pJ/bit"`` (x 8), ``"31.2 pJ/B"``,
    ``"nJ/B"``/``"nJ/bit"`` or a bare number of pJ/B."""
    return _parse("energy per byte", value, where)


def parse_flop_energy(value: str | float, where: str = "") -> float:
    """An energy per FLOP in pJ/FLOP from ``"1.28 pJ/FLOP"`` (or ``nJ/FLOP``) or a bare number
    of pJ/FLOP."""
    return _parse("energy per FLOP", value, where)


def parse_count(value: str | int, where: str = "") -> int:
    """A positive integer from ``4``, ``"4"``, ``"4_096"`` or an integral float such as ``8.0``."""
    prefix = f"{where}: " if where else ""
    expected = "expected a positive integer such as 4 or '4_096'"
    if isinstance(value, bool):
        raise UnitError(
            f"{prefix}cannot read {short(value)} as a count (a YAML true/false is not a "
            f"number); {expected}"
        )
    integral = isinstance(value, numbers.Integral) or (
        isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer()
    )
    if integral:
        count = int(value)
    elif isinstance(value, str) and _INTEGER.match(value):
        try:
            count = int(value.strip())
        except ValueError:
            raise UnitError(f"{prefix}cannot read {short(value)} as a count; {expected}") from None
    else:
        raise UnitError(f"{prefix}cannot read {short(value)} as a count; {expected}")
    if count <= 0:
        raise UnitError(
            f"{prefix}cannot read {short(value)} as a count (must be positive); {expected}"
        )
    return count


def _format(value: float, units: tuple[tuple[str, float], ...]) -> str:
    """``value`` (in the first unit) with 3 significant digits in the largest unit that keeps the
    mantissa at least 1; units are (name, size in the first unit), ascending."""
    if math.isnan(value) or math.isinf(value):
        return f"{value} {units[0][0]}"
    if value == 0:
        return f"0 {units[0][0]}"
    sign = "-" if value < 0 else ""
    magnitude = abs(value)
    index = 0
    while index + 1 < len(units) and magnitude >= units[index + 1][1]:
        index += 1
    while True:
        name, size = units[index]
        scaled = magnitude / size
        digits = 2 if scaled < 10 else 1 if scaled < 100 else 0
        text = f"{scaled:.{digits}f}"
        # Rounding can carry into the next unit (999.7 ns -> "1000 ns"); move up if it does.
        if index + 1 < len(units) and float(text) * size >= units[index + 1][1]:
            index += 1
            continue
        if index == 0 and float(text).is_integer() and magnitude.is_integer():
            text = f"{magnitude:.0f}"  # whole bytes or ns: "5 B" rather than "5.00 B"
        return f"{sign}{text} {name}"


_TIME_UNITS = (("ns", 1.0), ("us", 1e3), ("ms", 1e6), ("s", 1e9))
_SIZE_UNITS = (("B", 1.0), ("KiB", _KI), ("MiB", _MI), ("GiB", _GI), ("TiB", _TI))
_BANDWIDTH_UNITS = (("B/s", 1.0), ("kB/s", 1e3), ("MB/s", 1e6), ("GB/s", 1e9), ("TB/s", 1e12))


def format_time(ns: float) -> str:
    """A duration in ns for humans, 3 significant digits: ``"1.23 ms"``, ``"250 ns"``."""
    return _format(float(ns), _TIME_UNITS)


def seconds_unit(largest: float) -> tuple[float, str]:
    """``(factor, unit)`` that shows times up to ``largest`` seconds in readable numbers: s,
    ms, us or ns (0.000446 s reads as 446 us)."""
    for factor, unit in ((1.0, "s"), (1e3, "ms"), (1e6, "us")):
        if abs(largest) * factor >= 1.0:
            return factor, unit
    return 1e9, "ns"


def format_seconds(seconds: float) -> str:
    """Seconds in the unit that reads best, to 4 significant digits so that close values stay
    apart: ``"1.234 s"``, ``"126.1 us"``."""
    factor, unit = seconds_unit(seconds)
    return f"{seconds * factor:.4g} {unit}"


def format_size(nbytes: float) -> str:
    """A size in bytes for humans in binary units, 3 significant digits: ``"64.0 MiB"``."""
    return _format(float(nbytes), _SIZE_UNITS)


def format_bandwidth(bytes_per_ns: float) -> str:
    """A bandwidth in bytes/ns for humans in decimal units: ``"50.0 GB/s"``."""
    return _format(float(bytes_per_ns) * 1e9, _BANDWIDTH_UNITS)


_ENERGY_UNITS = (("pJ", 1.0), ("nJ", 1e3), ("uJ", 1e6), ("mJ", 1e9), ("J", 1e12), ("kJ", 1e15),
                 ("MJ", 1e18), ("GJ", 1e21))  # sizes in pJ
_POWER_UNITS = (("W", 1.0), ("kW", 1e3), ("MW", 1e6))


def format_energy(joules: float) -> str:
    """An energy in joules for humans, 3 significant digits: ``"1.23 kJ"``, ``"45.0 mJ"``."""
    value = float(joules)
    if value == 0 or not math.isfinite(value):
        return _format(value, (("J", 1.0),))
    return _format(value * 1e12, _ENERGY_UNITS)


def format_power(watts: float) -> str:
    """A power in watts for humans, 3 significant digits: ``"5.60 kW"``."""
    return _format(float(watts), _POWER_UNITS)
