"""Bytes are conserved: every run reports what its senders injected and what was delivered,
per run and per collective, and the engine refuses to finish (an internal error, exit 1) when
they differ. Also: the JSON of a run is a function of its input alone (byte-identical reruns,
whatever the hash seed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import checkout_env

import topologies as topo
from des.app.cli import EXIT_INTERNAL, main
from des.app.config import load_scenario
from des.core.graph import EventGraph
from des.sim.analytical import AnalyticalBackend
from des.sim.engine import simulate
from des.sim.options import EngineOptions
from des.sim.runtime import ConservationError
from des.sim.transport import Transport
from topologies.faults import LinkFault

MiB = 2**20


def assert_conserved(result) -> None:
    meta = result.meta
    assert meta["bytes_injected"] > 0
    assert meta["bytes_delivered"] == pytest.approx(meta["bytes_injected"], rel=1e-12)
    for c in result.collectives:
        assert c.bytes_injected is not None and c.bytes_injected > 0, c.index
        assert c.bytes_delivered == pytest.approx(c.bytes_injected, rel=1e-12), c.index


def run_scenario(name: str, **overrides):
    scenario = load_scenario(name)
    for key, value in overrides.items():
        setattr(scenario.options, key, value)
    return simulate(scenario.topology, scenario.graph, hardware=scenario.hardware,
                    options=scenario.options)


def test_a_link_failing_mid_run_loses_no_bytes() -> None:
    result = run_scenario("torus4x4_link_failure")
    assert result.meta["reroutes"] > 0  # messages really were pulled back and resent
    assert_conserved(result)
    a2a, ring = result.collectives
    # a ring all-reduce moves 2 (n - 1) / n of the buffer per member: 2 (n - 1) buffers in all
    assert ring.bytes_injected == pytest.approx(2 * 15 * 256 * MiB, rel=1e-12)
    assert a2a.bytes_injected == pytest.approx(15 * 64 * MiB, rel=1e-12)


@pytest.mark.parametrize("lockstep", [True, False])
def test_lockstep_mirrors_count_the_same_bytes_as_every_message(lockstep: bool) -> None:
    result = run_scenario("switch16_straggler", lockstep=lockstep)
    assert_conserved(result)


def test_a_link_failing_under_a_train_loses_no_bytes() -> None:
    g = EventGraph(4)
    g.send(0, 2, 64 * MiB)
    g.recv(2, 0, 64 * MiB)
    fault = LinkFault(1, 2, down=True, at_ns=50_000.0, until_ns=400_000.0)
    result = simulate(topo.ring(4, 50.0, 500.0), g,
                      options=EngineOptions(timed_faults=[fault]))
    assert result.meta["trains"] == 1 and result.meta["reroutes"] > 0
    assert result.meta["bytes_injected"] == result.meta["bytes_delivered"] == 64 * MiB


def test_the_closed_form_backend_moves_no_messages() -> None:
    scenario = load_scenario("allreduce_sizes_ring8")
    result = AnalyticalBackend(scenario.topology, scenario.graph,
                               options=scenario.options).run()
    assert all(c.bytes_injected is None for c in result.collectives)
    assert "bytes_injected" not in result.meta


def test_lost_bytes_are_an_internal_error(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    deliver = Transport._deliver

    def leaky(self: Transport, msg) -> None:
        deliver(self, msg)
        self.bytes_delivered -= 1.0  # one byte lost per message

    monkeypatch.setattr(Transport, "_deliver", leaky)
    with pytest.raises(ConservationError, match=r"injected .* delivered .*difference \+"):
        run_scenario("allreduce_sizes_ring8")
    assert main(["simulate", "allreduce_sizes_ring8"]) == EXIT_INTERNAL
    err = " ".join(capsys.readouterr().err.split())
    assert "internal error: ConservationError: bytes not conserved" in err


# ---------------------------------------------------------------------- determinism
@pytest.mark.parametrize("scenario", ["torus4x4_link_failure", "dp8_ring_overlap"])
def test_the_json_of_a_run_is_byte_identical_across_runs(scenario: str, tmp_path: Path) -> None:
    outputs = []
    for seed in ("1", "2"):  # set iteration order differs between the two interpreters
        out = tmp_path / f"r{seed}.json"
        proc = subprocess.run([sys.executable, "-m", "des", "simulate", scenario, "--json",
                               str(out), "--quiet"], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120, check=False,
                              env=checkout_env(PYTHONHASHSEED=seed))
        assert proc.returncode == 0, proc.stderr
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    assert b"wall_seconds" not in outputs[0]
