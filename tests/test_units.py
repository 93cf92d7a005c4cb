"""Tests for des.core.units: exact conversions, strict refusals with clear messages, formatting."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from des.core.units import (
    UnitError,
    format_bandwidth,
    format_size,
    format_time,
    parse_bandwidth,
    parse_count,
    parse_flops,
    parse_size,
    parse_time,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 B", 1.0),
        ("1 kB", 1000.0),
        ("1 KB", 1000.0),
        ("1 MB", 1e6),
        ("80 GB", 80e9),
        ("2 TB", 2e12),
        ("1 KiB", 1024.0),
        ("1 MiB", 1048576.0),
        ("1.5 MiB", 1572864.0),
        ("1MiB", 1048576.0),
        ("80 GiB", 80 * 2**30),
        ("1 TiB", 2**40),
        ("1_048_576", 1048576.0),
        ("  64  KiB ", 65536.0),
        ("1e3 B", 1000.0),
        (4096, 4096.0),
        (0.5, 0.5),
        ("0 B", 0.0),
    ],
)
def test_parse_size_exact(text: str | float, expected: float) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7 ns", 7.0),
        ("2 us", 2000.0),
        ("2 µs", 2000.0),  # micro sign U+00B5
        ("2 μs", 2000.0),  # Greek mu U+03BC
        ("1.5 ms", 1.5e6),
        ("3 s", 3e9),
        ("0.25s", 2.5e8),
        (".5 ms", 5e5),
        ("1e3 us", 1e6),
        (250, 250.0),
        ("250", 250.0),
    ],
)
def test_parse_time_exact(text: str | float, expected: float) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("50 GB/s", 50.0),
        ("2039 GB/s", 2039.0),
        ("3.35 TB/s", 3350.0),
        ("25 MB/s", 0.025),
        ("1000 kB/s", 0.001),
        ("1000 KB/s", 0.001),
        ("1e9 B/s", 1.0),
        ("1 GiB/s", 1.073741824),
        ("1 MiB/s", 0.001048576),
        ("1 KiB/s", 1.024e-6),
        ("400 Gb/s", 50.0),
        ("400 Gbps", 50.0),
        ("100 Gbps", 12.5),
        ("1.6 Tb/s", 200.0),
        ("8 Mb/s", 0.001),
        (50, 50.0),
        ("50", 50.0),
    ],
)
def test_parse_bandwidth_exact(text: str | float, expected: float) -> None:
    assert parse_bandwidth(text) == expected


def test_bandwidth_byte_versus_bit_is_case_sensitive() -> None:
    assert parse_bandwidth("8 GB/s") == 8.0
    assert parse_bandwidth("8 Gb/s") == 1.0
    with pytest.raises(UnitError):
        parse_bandwidth("8 gb/s")
    with pytest.raises(UnitError):
        parse_size("8 Gb")  # a bit count is not a size in bytes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("312 TFLOP/s", 312000.0),
        ("312 TFLOPS", 312000.0),
        ("312 TFLOPs", 312000.0),
        ("19.5 TFLOP/s", 19500.0),
        ("66.9 TFLOP/s", 66900.0),  # exact: decimal arithmetic, not 66900.00000000001
        ("989.4 TFLOP/s", 989400.0),
        ("1978.9 TFLOPS", 1978900.0),
        ("500 GFLOP/s", 500.0),
        ("2 PFLOP/s", 2e6),
        ("1e9 FLOP/s", 1.0),
        (312000, 312000.0),
    ],
)
def test_parse_flops_exact(text: str | float, expected: float) -> None:
    assert parse_flops(text) == expected


_PARSERS: dict[str, tuple[Callable[..., float], str]] = {
    "size": (parse_size, "KiB"),
    "time": (parse_time, "us"),
    "bandwidth": (parse_bandwidth, "Gbps"),
    "flops": (parse_flops, "TFLOP/s"),
}

_BAD_VALUES = [
    "50 GBs",
    "-5 GB/s",
    "-1 MiB",
    "-0 s",
    "-3",
    -1,
    -0.5,
    float("nan"),
    float("inf"),
    float("-inf"),
    "nan",
    "inf",
    "1e400 GB/s",
    True,
    False,
    "",
    "   ",
    None,
    [1, 2],
    "GB/s",
    "1__0",
    "fifty",
    "5 5 ns",
]


@pytest.mark.parametrize("kind", sorted(_PARSERS))
@pytest.mark.parametrize("bad", _BAD_VALUES, ids=repr)
def test_bad_values_are_refused_with_key_value_and_units(kind: str, bad: object) -> None:
    parser, a_unit = _PARSERS[kind]
    with pytest.raises(UnitError) as info:
        parser(bad, where="network.links.bandwidth")
    message = str(info.value)
    assert message.startswith("network.links.bandwidth: ")
    assert repr(bad) in message
    assert a_unit in message  # the allowed units are listed
    assert isinstance(info.value, ValueError)


def test_error_message_example() -> None:
    with pytest.raises(UnitError) as info:
        parse_bandwidth("50 GBs", where="network.bandwidth")
    message = str(info.value)
    assert message.startswith("network.bandwidth: cannot read '50 GBs' as a bandwidth")
    for unit in ("B/s", "kB/s", "MB/s", "GB/s", "TB/s", "KiB/s", "MiB/s", "GiB/s", "Gb/s", "Gbps"):
        assert unit in message


def test_error_without_where_has_no_prefix() -> None:
    with pytest.raises(UnitError) as info:
        parse_time("3 hours")
    assert str(info.value).startswith("cannot read '3 hours' as a time")


def test_unit_of_another_kind_is_refused() -> None:
    with pytest.raises(UnitError, match="unknown unit 'GB/s'"):
        parse_size("1 GB/s", where="x")
    with pytest.raises(UnitError):
        parse_time("1 MiB")
    with pytest.raises(UnitError):
        parse_flops("1 GB/s")


@pytest.mark.parametrize(
    ("value", "expected"),
    [(4, 4), ("4", 4), ("4_096", 4096), (" 8 ", 8), (8.0, 8), ("+2", 2)],
)
def test_parse_count(value: object, expected: int) -> None:
    result = parse_count(value)  # type: ignore[arg-type]
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize(
    "bad", [0, -1, "0", "-4", 4.5, "4.5", "4e3", True, False, "", "four", None, float("nan")]
)
def test_parse_count_refuses(bad: object) -> None:
    with pytest.raises(UnitError) as info:
        parse_count(bad, where="workload.num_layers")  # type: ignore[arg-type]
    message = str(info.value)
    assert message.startswith("workload.num_layers: ")
    assert repr(bad) in message
    assert "positive integer" in message


@pytest.mark.parametrize(
    ("ns", "expected"),
    [
        (0, "0 ns"),
        (5, "5 ns"),
        (250, "250 ns"),
        (1234, "1.23 us"),
        (999.7, "1.00 us"),  # rounding carries into the next unit
        (1.234e6, "1.23 ms"),
        (12.5e6, "12.5 ms"),
        (3e9, "3.00 s"),
        (2.5e12, "2500 s"),
        (-1.234e6, "-1.23 ms"),
    ],
)
def test_format_time(ns: float, expected: str) -> None:
    assert format_time(ns) == expected


@pytest.mark.parametrize(
    ("nbytes", "expected"),
    [
        (0, "0 B"),
        (512, "512 B"),
        (1536, "1.50 KiB"),
        (64 * 2**20, "64.0 MiB"),
        (80 * 2**30, "80.0 GiB"),
        (1023.999 * 1024, "1.00 MiB"),
        (3 * 2**40, "3.00 TiB"),
    ],
)
def test_format_size(nbytes: float, expected: str) -> None:
    assert format_size(nbytes) == expected


@pytest.mark.parametrize(
    ("bw", "expected"),
    [(50, "50.0 GB/s"), (2039, "2.04 TB/s"), (0.025, "25.0 MB/s"), (0.0001, "100 kB/s")],
)
def test_format_bandwidth(bw: float, expected: str) -> None:
    assert format_bandwidth(bw) == expected


_ROUND_TRIPS = [
    (format_time, parse_time, 1.0),
    (format_size, parse_size, 1.0),
    (format_bandwidth, parse_bandwidth, 1e-9),
]


@given(mantissa=st.floats(min_value=1.0, max_value=1e15, allow_nan=False))
def test_format_then_parse_round_trips_to_three_significant_digits(mantissa: float) -> None:
    for fmt, parse, smallest in _ROUND_TRIPS:
        value = mantissa * smallest
        back = parse(fmt(value))
        assert math.isclose(back, value, rel_tol=5e-3), (fmt(value), value, back)
