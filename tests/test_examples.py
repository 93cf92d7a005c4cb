"""The runnable examples of des's extension points: each runs as a script, and what it shows
holds (a custom link model, collective, topology or workload changes the answer the way it
must)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_example_runs_as_a_script(script: str) -> None:
    # run this checkout's des, not whichever copy is installed
    path = os.pathsep.join(p for p in (str(EXAMPLES.parent), os.environ.get("PYTHONPATH"))
                           if p)
    done = subprocess.run([sys.executable, str(EXAMPLES / script)], capture_output=True,
                          text=True, timeout=120, cwd=EXAMPLES.parent,
                          env={**os.environ, "PYTHONPATH": path})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def test_framed_links_slow_a_ring_by_at_most_the_header_share() -> None:
    out = load("custom_link_model").main()
    # every byte on the wire carries 64/4096 of framing; latency is not stretched
    assert 1.0 < out["slowdown"] <= 1 + 64 / 4096 + 1e-12
    assert out["slowdown"] > 1 + 0.9 * 64 / 4096


def test_star_all_reduce_is_bound_by_the_roots_link(monkeypatch) -> None:
    import collectives.base

    # the example registers "star" globally: keep that out of the other tests
    monkeypatch.setattr(collectives.base, "_REGISTRY", dict(collectives.base._REGISTRY))
    out = load("custom_collective").main()
    size, n, bw = 64 * 2**20, 8, 50.0
    assert out["star_ns"] >= (n - 1) * size / bw  # the root's down-link carries n-1 buffers
    assert out["ring_ns"] >= 2 * (n - 1) / n * size / bw
    # both move 2 (n-1) buffers' worth through the switch (two links per message)
    assert out["star_bytes"] == pytest.approx(2 * 2 * (n - 1) * size)
    assert out["ring_bytes"] == pytest.approx(2 * 2 * (n - 1) * size)


def test_dragonfly_global_links_carry_exactly_what_minimal_routing_puts_there(monkeypatch
                                                                               ) -> None:
    import topologies.registry as registry

    monkeypatch.setattr(registry, "_KINDS", dict(registry._KINDS))
    monkeypatch.setattr(registry, "_ALIASES", dict(registry._ALIASES))
    out = load("custom_topology").main()
    groups, hosts, size = 4, out["hosts_per_group"], out["size"]
    assert (out["kind"], out["name"]) == ("custom", "dragonfly")
    assert out["npus"] == out["spec_npus"] == groups * hosts
    # one global link each way per pair of groups; under minimal routing every message between
    # two groups crosses exactly the link joining them, and no other global link
    per_message = size / out["npus"]
    assert len(out["global_bytes"]) == groups * (groups - 1)
    for carried in out["global_bytes"].values():
        assert carried == pytest.approx(hosts * hosts * per_message)
    # so the all-to-all cannot end before a global link has moved its load
    assert out["makespan_ns"] >= hosts * hosts * per_message / out["global_bandwidth"]


def test_parameter_server_step_is_compute_two_transfers_and_update(monkeypatch) -> None:
    import des.app.workload_kinds as kinds

    monkeypatch.setattr(kinds, "WORKLOAD_KINDS", dict(kinds.WORKLOAD_KINDS))
    example = load("custom_workload")
    size, bw, lat = 64 * 2**20, 100.0, 1000.0  # the example's scenario: fully connected
    transfer = lat + size / bw
    for backend in ("simpy", "analytical"):
        out = example.main(backend)
        assert out["kind"] == "parameter_server"
        assert out["makespan_ns"] == pytest.approx(2e6 + 2 * transfer + 300e3, rel=1e-12)
        assert out["report"]["push_s"] == pytest.approx(transfer * 1e-9)
        assert out["report"]["update_s"] == pytest.approx(300e3 * 1e-9)
        assert out["metrics"]["workload"] == "parameter_server"
        assert out["metrics"]["iteration_s"] == pytest.approx(out["makespan_ns"] * 1e-9)
