"""The runnable examples of des's extension points: each runs as a script, and what it shows
holds (a custom link model and a custom collective change the answer the way they must)."""

from __future__ import annotations

import importlib.util
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
    done = subprocess.run([sys.executable, str(EXAMPLES / script)], capture_output=True,
                          text=True, timeout=120, cwd=EXAMPLES.parent)
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
