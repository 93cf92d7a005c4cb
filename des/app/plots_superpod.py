"""The drawing of a rail-optimized SuperPOD (:func:`topologies.fattree.superpod`), used by
:func:`des.app.plots.draw_topology` for both ``topo show --png`` and the link heat map.

Tiers from the bottom, each labelled on the left: the node NVSwitches, the GPUs grouped by node,
one horizontal *rail bus* per GPU index, the rail leaves, the spines. A GPU's NIC cable is drawn
as a vertical stem from the GPU up to its rail's bus, and the bus meets its rail leaf, so the
GPU-to-leaf wiring reads as eight clean rails instead of a crossing fan; the rail buses and the
leaf-to-NIC joins stand for wires that the stems already account for. A dot marks where a stem
or a leaf's join meets its bus; lines that cross without a dot are not connected.

Up to :data:`DETAILED_NPUS` GPUs every cable is its own line. Above that, each node is one box
(its GPUs, NVLinks and NVSwitch; the box is coloured by the busiest of its NVLink links), a
node's NIC cables one stem, and each rail bus stands for the NIC cables of its rail (coloured by
the busiest of them); the title says the drawing is aggregated and the legend gives every link
class with its count of directed links. In a heat map a cable is coloured by its busier
direction; failed links are dashed red.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from topologies.base import Topology
from topologies.meta import SuperpodLayout

#: Up to this many GPUs every cable is drawn; above it, per node and per rail.
DETAILED_NPUS = 128
_Y = {"nvswitch": -1.0, "gpu": 0.0, "bus": 1.0, "bus_step": 0.22, "leaf": 3.4, "spine": 4.8}
_CLASS_COLOURS = {"nvlink": "#228833", "leaf-spine": "0.45"}


def is_superpod(topo: Topology) -> bool:
    """True for a topology the superpod builder made (its layout says so)."""
    return isinstance(topo.layout, SuperpodLayout)


def superpod_axes(topo: Topology, ax: Any, utilization: Mapping[int, float] | None,
                  cmap: Any, norm: Any) -> tuple[list[tuple[int, ...]], str]:
    """Draw ``topo`` on ``ax``; returns, per drawn primitive, the ids of the links it stands
    for (every link id appears at least once), and a note for the title."""
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    lay: SuperpodLayout = topo.layout  # type: ignore[assignment]
    nodes, gpn = lay.nodes, lay.gpus_per_node
    detailed = topo.num_npus <= DETAILED_NPUS
    rails = [f"C{g % 10}" for g in range(gpn)]  # one matplotlib cycle colour per rail
    drawn: list[tuple[int, ...]] = []
    cables: dict[tuple[int, int], list[int]] = {}
    for link in topo.links:
        cables.setdefault((min(link.src, link.dst), max(link.src, link.dst)), []).append(
            link.id)

    def util_colour(ids: list[int] | tuple[int, ...], default: str) -> Any:
        if utilization is None:
            return default
        return cmap(norm(max(utilization.get(i, 0.0) for i in ids)))

    def down(ids: list[int] | tuple[int, ...]) -> bool:
        return any(not topo.links[i].up for i in ids)

    # x positions: GPU g of node n; node n spans [node_x0, node_x1]
    if detailed:
        gpu_x = {n * gpn + g: n * (gpn + 1) + g for n in range(nodes) for g in range(gpn)}
        span = nodes * (gpn + 1) - 1
        node_x = {n: (n * (gpn + 1), n * (gpn + 1) + gpn - 1) for n in range(nodes)}
    else:
        width = gpn * 1.25
        gpu_x = {n * gpn + g: n * width + 0.5 * width for n in range(nodes) for g in range(gpn)}
        span = nodes * width
        node_x = {n: (n * width + 0.1 * width, n * width + 0.9 * width) for n in range(nodes)}
    bus_y = [_Y["bus"] + g * _Y["bus_step"] for g in range(gpn)]
    leaf_x = [span * (g + 0.5) / gpn for g in range(gpn)]
    spine_x = [span * (s + 0.5) / lay.spines for s in range(lay.spines)]
    segments: list[tuple[tuple[float, float], tuple[float, float]]] = []
    colours: list[Any] = []
    widths: list[float] = []
    styles: list[str] = []

    def line(a: tuple[float, float], b: tuple[float, float], ids: tuple[int, ...] | list[int],
             colour: Any, lw: float) -> None:
        broken = down(ids)
        segments.append((a, b))
        colours.append("red" if broken else util_colour(ids, colour))
        widths.append(lw)
        styles.append("--" if broken else "-")
        drawn.append(tuple(ids))

    nvswitch_of = {sw: n for n, sw in enumerate(lay.nvswitches)}
    rail_of = {sw: g for g, sw in enumerate(lay.rail_leaves)}
    spine_of = {sw: s for s, sw in enumerate(lay.spine_switches)}
    nic_by_rail: dict[int, list[int]] = {g: [] for g in range(gpn)}
    nic_by_node: dict[int, list[int]] = {n: [] for n in range(nodes)}
    nvlink_by_node: dict[int, list[int]] = {n: [] for n in range(nodes)}
    lw = 1.6 if utilization is not None else 0.9
    for (a, b), ids in sorted(cables.items()):
        if b in nvswitch_of:  # GPU a <-> its node's NVSwitch
            n = nvswitch_of[b]
            if detailed:
                x0, x1 = node_x[n]
                line((gpu_x[a], _Y["gpu"]), ((x0 + x1) / 2, _Y["nvswitch"]), ids,
                     _CLASS_COLOURS["nvlink"], lw)
            else:
                nvlink_by_node[n].extend(ids)
        elif b in rail_of:  # GPU a <-> rail leaf b: a stem up to the rail's bus
            g = rail_of[b]
            nic_by_rail[g].extend(ids)
            nic_by_node[a // gpn].extend(ids)
            if detailed:
                line((gpu_x[a], _Y["gpu"]), (gpu_x[a], bus_y[g]), ids, rails[g], lw)
        elif a in rail_of and b in spine_of:
            line((leaf_x[rail_of[a]], _Y["leaf"]), (spine_x[spine_of[b]], _Y["spine"]), ids,
                 _CLASS_COLOURS["leaf-spine"], lw * 0.8)
        else:  # not a link the superpod builder makes: draw it straight anyway
            line(_where(a, gpu_x, lay, leaf_x, spine_x), _where(b, gpu_x, lay, leaf_x, spine_x),
                 ids, "0.5", lw)
    if not detailed:
        for n in range(nodes):  # a node's NIC cables: one stem to the top bus
            ids = tuple(nic_by_node[n])
            line((gpu_x[n * gpn], _Y["gpu"] + 0.3), (gpu_x[n * gpn], bus_y[-1]), ids, "0.6",
                 0.6)
    for g in range(gpn):  # the rail bus and its join to the rail leaf
        ids = tuple(nic_by_rail[g])
        colour = rails[g] if detailed or utilization is None else util_colour(ids, rails[g])
        if detailed and utilization is not None:
            colour = "0.55"  # each stem carries its own cable's colour
        segments += [((0.0, bus_y[g]), (span, bus_y[g])), ((leaf_x[g], bus_y[g]),
                                                            (leaf_x[g], _Y["leaf"]))]
        colours += [colour, colour]
        widths += [2.0 if not detailed else 1.0] * 2
        styles += ["-", "-"]
        if not detailed:
            drawn.append(ids)
    ax.add_collection(LineCollection(segments, colors=colours, linewidths=widths,
                                     linestyles=styles, zorder=1))
    # dots where a stem or a leaf's join meets its bus: crossings without a dot do not connect
    joins = [(leaf_x[g], bus_y[g]) for g in range(gpn)]
    if detailed:
        joins += [(gpu_x[n * gpn + g], bus_y[g]) for n in range(nodes) for g in range(gpn)]
    else:
        joins += [(gpu_x[n * gpn], bus_y[g]) for n in range(nodes) for g in range(gpn)]
    ax.scatter([x for x, _ in joins], [y for _, y in joins], s=8 if detailed else 2,
               color="0.2", zorder=2, linewidths=0)
    # devices
    if detailed:
        xs = [gpu_x[i] for i in range(topo.num_npus)]
        ax.scatter(xs, [_Y["gpu"]] * len(xs), s=40 if nodes <= 4 else 14, color="#228833",
                   zorder=3)
        for n, (x0, x1) in node_x.items():
            ax.add_patch(Rectangle((x0 - 0.4, _Y["nvswitch"] - 0.12), x1 - x0 + 0.8, 0.24,
                                   color="#4477aa", zorder=3))
            if nodes <= 16:
                ax.text((x0 + x1) / 2, _Y["nvswitch"] - 0.3, f"node {n}", ha="center",
                        va="top", fontsize=7)
    else:
        for n, (x0, x1) in node_x.items():
            ids = tuple(nvlink_by_node[n])
            fill = "red" if down(ids) else util_colour(ids, "#228833")
            ax.add_patch(Rectangle((x0, _Y["gpu"] - 0.3), x1 - x0, 0.6, color=fill, zorder=3))
            drawn.append(ids)
        step = max(1, nodes // 8)
        for n in range(0, nodes, step):
            ax.text(sum(node_x[n]) / 2, _Y["gpu"] - 0.45, f"node {n}", ha="center", va="top",
                    fontsize=7)
    ax.scatter(leaf_x, [_Y["leaf"]] * gpn, s=70, marker="s", color="#4477aa", zorder=3)
    ax.scatter(spine_x, [_Y["spine"]] * lay.spines, s=70, marker="s", color="#4477aa",
               zorder=3)
    if gpn <= 16:
        for g, x in enumerate(leaf_x):
            ax.text(x, _Y["leaf"] + 0.2, f"rail {g}", ha="center", va="bottom", fontsize=7,
                    bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5}, zorder=4)
    if lay.spines <= 16:
        for s, x in enumerate(spine_x):
            ax.text(x, _Y["spine"] + 0.2, f"spine {s}", ha="center", va="bottom", fontsize=7)
    tiers = (("spines", _Y["spine"]), ("rail leaves", _Y["leaf"]),
             ("rails (NIC)", (bus_y[0] + bus_y[-1]) / 2),
             ("GPUs" if detailed else "nodes (GPUs)", _Y["gpu"]))
    if detailed:
        tiers += (("NVSwitch per node", _Y["nvswitch"]),)
    for label, y in tiers:
        ax.text(-0.03 * span, y, label, ha="right", va="center", fontsize=8, weight="bold")
    # legend: every link class with its directed-link count
    counts: dict[str, int] = {}
    for link in topo.links:
        counts[link.kind] = counts.get(link.kind, 0) + 1
    nic = "NIC: GPU g <-> rail leaf g"
    entries = [
        Line2D([], [], color=_CLASS_COLOURS["nvlink"], lw=2,
               label=f"NVLink: GPU <-> node NVSwitch ({counts.get('nvlink', 0)} links)"
               + ("" if detailed else "; inside each node box")),
        Line2D([], [], color=rails[0], lw=2,
               label=f"{nic} ({counts.get('nic', 0)} links"
               + (", a colour per rail)" if utilization is None else ")") + (
                   "; one stem per GPU, one bus per rail" if detailed else
                   "; one stem per node, one bus per rail")),
        Line2D([], [], color=_CLASS_COLOURS["leaf-spine"], lw=2,
               label=f"leaf-spine ({counts.get('leaf-spine', 0)} links)"),
    ]
    if utilization is not None:
        for entry in entries:
            entry.set_color("0.3")
    ax.legend(handles=entries, loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=1,
              fontsize=7, frameon=False, title="links (directed; a cable is two)",
              title_fontsize=7)
    ax.set_xlim(-0.2 * span - 1, span + 1)
    ax.set_ylim(_Y["nvswitch"] - 0.8, _Y["spine"] + 0.6)
    note = (f"{nodes} nodes x {gpn} GPUs" if detailed else
            f"{nodes} nodes x {gpn} GPUs, drawn per node and per rail")
    if utilization is not None and not detailed:
        note += " (each colour is the busiest link it stands for)"
    elif utilization is not None:
        note += " (each cable coloured by its busier direction)"
    return drawn, note


def _where(device: int, gpu_x: Mapping[int, float], lay: SuperpodLayout,
           leaf_x: list[float], spine_x: list[float]) -> tuple[float, float]:
    """Where any device sits (for links the builder does not make, e.g. a custom addition)."""
    if device in gpu_x:
        return gpu_x[device], _Y["gpu"]
    if device in lay.rail_leaves:
        return leaf_x[lay.rail_leaves.index(device)], _Y["leaf"]
    if device in lay.spine_switches:
        return spine_x[lay.spine_switches.index(device)], _Y["spine"]
    n = lay.nvswitches.index(device)
    return gpu_x[n * lay.gpus_per_node], _Y["nvswitch"]
