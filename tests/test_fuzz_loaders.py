"""Property-based fuzzing of the scenario and sweep loaders: random nested structures and
mutated valid files give a scenario (or a sweep) or a SchemaError -- the CLI's exit 2 --
never another exception. Numbers stay small: limits on sizes and counts (des.core.limits) are
tested where they are defined; here the point is the shape of the input."""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from des.app.config import scenario_from_dict
from des.app.sweep_expr import check_expression, evaluate
from des.app.sweep_load import sweep_from_dict
from des.core.paths import bundled
from des.core.schema import SchemaError
from des.core.yaml_safe import load_yaml, read_text

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

#: Bundled scenarios that build in milliseconds (the LLM ones build 10^5-node graphs).
SMALL = ["allreduce_sizes_ring8", "dp8_ring_overlap", "fattree_k4_alltoall", "gemm_tp8",
         "switch16_straggler", "torus4x4_link_failure"]
BASES = {name: load_yaml(read_text(bundled("scenarios")[name]), name) for name in SMALL}

WORDS = ["50 GB/s", "1 MiB", "500 ns", "0 B", "-1 GB/s", "1e400 B", "nan", "inf us", "1 ms",
         "ring", "switch", "torus2d", "custom", "all_reduce", "all_to_all", "auto", "direct",
         "A100-SXM4-80GB", "collectives", "data_parallel_step", "gemm", "cut_through",
         "[/bold]", "[red]x", "{pg_name: }", "", " ", "0", "1", "true", "x/y.yaml", "k",
         "npus", "size", "group", "rank", "link", "at", "until", "down", "derate"]

leaves = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 20),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.text(max_size=8), st.sampled_from(WORDS))
keys = st.one_of(st.sampled_from(WORDS), st.text(max_size=6), st.integers(-2, 5))
values = st.recursive(
    leaves, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                    st.dictionaries(keys, inner, max_size=4)),
    max_leaves=12)


def build(data: Any) -> None:
    """Load a scenario mapping: success or a SchemaError, nothing else."""
    with contextlib.suppress(SchemaError):
        scenario_from_dict(data, source="fuzz", base=Path.cwd())


def _slots(doc: Any, out: list) -> list:
    """Every (container, key) holding a value in ``doc``, depth first."""
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) \
        if isinstance(doc, list) else ()
    for key, value in list(items):
        out.append((doc, key))
        _slots(value, out)
    return out


@st.composite
def mutated(draw: st.DrawFn, bases: dict[str, Any]) -> Any:
    """A valid document with one to three random edits: replace, delete or add a value."""
    doc = copy.deepcopy(bases[draw(st.sampled_from(sorted(bases)))])
    for _ in range(draw(st.integers(1, 3))):
        slots = _slots(doc, [])
        if not slots:
            break
        container, key = draw(st.sampled_from(slots))
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if action == "replace":
            container[key] = draw(values)
        elif action == "delete":
            del container[key]
        elif isinstance(container, dict):
            container[draw(keys)] = draw(values)
        else:
            container.append(draw(values))
    return doc


@FUZZ
@given(values)
def test_random_structures_load_or_fail_cleanly(data: Any) -> None:
    build(data)


@FUZZ
@given(st.dictionaries(st.sampled_from(["name", "topology", "hardware", "network",
                                        "stragglers", "faults", "workload", "outputs"]),
                       values, max_size=6))
def test_random_scenario_shaped_mappings_load_or_fail_cleanly(data: dict) -> None:
    build(data)


@FUZZ
@given(mutated(BASES))
def test_mutated_bundled_scenarios_load_or_fail_cleanly(data: Any) -> None:
    build(data)


# ---------------------------------------------------------------------- sweeps
SWEEP_BASE = copy.deepcopy(BASES["allreduce_sizes_ring8"])
SWEEPS = {
    "plain": {"base": SWEEP_BASE, "axes": {"network.chunks": [1, 2],
                                           "topology.npus": [4, 8]},
              "constraints": ["npus >= 4", "chunks * 2 <= 8"],
              "derive": {"network.comm_streams": "chunks"}},
    "groups": {"base": "allreduce_sizes_ring8", "axes": {"fabric": ["a", "b"]},
               "groups": {"fabric": {"a": {"topology.kind": "ring"},
                                     "b": {"topology.kind": "switch"}}},
               "memory_limit": "80 GB", "timeout": "1 h", "backend": "analytical"},
}
EXPRESSIONS = ["npus", "npus * 2", "chunks ** 300", "1 / 0", "'a' * 3", "not npus",
               "npus > 4 and chunks < 2", "x.y.z", "__import__('os')", "(lambda: 1)()",
               "npus ** 256 ** 2", "[1]", "1 if npus else 2", "-npus % 0", "'[/x]'",
               "'x' * 10 ** 9", "(9 ** 256) ** 256", "1" + "+1" * 500, "-" * 500 + "1"]


def sweep_values() -> st.SearchStrategy[Any]:
    return st.one_of(values, st.sampled_from(EXPRESSIONS),
                     st.lists(st.sampled_from(EXPRESSIONS), max_size=3))


def run_sweep_loader(data: Any) -> None:
    """Validate a sweep, list its points and screen each (derived values, constraints), then
    build the first valid point: success or a SchemaError, nothing else."""
    with contextlib.suppress(SchemaError):
        sweep = sweep_from_dict(data, "fuzz", Path.cwd())
        for point in sweep.points()[:4]:
            screened, reason = sweep.screen(point)
            if not reason:
                build(screened.scenario)
                break


@FUZZ
@given(st.dictionaries(st.sampled_from(["name", "base", "axes", "groups", "constraints",
                                        "derive", "memory_limit", "backend", "timeout", "x"]),
                       sweep_values(), max_size=6))
def test_random_sweeps_load_or_fail_cleanly(data: dict) -> None:
    run_sweep_loader(data)


@st.composite
def mutated_sweep(draw: st.DrawFn) -> Any:
    doc = draw(mutated(SWEEPS))
    if draw(st.booleans()) and isinstance(doc, dict):  # an expression somewhere
        doc.setdefault("constraints", [])
        if isinstance(doc["constraints"], list):
            doc["constraints"].append(draw(st.sampled_from(EXPRESSIONS)))
    return doc


@FUZZ
@given(mutated_sweep())
def test_mutated_sweeps_load_or_fail_cleanly(data: Any) -> None:
    run_sweep_loader(data)


@pytest.mark.parametrize("text", ["'x' * 10 ** 9", "(9 ** 256) ** 256 ** 256", "1" + "+1" * 500,
                                  "(" * 300 + "1" + ")" * 300, "x" * 5000])
def test_expressions_that_would_exhaust_memory_or_recursion_are_refused(text: str) -> None:
    with pytest.raises(SchemaError):  # a SweepError, or the limit it breaks (LimitError)
        evaluate(check_expression(text, "constraints[0]"), {"npus": 8})
