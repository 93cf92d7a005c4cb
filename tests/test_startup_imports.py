"""Start-up stays cheap: ``des simulate`` on a small scenario does not import the heavy
libraries it does not need (networkx, numpy, protobuf/Chakra, matplotlib, dask), and the
networkx view of a topology, built lazily, still matches its links."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from topologies import DimSpec, fat_tree, hierarchical

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("networkx", "numpy", "google.protobuf", "chakra", "matplotlib", "dask",
         "astra_bridge.export", "des.app.sweep")


def test_simulate_does_not_import_heavy_modules() -> None:
    code = ("import sys, contextlib, io\n"
            "from des.app.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    assert main(['simulate', '--quiet']) == 0\n"
            f"print(__import__('json').dumps([m for m in {HEAVY!r} if m in sys.modules]))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_graph_view_matches_links() -> None:
    topo = hierarchical([DimSpec("ring", 2, 10.0, 5.0), DimSpec("switch", 2, 5.0, 5.0)])
    graph = topo.graph
    assert graph.number_of_nodes() == topo.num_devices
    assert sorted(graph.edges(keys=True)) == sorted((lk.src, lk.dst, lk.id) for lk in topo.links)
    assert all(graph.nodes[d]["kind"] == topo.device_kind(d) for d in range(topo.num_devices))
    sid = topo.add_switch(kind="extra")
    assert topo.graph.nodes[sid]["kind"] == "extra"  # rebuilt after a change


def test_links_between_parallel_links() -> None:
    topo = fat_tree(4, 10.0, 1.0)
    (up,) = topo.links_between(0, topo.layout.edge_switches[0])
    up.up = False
    assert topo.links_between(0, topo.layout.edge_switches[0]) == []
    assert topo.links_between(0, topo.layout.edge_switches[0], up_only=False) == [up]
