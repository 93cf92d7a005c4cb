"""Helpers several test files share: where the checkout and AstraSim's reference cases are,
running ``python -m des`` in a subprocess, small graphs, route and fault shorthands, the
step-program contract of collective plans, and per-rank comparison with AstraSim.

Test files import these as ``from helpers import ...`` (``tests/`` is on ``sys.path``; see
``conftest.py``). Every helper that asserts says what it checks in its docstring.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from collectives.base import CollectivePlan
from des.core.graph import EventGraph
from topologies.base import Topology

# ---------------------------------------------------------------------- places
REPO = Path(__file__).resolve().parents[1]
# AstraSim's own inputs and results, one folder per case, shipped with the repository (data,
# like the configs): the golden tests fail rather than skip when it is missing
ASTRA_REFERENCE = REPO / "reference" / "astra"
if not ASTRA_REFERENCE.is_dir():
    raise RuntimeError(f"reference data missing: {ASTRA_REFERENCE} ships with the repository; "
                       "the golden tests cannot run without it")


def astra_expected(case: str) -> dict[str, Any]:
    """A reference case's ``expected.json``: inputs and AstraSim's per-rank results."""
    return json.loads((ASTRA_REFERENCE / case / "expected.json").read_text())


def astra_comm_groups(case: str) -> Path | None:
    """A reference case's ``comm_group.json``, or None when it has none."""
    path = ASTRA_REFERENCE / case / "comm_group.json"
    return path if path.exists() else None


def assert_finished_like_astra(got: Mapping[int, float], want: Mapping[str, Any], *,
                               rel: float, label: str = "") -> None:
    """Every rank of AstraSim's results ``want`` (one backend's entry of expected.json)
    finished, and each rank's finished time in ``got`` is within ``rel`` of AstraSim's."""
    assert want["all_ranks_finished"], f"{label}: AstraSim did not finish every rank"
    for rank, stats in want["per_rank"].items():
        assert got[int(rank)] == pytest.approx(stats["finished_ns"], rel=rel), (
            f"{label} rank {rank} finished")


# ---------------------------------------------------------------------- subprocesses
def checkout_env(**extra: str) -> dict[str, str]:
    """The environment with this checkout first on PYTHONPATH (not an installed des)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def run_des(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m des ARGS`` in ``cwd`` with the checkout importable and a wide terminal."""
    return subprocess.run([sys.executable, "-m", "des", *args], cwd=cwd,
                          env=checkout_env(COLUMNS="200"), capture_output=True, text=True,
                          timeout=120, check=False)


# ---------------------------------------------------------------------- graphs
def p2p_graph(n: int, flows: list[tuple[int, int, float]]) -> EventGraph:
    """``n`` ranks; one matched send/recv per ``(src, dst, bytes)`` flow, all independent."""
    g = EventGraph(n)
    for src, dst, nbytes in flows:
        g.send(src, dst, nbytes)
        g.recv(dst, src, nbytes)
    return g


def circular_wait_graph() -> EventGraph:
    """Three ranks, two pairwise all-reduces each, issued so that with one communication
    stream per rank each rank holds a different collective first: no dependency cycle, but a
    deadlock on stream slots (two streams each resolve it)."""
    g = EventGraph(3)
    g.collective(0, "all_reduce", 64, group=[0, 1])
    g.collective(0, "all_reduce", 64, group=[0, 2])
    g.collective(1, "all_reduce", 64, group=[1, 2])
    g.collective(1, "all_reduce", 64, group=[0, 1])
    g.collective(2, "all_reduce", 64, group=[0, 2])
    g.collective(2, "all_reduce", 64, group=[1, 2])
    return g


# ---------------------------------------------------------------------- routes and faults
def route_devices(topo: Topology, src: int, dst: int, flow: int = 0) -> list[int]:
    """The devices (NPUs and switches) the route from ``src`` to ``dst`` passes, ends included."""
    return topo.path_devices(topo.route(src, dst, flow))


def link_kinds(topo: Topology, route: tuple[int, ...]) -> list[str]:
    """The ``kind`` of each link of a route."""
    return [topo.links[i].kind for i in route]


def fail_links(topo: Topology, src: int, dst: int) -> list[int]:
    """Take down every link from ``src`` to ``dst`` (one direction) and return their ids."""
    links = topo.links_between(src, dst)
    for link in links:
        link.up = False
    topo.invalidate_routes()
    return [link.id for link in links]


def assert_valid_path(topo: Topology, route: tuple[int, ...], src: int, dst: int) -> None:
    """``route`` is a non-empty chain of up links from ``src`` to ``dst``."""
    assert route, "an empty route between distinct NPUs"
    links = [topo.links[i] for i in route]
    assert links[0].src == src and links[-1].dst == dst
    assert all(a.dst == b.src for a, b in itertools.pairwise(links))
    assert all(lk.up for lk in links)


# ---------------------------------------------------------------------- collective plans
def check_aligned(plan: CollectivePlan) -> int:
    """The step-program contract: every member has the same number of steps; every message
    sent in step k is received in the peer's step k and vice versa (multiset equality); no
    rank talks to itself or outside the group; a step reduces no more than it received.
    Returns the step count."""
    counts = {plan.num_steps(r) for r in plan.group}
    assert len(counts) == 1, f"members disagree on the number of steps: {counts}"
    steps = counts.pop()
    for k in range(steps):
        sent: Counter[tuple[int, int, float]] = Counter()
        got: Counter[tuple[int, int, float]] = Counter()
        for r in plan.group:
            step = plan.step(r, k)
            for peer, nbytes in step.sends:
                assert peer != r and peer in plan.position
                sent[(r, peer, nbytes)] += 1
            for peer, nbytes in step.recvs:
                assert peer != r and peer in plan.position
                got[(peer, r, nbytes)] += 1
            assert step.reduce_bytes <= sum(b for _, b in step.recvs) + 1e-9
        assert sent == got, f"step {k}: sent {sent - got}, received {got - sent}"
    return steps


def reaches(plan: CollectivePlan) -> dict[int, set[int]]:
    """Whose inputs each rank has heard from at the end: a message sent in step k carries
    what its sender knew when step k started."""
    known = {r: {r} for r in plan.group}
    for k in range(max(plan.num_steps(r) for r in plan.group)):
        before = {r: set(v) for r, v in known.items()}
        for r in plan.group:
            for peer, _ in plan.step(r, k).sends:
                known[peer] |= before[r]
    return known


def write_et(prefix: Path, ranks: Sequence[Sequence[Any]]) -> Path:
    """Chakra ET files ``{prefix}.{rank}.et``: a GlobalMetadata (version 0.0.4), then each
    rank's nodes (Chakra ``Node`` messages) as given."""
    from chakra.schema.protobuf.et_def_pb2 import GlobalMetadata
    from chakra.src.third_party.utils.protolib import encodeMessage

    for rank, nodes in enumerate(ranks):
        with open(f"{prefix}.{rank}.et", "wb") as fh:
            encodeMessage(fh, GlobalMetadata(version="0.0.4"))
            for node in nodes:
                encodeMessage(fh, node)
    return prefix


#: A two-layer model small enough for whole sweeps in a test (vocabulary 64) and a 2-NPU switch.
TINY = {"name": "tiny", "layers": 2, "hidden": 256, "heads": 4, "ffn": 1024, "vocab": 64,
        "seq": 128, "activation": "gelu"}
SWITCH = {"kind": "switch", "npus": 2, "bandwidth": "100 GB/s", "latency": "1 us"}
#: The same model with an 8-word vocabulary, and a 4-way data-parallel training scenario of it.
TINY_MODEL = {**TINY, "vocab": 8}
LLM_BASE = {
    "topology": {"kind": "switch", "npus": 4, "bandwidth": "100 GB/s", "latency": "1 us"},
    "hardware": "A100-SXM4-80GB",
    "workload": {"kind": "llm_training", "model": TINY_MODEL,
                 "parallel": {"tp": 1, "dp": 4, "micro_batch": 1, "global_batch": 4}},
}
