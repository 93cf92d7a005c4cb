"""Summaries of a topology: size, diameter, bisection bandwidth, link classes, faults.

Bisection bandwidth here is the least total bandwidth, in one direction, of the links from one
half of the NPUs to the other over all balanced halvings. Builders of regular topologies give it
in closed form (``info.bisection_bandwidth``); for custom or faulty topologies it is
estimated with the Kernighan-Lin heuristic (an upper bound on the true minimum), and the summary
says so.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import networkx as nx

from topologies.base import Topology

EXACT_DIAMETER_LIMIT = 512  # BFS from every NPU up to this size; sampled sources beyond
_SYMMETRIC = {"ring", "fully_connected", "switch", "torus2d", "torus3d"}


def diameter(topo: Topology) -> tuple[int, str]:
    """Largest fewest-hop distance between two NPUs over up links, and how it was found."""
    faulty = any(not lk.up for lk in topo.links)
    kind = topo.info.kind
    if kind in _SYMMETRIC and not faulty:
        sources, how = [0], "exact (vertex-transitive: one BFS)"
    elif topo.num_npus <= EXACT_DIAMETER_LIMIT:
        sources, how = list(range(topo.num_npus)), "exact"
    else:
        step = topo.num_npus / 64
        sources = sorted({int(i * step) for i in range(64)} | {topo.num_npus - 1})
        how = f"lower bound (BFS from {len(sources)} NPUs)"
    worst = 0
    for src in sources:
        tree = topo.bfs_tree(src, transit_npus=True)
        missing = topo.num_npus - sum(1 for d in tree if d < topo.num_npus)
        if missing:
            return -1, f"disconnected: NPU {src} cannot reach {missing} NPUs"
        worst = max(worst, max(_depths(tree, src, topo.num_npus)))
    return worst, how


def _depths(tree: dict[int, tuple[int, int]], src: int, num_npus: int) -> list[int]:
    depth = {src: 0}

    def d(node: int) -> int:
        chain = []
        while node not in depth:
            chain.append(node)
            node = tree[node][0]
        base = depth[node]
        for i, n in enumerate(reversed(chain), 1):
            depth[n] = base + i
        return depth[chain[0]] if chain else base

    return [d(n) for n in tree if n < num_npus]


def bisection_bandwidth(topo: Topology, seed: int = 0) -> tuple[float, str]:
    """Bisection bandwidth in bytes/ns (one direction) and how it was obtained."""
    clean = all(lk.up and lk.derate == 1.0 for lk in topo.links)
    closed_form = topo.info.bisection_bandwidth
    if clean and closed_form is not None:
        return float(closed_form), "closed form"
    if topo.num_npus < 2:
        return 0.0, "one NPU: nothing to cut"
    undirected = nx.Graph()
    undirected.add_nodes_from(range(topo.num_devices))
    for lk in topo.links:
        if lk.up:
            w = undirected.get_edge_data(lk.src, lk.dst, {"weight": 0.0})["weight"]
            undirected.add_edge(lk.src, lk.dst, weight=w + lk.effective_bandwidth / 2)
    npus = list(range(topo.num_npus))
    half = set(npus[: topo.num_npus // 2])
    start = (half | {s for s in range(topo.num_npus, topo.num_devices) if s % 2},
             None)
    a, _ = nx.algorithms.community.kernighan_lin_bisection(
        undirected, partition=(start[0], set(undirected) - start[0]), weight="weight",
        seed=seed)
    cut = sum(lk.effective_bandwidth for lk in topo.links
              if lk.up and lk.src in a and lk.dst not in a)
    back = sum(lk.effective_bandwidth for lk in topo.links
               if lk.up and lk.src not in a and lk.dst in a)
    return min(cut, back), "estimate (Kernighan-Lin bisection)"


def link_classes(topo: Topology) -> list[dict[str, Any]]:
    """Links grouped by kind: count, bandwidth and latency ranges, failed and derated counts."""
    groups: dict[str, list] = defaultdict(list)
    for lk in topo.links:
        groups[lk.kind or "link"].append(lk)
    rows = []
    for kind, links in sorted(groups.items()):
        bws = [lk.bandwidth for lk in links]
        lats = [lk.latency for lk in links]
        rows.append({
            "kind": kind,
            "links": len(links),
            "bandwidth_min": min(bws), "bandwidth_max": max(bws),
            "latency_min": min(lats), "latency_max": max(lats),
            "down": sum(1 for lk in links if not lk.up),
            "derated": sum(1 for lk in links if lk.up and lk.derate < 1.0),
        })
    return rows


def disconnected(topo: Topology) -> str:
    """"" when every NPU reaches every other over up links (through switches or NPUs), else
    which NPUs cannot (as simulating would find out at the first message between them)."""
    if topo.num_npus < 2:
        return ""
    for src in (0, topo.num_npus - 1):  # reach all from 0, and 0 from the last: a quick test
        tree = topo.bfs_tree(src, transit_npus=True)
        missing = [n for n in range(topo.num_npus) if n not in tree]
        if missing:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            return (f"NPU {src} cannot reach NPU(s) "
                    f"{', '.join(map(str, missing[:5]))}{more}")
    import networkx as nx  # the thorough test: one strongly connected NPU set

    for part in nx.strongly_connected_components(topo.graph):
        npus = [d for d in part if d < topo.num_npus]
        if npus and len(npus) < topo.num_npus:
            return f"NPUs {sorted(npus)[:5]} cannot reach every other NPU"
        if npus:
            return ""
    return ""


def summary(topo: Topology) -> dict[str, Any]:
    """Everything ``des topo show`` prints, as plain data."""
    diam, diam_how = diameter(topo)
    bis, bis_how = bisection_bandwidth(topo)
    return {
        "name": topo.name,
        "kind": topo.info.kind,
        "builder": topo.info.name or topo.info.kind,  # the registered kind that built it
        "npus": topo.num_npus,
        "switches": topo.num_devices - topo.num_npus,
        "links": len(topo.links),
        "diameter_hops": diam,
        "diameter_method": diam_how,
        "bisection_bandwidth": bis,
        "bisection_method": bis_how,
        "link_classes": link_classes(topo),
        "failed_links": [f"{lk.src}->{lk.dst}" for lk in topo.links if not lk.up],
        "derated_links": [f"{lk.src}->{lk.dst}:{lk.derate:g}" for lk in topo.links
                          if lk.up and lk.derate < 1.0],
    }
