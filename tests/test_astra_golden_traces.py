"""Every AstraSim reference case, run from its real files (Chakra traces, system.json,
network.yml, comm groups), against AstraSim's own per-rank results.

des in AstraSim-compatible mode must reproduce the congestion-aware backend (where it accepted
the case) and, with contention off, the congestion-unaware one: the required bar is 1% per rank
for the microbenchmark, overlap, send/recv, group and roofline cases and 5% for the traces STAGE
generated from LLM training; des reproduces all of them to the nanosecond, so the former are
held to that (any drift is a regression), the STAGE ones to the bar. Statistics (exposed
communication, GPU and communication time) are checked where AstraSim printed them.
"""

from __future__ import annotations

import json

import pytest
from helpers import ASTRA_REFERENCE, assert_finished_like_astra

from astra_bridge.inputs import load_inputs
from astra_bridge.report import from_result
from des.sim.engine import simulate

# ../astra holds the cases des reproduces; ../astra_next the ones added later (communicator
# groups on multi-dimensional networks, a custom collective): both are golden now
FOLDERS = [f for f in (ASTRA_REFERENCE, ASTRA_REFERENCE.parent / "astra_next") if f.is_dir()]
CASES = {p.name: p for f in FOLDERS for p in sorted(f.iterdir()) if p.is_dir()}
SLOW = {"ring1024_allreduce_1GiB"}  # the speed anchor: measured in bench/collectives.py
NOT_YET: dict[str, str] = {}  # case -> why des does not reproduce it yet (a strict xfail)

assert CASES, f"no reference cases under {FOLDERS}"


def expected_of(name: str) -> dict:
    return json.loads((CASES[name] / "expected.json").read_text())


def load(name: str):
    folder = CASES[name]
    groups = folder / "comm_group.json"
    return load_inputs(folder / "workload" / "workload", folder / "system.json",
                       folder / "network.yml", comm_groups=groups if groups.exists() else None,
                       remote_memory=folder / "remote_memory.json")


def cases_for(backend: str) -> list:
    out = []
    for name in sorted(CASES):
        if name in SLOW:
            continue
        if expected_of(name)["results"][backend]["all_ranks_finished"]:
            out.append(pytest.param(name, marks=pytest.mark.xfail(reason=NOT_YET[name],
                                                                  strict=True))
                       if name in NOT_YET else name)
    return out


def check(name: str, backend: str) -> None:
    expected = expected_of(name)["results"][backend]
    inputs = load(name)
    model = "aware" if backend == "congestion_aware" else "unaware"
    result = simulate(inputs.topology, inputs.graph, hardware=inputs.hardware,
                      options=inputs.options(model))
    ours = from_result(result)
    tolerance = 0.05 if name.startswith("stage_") else 1e-9
    assert_finished_like_astra({r: s.finished_ns for r, s in ours.items()}, expected,
                               rel=tolerance, label=name)
    for rank, want in expected["per_rank"].items():
        got = ours[int(rank)]
        if tolerance < 0.05:
            for field in ("exposed_comm_ns", "gpu_ns", "comm_ns"):
                if want[field] is not None:
                    assert getattr(got, field) == pytest.approx(want[field], rel=0.01,
                                                                abs=1.0), f"{name} {field}"


@pytest.mark.parametrize("name", cases_for("congestion_aware"))
def test_congestion_aware(name):
    check(name, "congestion_aware")


@pytest.mark.parametrize("name", cases_for("congestion_unaware"))
def test_congestion_unaware(name):
    check(name, "congestion_unaware")


@pytest.mark.parametrize("name", sorted(n for n in CASES if n not in SLOW))
def test_des_says_when_astra_aware_would_refuse(name):
    aware = expected_of(name)["results"]["congestion_aware"]
    note = load(name).aware_refusal
    if aware["exit_code"] not in (0, None) and not aware["per_rank"]:  # refused outright
        assert note is not None and "one-dimension topologies only" in note
    elif aware["all_ranks_finished"]:
        assert note is None
