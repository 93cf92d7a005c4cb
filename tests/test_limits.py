"""Issue 14, part C: every input surface is bounded (des.core.limits) and sane.

A corpus of nasty inputs (scenarios, sweeps, topology specs; ``tests/nasty/limits/`` holds the
file-shaped ones) must each give a SchemaError naming what is wrong; a few go through the CLI in
a subprocess to prove exit code 2 (a timeout guards against a hang; speed is measured in bench/,
not asserted). Hypothesis fuzzes the topology spec parser and the sweep constraint interpreter:
any input gives a result or a SchemaError, never another exception.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from des.app.config import scenario_from_dict
from des.app.sweep_expr import check_expression, evaluate
from des.app.sweep_load import sweep_from_dict
from des.core import limits
from des.core.limits import LimitError
from des.core.schema import SchemaError
from topologies.spec import parse_spec

ROOT = Path(__file__).resolve().parents[1]
NASTY = Path(__file__).parent / "nasty" / "limits"

OP = {"collective": "all_reduce", "size": "1 MiB"}
RING = {"kind": "ring", "npus": 4, "bandwidth": "50 GB/s", "latency": "500 ns"}


def scenario(**parts: object) -> dict:
    """A small valid scenario with ``parts`` replacing (or adding) top-level sections."""
    base: dict = {"topology": dict(RING), "workload": {"kind": "collectives", "ops": [OP]}}
    base.update(parts)
    return base


def sweep(**parts: object) -> dict:
    """A small valid sweep with ``parts`` replacing (or adding) keys."""
    base: dict = {"base": scenario(), "axes": {"network.chunks": [1, 2]}}
    base.update(parts)
    return base


# ---------------------------------------------------------------------- the limits module
def test_check_names_limit_value_default_and_how_to_raise() -> None:
    with pytest.raises(LimitError) as err:
        limits.check("max_npus", 10**9, "topology.npus")
    text = str(err.value)
    for piece in ("topology.npus", "1,000,000,000", "max_npus", "65,536", "default",
                  "limits: {max_npus: N}", "DES_LIMITS"):
        assert piece in text
    assert isinstance(err.value, SchemaError)


def test_lower_bounds_and_huge_values_are_reported() -> None:
    with pytest.raises(LimitError, match=r"is below .*min_bandwidth"):
        limits.check("min_bandwidth", 1e-300)
    with pytest.raises(LimitError, match=r"1e\+200"):
        limits.check("max_model_dim", 10**200)
    with pytest.raises(LimitError, match=r"about 10\^2000"):
        limits.check("max_model_dim", 10**2000)
    limits.check("min_bandwidth", 50.0)


def test_raised_by_environment_and_by_using(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(limits.ENV, "max_npus=1e12, max_links=5_000_000")
    assert limits.get("max_npus") == 10**12
    assert limits.current()["max_links"] == 5_000_000
    with limits.using({"max_npus": 7}):
        assert limits.get("max_npus") == 7
        with pytest.raises(LimitError):
            limits.check("max_npus", 8)
    assert limits.get("max_npus") == 10**12


@pytest.mark.parametrize("bad", ["max_npus", "max_npus=lots", "max_nps=3", "max_npus=-1",
                                 "max_npus=inf"])
def test_bad_environment_is_a_schema_error(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv(limits.ENV, bad)
    with pytest.raises(LimitError, match="DES_LIMITS"):
        limits.current()


def test_scenario_limits_section_raises_and_is_checked() -> None:
    with pytest.raises(LimitError, match="max_repeat"):
        scenario_from_dict(scenario(workload={"kind": "collectives",
                                              "ops": [{**OP, "repeat": 200_000}]}))
    with pytest.raises(SchemaError, match=r"max_repat.*did you mean 'max_repeat'"):
        scenario_from_dict(scenario(limits={"max_repat": 3}))
    with pytest.raises(LimitError, match="max_npus"):
        scenario_from_dict(scenario(limits={"max_npus": 2}))
    assert limits.get("max_npus") == limits.LIMITS["max_npus"].default  # not leaked


# ---------------------------------------------------------------------- nasty corpus
TOPOLOGY_SPECS = [
    ("ring:1000000000", "max_npus"),
    ("fc:100000", "max_npus"),
    ("fc:5000", "max_links"),
    ("fattree:k=1e9", "max_npus"),
    ("fattree:k=" + "9" * 80, "max_npus"),
    ("hier:ring1000,fc1000", "max_npus"),
    ("leafspine:leaves=100000,hosts=100000,spines=2", "max_npus"),
    ("superpod:nodes=1000000000", "max_npus"),
    ("torus3d:1000x1000x1000", "max_npus"),
    ("hier:fc8@.", "cannot read dimension"),
    ("hier:fc8@1e400", "bandwidth"),
    ("hier:fc8@1e-20,ring2", "min_bandwidth"),
    ("hier:fc8@0", "bandwidth"),
    ("ring:2.5", "whole number"),
    ("fattree:k=4.5", "integer"),
    ("fattree:k=nan", "integer"),
    ("ring:8:maybe", "flag"),
    ("nope:3", "cannot read topology spec"),
]


@pytest.mark.parametrize(("spec", "match"), TOPOLOGY_SPECS)
def test_nasty_topology_specs(spec: str, match: str) -> None:
    with pytest.raises(SchemaError, match=match):
        parse_spec(spec)


SCENARIOS = [
    # bounded work
    ("npus", scenario(topology={**RING, "npus": 10**9}), "max_npus"),
    ("fattree-k", scenario(topology={"kind": "fat_tree", "k": 10**9,
                                     "bandwidth": "50 GB/s"}), "max_npus"),
    ("fc-links", scenario(topology={"kind": "fully_connected", "npus": 5000,
                                    "bandwidth": "50 GB/s"}), "max_links"),
    ("chunks", scenario(network={"chunks": 100_000_000}), "max_chunks"),
    ("chunk-size", scenario(network={"chunk_size": "1 B"}, workload={
        "kind": "collectives", "ops": [{**OP, "size": "1 GiB"}]}), "max_chunks"),
    ("repeat", scenario(workload={"kind": "collectives",
                                  "ops": [{**OP, "repeat": 10_000_000}]}), "max_repeat"),
    ("graph-nodes", scenario(workload={"kind": "collectives", "ops": [
        {"collective": "all_reduce", "repeat": 100_000, "sizes": [f"{i + 1} MiB" for i in
                                                                  range(64)]}]}),
     "max_graph_nodes"),
    ("dp-layers", scenario(workload={"kind": "data_parallel_step", "layers": 10**9,
                                     "params_per_layer": 1e6, "tokens_per_rank": 1024}),
     "max_graph_nodes"),
    ("llm-batches", scenario(hardware="A100-SXM4-80GB", workload={
        "kind": "llm_training", "model": "gpt3-175b", "seq": 2048,
        "parallel": {"tp": 4, "micro_batch": 1, "global_batch": 10_000_000}}),
     "max_graph_nodes"),
    ("wide-model", scenario(hardware="A100-SXM4-80GB", workload={
        "kind": "llm_training", "seq": 128, "parallel": {"tp": 4},
        "model": {"name": "w", "layers": 2, "hidden": 10**200, "heads": 8, "ffn": 64,
                  "vocab": 1000, "seq": 128, "activation": "gelu"}}), "max_model_dim"),
    ("gemm-shape", scenario(workload={"kind": "gemm", "m": 10**30, "n": 8, "k": 8,
                                      "shard": "column"}), "max_model_dim"),
    # physics
    ("tiny-bandwidth", scenario(topology={**RING, "bandwidth": "1e-300 B/s"}),
     "min_bandwidth"),
    ("zero-bandwidth", scenario(topology={**RING, "bandwidth": 0}), "bandwidth"),
    ("huge-latency", scenario(topology={**RING, "latency": 1e300}), "max_latency"),
    ("inf-latency", scenario(topology={**RING, "latency": float("inf")}), "finite"),
    ("switch-latency", scenario(topology={"kind": "switch", "npus": 4, "bandwidth": 50,
                                          "switch_latency": 1e300}), "max_latency"),
    ("straggler-inf", scenario(stragglers=[{"rank": 1, "speed": float("inf")}]), "finite"),
    ("straggler-nan", scenario(stragglers=[{"rank": 1, "speed": float("nan")}]), "finite"),
    ("reduction", scenario(network={"reduction": "1e-300 B/s"}), "min_bandwidth"),
    ("endpoint-delay", scenario(network={"endpoint_delay": 1e300}), "max_latency"),
    ("packet", scenario(network={"packet_size": 0.001}), "at least 1 byte"),
    ("derate", scenario(faults={"links": [{"link": [0, 1], "derate": 1e-300}]}),
     "min_bandwidth"),
    ("timed-derate", scenario(faults={"links": [{"link": [0, 1], "derate": 1e-300,
                                                 "at": "1 us"}]}), "min_bandwidth"),
    ("fractional-npus", scenario(topology={**RING, "npus": 4.5}), "integer"),
    ("integral-float-npus", scenario(topology={**RING, "npus": 4.0}), "integer"),
    ("fractional-chunks", scenario(network={"chunks": 2.5}), "integer"),
    ("fractional-repeat", scenario(workload={"kind": "collectives",
                                             "ops": [{**OP, "repeat": 1.5}]}), "integer"),
    ("fractional-rank", scenario(stragglers=[{"rank": 1.5, "speed": 0.5}]), "integer"),
    ("fractional-seed", scenario(faults={"random": {"seed": 1.5, "rate": 0.1}}), "integer"),
    ("dim-algorithms", scenario(network={"dim_algorithms": ["teleport", "ring"]}),
     "teleport.*expected one of"),
    ("algorithm", scenario(network={"algorithms": {"all_reduce": "teleport"}}), "teleport"),
    ("transport", scenario(network={"transport": "pigeon"}), "pigeon"),
    ("model", scenario(network={"model": "astra"}), "astra"),
    ("zero-size", scenario(workload={"kind": "collectives",
                                     "ops": [{**OP, "size": 0}]}), "more than 0 bytes"),
    ("zero-sizes", scenario(workload={"kind": "collectives", "ops": [
        {"collective": "all_gather", "sizes": ["1 MiB", 0]}]}), "more than 0 bytes"),
    ("size-range-zero", scenario(workload={"kind": "collectives", "ops": [
        {"collective": "all_gather", "size_range": {"from": 0, "to": "1 MiB"}}]}), "0 <"),
    ("bad-limits", scenario(limits={"max_npus": -3}), "limits.max_npus"),
]


@pytest.mark.parametrize(("data", "match"), [pytest.param(d, m, id=i) for i, d, m in SCENARIOS])
def test_nasty_scenarios(data: dict, match: str) -> None:
    with pytest.raises(SchemaError, match=match):
        scenario_from_dict(data)


def test_barrier_may_have_size_zero() -> None:
    built = scenario_from_dict(scenario(workload={"kind": "collectives", "ops": [
        {"collective": "barrier", "size": 0}]}))
    assert built.topology.num_npus == 4


def test_limits_section_lets_a_big_run_through() -> None:
    built = scenario_from_dict(scenario(limits={"max_repeat": 200_000, "max_graph_nodes": 10**7},
                                        workload={"kind": "collectives",
                                                  "ops": [{**OP, "repeat": 150_000}]}))
    assert len(built.graph) == 4 * 150_000


def test_many_messages_warn(caplog: pytest.LogCaptureFixture) -> None:
    with limits.using({"warn_messages": 10}):
        scenario_from_dict(scenario())
    assert "may take a long time" in caplog.text


SWEEPS = [
    ("million-points", sweep(axes={f"a.k{i}": list(range(10)) for i in range(6)}),
     "max_sweep_points"),
    ("billion-points", sweep(axes={f"a.k{i}": list(range(1000)) for i in range(3)}),
     "max_sweep_points"),
    ("name-dotdot", sweep(name="../../x"), "cannot name the results folder"),
    ("name-absolute", sweep(name="/tmp/x"), "cannot name the results folder"),
    ("name-separator", sweep(name="a/b"), "cannot name the results folder"),
    ("name-backslash", sweep(name="a\\b"), "cannot name the results folder"),
    ("name-dot", sweep(name=".."), "cannot name the results folder"),
    ("groups-list", sweep(axes={"system": ["a"]}, groups={"system": ["a"]}), "mapping"),
    ("groups-scalar", sweep(axes={"system": ["a"]}, groups={"system": {"a": 5}}), "mapping"),
    ("groups-key", sweep(axes={"system": ["a"]}, groups={"system": {"a": {5: 1}}}),
     "scenario key"),
    ("group-value-list", sweep(axes={"system": [[1], "a"]},
                               groups={"system": {"a": {"network.chunks": 2}}}),
     "must name a group"),
    ("axis-key", sweep(axes={"a..b": [1]}), "scenario key"),
    ("expr-chars", sweep(constraints=["+".join(["npus"] * 100_000)]),
     "max_expression_chars"),
    ("expr-nodes", sweep(constraints=[" < ".join(["1"] * 400)]), "max_expression_nodes"),
    ("expr-terms", sweep(constraints=["+".join(["1"] * 600)]), "max_expression_depth"),
    ("expr-depth", sweep(constraints=["(" * 60 + "1" + ")" * 60 + "> 0 and " + "-" * 80 + "1"]),
     "max_expression_depth|nested"),
    ("expr-parens", sweep(constraints=["(" * 900 + "1" + ")" * 900]), "nested|cannot read"),
    ("expr-unary", sweep(constraints=["-" * 1900 + "1"]), "nested|depth"),
    ("expr-call", sweep(constraints=["__import__('os').system('true')"]), "not allowed"),
    ("expr-limits", sweep(limits={"max_expression_chars": 5}, constraints=["npus > 1"]),
     "max_expression_chars"),
]


@pytest.mark.parametrize(("data", "match"), [pytest.param(d, m, id=i) for i, d, m in SWEEPS])
def test_nasty_sweeps(data: dict, match: str) -> None:
    with pytest.raises(SchemaError, match=match):
        sweep_from_dict(data)


EXPRESSIONS = [
    ("((9**256)**256)**256", "max_expression_bits"),
    ("(2**4000) * (2**4000)", "max_expression_bits"),
    ("10**10**10", "max_expression_bits"),
    ("'a' * 10**10", "strings may only"),
    ("10**10 * 'a'", "strings may only"),
    ("'%999999999d' % 1", "strings may only"),
    ("1 / 0", "ZeroDivisionError"),
    ("2.0 ** 100000", "OverflowError"),
    ("1e308 * 10", "not a finite number"),
    ("(-8) ** 0.5 > 1", "not a real number"),
    ("-'a'", "needs a number"),
    ("'a' < 1", "TypeError"),
    ("nope > 1", "unknown name"),
    ("(2**4096) / 3", "OverflowError|max_expression_bits"),
]


@pytest.mark.parametrize(("text", "match"), EXPRESSIONS)
def test_nasty_expressions(text: str, match: str) -> None:
    with pytest.raises(SchemaError, match=match):
        evaluate(check_expression(text, "constraint"), {"npus": 8, "s": "x"})


def test_sweep_limits_reach_points_and_the_run(tmp_path: Path) -> None:
    loaded = sweep_from_dict(sweep(limits={"max_repeat": 7}))
    assert loaded.base["limits"] == {"max_repeat": 7}
    assert loaded.count() == 2


def test_sweep_files_in_the_corpus_are_refused() -> None:
    from des.app.sweep_load import load_sweep

    files = sorted(NASTY.glob("sweep_*.yaml"))
    assert files
    for path in files:
        with pytest.raises(SchemaError):
            load_sweep(path)


def test_topology_files_in_the_corpus_are_refused() -> None:
    files = sorted(NASTY.glob("topo_*"))
    assert files
    for path in files:
        with pytest.raises(SchemaError):
            built = parse_spec(str(path))
            from topologies.analysis import disconnected

            if disconnected(built):
                raise SchemaError(disconnected(built))


# ---------------------------------------------------------------------- through the CLI
def _des(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop(limits.ENV, None)
    return subprocess.run([sys.executable, "-m", "des", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("args", "match"), [
    (("topo", "show", "ring:1000000000"), "max_npus"),
    (("topo", "show", "fattree:k=1e9"), "max_npus"),
    (("topo", "show", "hier:fc8@."), "cannot read dimension"),
    (("simulate", str(NASTY / "scenario_chunk_size.yaml")), "max_chunks"),
    (("simulate", str(NASTY / "scenario_repeat.yaml")), "max_repeat"),
    (("simulate", str(NASTY / "scenario_bandwidth.yaml")), "min_bandwidth"),
    (("sweep", str(NASTY / "sweep_points.yaml")), "max_sweep_points"),
    (("sweep", str(NASTY / "sweep_name.yaml")), "cannot name"),
    (("sweep", str(NASTY / "points_power.yaml")), "max_expression_bits"),
])
def test_cli_refuses_with_exit_2(tmp_path: Path, args: tuple[str, ...], match: str) -> None:
    done = _des(*args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert match in " ".join(done.stderr.split())
    assert not (tmp_path.parent / "x").exists()


def test_cli_png_folder_is_refused_not_written_beside(tmp_path: Path) -> None:
    folder = tmp_path / "plots"
    folder.mkdir()
    done = _des("topo", "show", "ring:4", "--png", str(folder), cwd=tmp_path)
    assert done.returncode == 2
    assert "is a directory" in " ".join(done.stderr.split())
    assert not (tmp_path / "plots.png").exists()


def test_cli_raises_a_limit_from_the_environment(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), limits.ENV: "max_npus=70000"}
    done = subprocess.run([sys.executable, "-m", "des", "topo", "show", "ring:66000",
                           "--json"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------------- property tests
_SPEC_PIECES = st.sampled_from([
    "ring", "fc", "switch", "mesh2d", "torus2d", "torus3d", "fattree", "leafspine",
    "superpod", "hier", "fully_connected", "x", "", ":", ",", "=", "@", "x", ".", "-", "e",
    "k", "nodes", "leaves", "hosts", "spines", "oversub", "seed", "uni", "bi", "nan", "inf",
    "0", "1", "2", "3", "4", "8", "16", "1e9", "1e400", "99999999999", "0.5", " ", "\x00",
    ".yaml", ".graphml", "/", "ring4", "fc8", "switch16", "@100", "@.", "a" * 300])


@settings(max_examples=int(os.environ.get("DES_FUZZ_EXAMPLES", "200")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.one_of(st.lists(_SPEC_PIECES, max_size=10).map("".join), st.text(max_size=40)))
def test_fuzz_topology_spec(spec: str) -> None:
    try:
        topo = parse_spec(spec)
    except SchemaError:
        pass
    else:
        assert 1 <= topo.num_npus <= limits.get("max_npus")


_EXPR_PIECES = st.sampled_from([
    "npus", "s", "a.b", "1", "2", "9", "256", "10", "0", "0.5", "1e308", "-", "+", "*", "**",
    "/", "//", "%", "(", ")", " and ", " or ", " not ", "==", "<", ">=", "!=", "'a'", "'%d'",
    " ", ".", "[", "]", "lambda", "x", "__class__", ",", "if", "else", "j"])


_ATOMS = st.one_of(st.integers(-(10**30), 10**30).map(str), st.sampled_from(
    ["npus", "s", "a.b", "'a'", "'%s'", "0.5", "1e308", "-1e308", "0", "True", "None"]),
    st.floats(allow_nan=False).map(repr))
_GRAMMAR = st.recursive(_ATOMS, lambda inner: st.one_of(
    st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "//", "%", "**", "==", "<", ">=",
                                      " and ", " or "]), inner).map(
        lambda t: f"({t[0]}{t[1]}{t[2]})"),
    st.tuples(st.sampled_from(["-", "+", "not "]), inner).map(lambda t: f"{t[0]}({t[1]})")),
    max_leaves=12)


@settings(max_examples=int(os.environ.get("DES_FUZZ_EXAMPLES", "200")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_GRAMMAR, st.lists(_EXPR_PIECES, max_size=30).map("".join),
                 st.text(max_size=60)))
def test_fuzz_constraint_interpreter(text: str) -> None:
    with contextlib.suppress(SchemaError):
        evaluate(check_expression(text, "constraint"), {"npus": 8, "s": "x", "a.b": 3})


_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 10), st.integers(), st.floats(),
    st.sampled_from(["1 MiB", "1 B", "0 B", "-1 GB/s", "50 GB/s", "1e-300 B/s", "1e300 s",
                     "500 ns", "ring", "teleport", "auto", "hbm", "off", "cut_through",
                     "rendezvous", "0-1", "1-1", "a-b", "", "nan"]),
    st.lists(st.one_of(st.integers(-1, 5), st.sampled_from(["ring", "direct", "x"])),
             max_size=3))
_NETWORK_KEYS = ["model", "transport", "packet_size", "contention", "comm_streams", "chunks",
                 "chunk_size", "chunks_in_flight", "algorithms", "dim_algorithms", "window",
                 "p2p", "endpoint_delay", "reduction"]


@settings(max_examples=int(os.environ.get("DES_FUZZ_EXAMPLES", "150")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(network=st.dictionaries(st.sampled_from(_NETWORK_KEYS), _VALUES, max_size=4),
       stragglers=st.one_of(st.none(), _VALUES, st.lists(st.dictionaries(
           st.sampled_from(["rank", "speed", "x"]), _VALUES, max_size=2), max_size=2)),
       faults=st.dictionaries(st.sampled_from(["links", "random"]), st.one_of(
           _VALUES, st.lists(st.dictionaries(st.sampled_from(
               ["link", "down", "derate", "at", "until", "one_way"]), _VALUES, max_size=4),
               max_size=2),
           st.dictionaries(st.sampled_from(["seed", "rate", "count", "down", "derate"]),
                           _VALUES, max_size=3)), max_size=2))
def test_fuzz_scenario_sections(network: dict, stragglers: object, faults: dict) -> None:
    with contextlib.suppress(SchemaError):
        scenario_from_dict(scenario(network=network, stragglers=stragglers, faults=faults))
