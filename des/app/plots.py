"""Pictures (the ``plot`` extra, matplotlib): topology drawings and link-utilization heatmaps.

Mesh and torus topologies are laid out on their grid, with each directed link drawn as a short
arrow beside its partner, coloured by utilization; a SuperPOD is drawn in labelled tiers
(:mod:`des.app.plots_superpod`); other topologies use a layered layout (NPUs at the bottom,
switches above by their distance from the NPUs, each row labelled by its switches' kind).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from topologies.base import Topology

#: Width (drawing units) each row of a layered drawing spreads over; rows are 1 unit apart.
LAYER_WIDTH = 16.0
#: Above this many links a layered drawing draws each cable as one line (not an arrow per
#: direction): a 1024-host fat tree has 6144 directed links.
ARROW_LINKS = 400


class PlotError(RuntimeError):
    """Plotting is unavailable (matplotlib missing) or the request cannot be drawn."""


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotError("plots need matplotlib: pip install 'des[plot]'") from None
    return plt


def _grid_positions(topo: Topology) -> dict[int, tuple[float, float]] | None:
    dims = topo.info.dims
    if topo.info.kind not in ("mesh2d", "torus2d", "torus3d") or not dims:
        return None
    x_size, y_size = dims[0], dims[1]
    pos = {}
    for npu in range(topo.num_npus):
        x, rest = npu % x_size, npu // x_size
        y, z = rest % y_size, rest // y_size
        pos[npu] = (x + z * (x_size + 1), -y)  # 3-D: z planes side by side
    return pos


def _layered_positions(topo: Topology) -> dict[int, tuple[float, float]]:
    level = {n: 0 for n in range(topo.num_npus)}
    frontier = list(range(topo.num_npus))
    while frontier:
        nxt = []
        for u in frontier:
            for link in topo.out_links(u, up_only=False):
                if link.dst not in level:
                    level[link.dst] = level[u] + 1
                    nxt.append(link.dst)
        frontier = nxt
    rows: dict[int, list[int]] = {}
    for node, lv in sorted(level.items()):
        rows.setdefault(lv, []).append(node)
    pos = {}
    for lv, nodes in rows.items():  # every row spread over the same width, whatever its size
        gap = LAYER_WIDTH / len(nodes)
        for i, node in enumerate(nodes):
            pos[node] = ((i + 0.5) * gap, lv)
    if topo.info.kind == "ring":  # a ring reads better as a circle
        import math

        n = topo.num_npus
        pos = {i: (math.cos(2 * math.pi * i / n), math.sin(2 * math.pi * i / n))
               for i in range(n)}
    return pos


def positions(topo: Topology) -> dict[int, tuple[float, float]]:
    """Where each device goes in a drawing."""
    return _grid_positions(topo) or _layered_positions(topo)


def draw_topology(topo: Topology, path: str | Path,
                  utilization: Mapping[int, float] | None = None, title: str = "") -> Path:
    """Draw devices and links to a PNG; with ``utilization`` (link id -> 0..1) links are
    coloured by it on an absolute 0-100% scale (a colour bar says so), so a lightly used
    fabric does not look saturated. See :func:`topology_figure`."""
    plt = _pyplot()
    fig, _ = topology_figure(topo, utilization, title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


#: Where a wrap-around or z-link stub starts and ends, in grid units from its device's centre:
#: clear of the device's marker (about 0.22 units across at the default size), inside the margin.
STUB = (0.27, 0.55)


def topology_figure(topo: Topology, utilization: Mapping[int, float] | None = None,
                    title: str = "") -> tuple[Any, list[tuple[int, ...]]]:
    """The figure of :func:`draw_topology` and, per drawn line or arrow, the ids of the links
    it stands for (every link of the topology appears). On grids each directed link is a short
    arrow beside its partner; wrap-around links are stubs leaving the edge towards their
    partner, and a 3-D torus's z links (its planes drawn side by side) diagonal stubs towards
    the next or previous plane. A SuperPOD gets its tiered drawing
    (:mod:`des.app.plots_superpod`); other switched fabrics a layered one with each tier
    labelled by its switches' kind. Failed links are dashed red."""
    plt = _pyplot()
    from matplotlib import cm, colors
    from matplotlib.ticker import PercentFormatter

    from des.app.plots_superpod import is_superpod, superpod_axes

    norm = colors.Normalize(vmin=0.0, vmax=1.0)
    cmap = cm.get_cmap("inferno_r") if hasattr(cm, "get_cmap") else plt.get_cmap("inferno_r")
    if is_superpod(topo):
        wide = topo.num_npus > 32
        fig, ax = plt.subplots(figsize=(14 if wide else 10, 7), dpi=120)
        drawn, note = superpod_axes(topo, ax, utilization, cmap, norm)
        _colour_bar(fig, ax, utilization, cm, norm, cmap, PercentFormatter)
        ax.set_title(f"{title or topo.name}\n{note}", fontsize=10)
        ax.set_axis_off()
        return fig, drawn
    pos = positions(topo)
    grid = _grid_positions(topo) is not None
    size = (8.0, 6.0)
    if grid:  # as wide as the planes side by side, as tall as a plane
        xs, ys = [x for x, _ in pos.values()], [y for _, y in pos.values()]
        width, height = max(xs) - min(xs) + 1.2, max(ys) - min(ys) + 1.2
        scale = min(0.75, 16.0 / width)
        size = (max(4.0, width * scale), max(2.5, height * scale + 0.8))
    fig, ax = plt.subplots(figsize=size, dpi=120)
    dims = topo.info.dims
    plane = dims[0] * dims[1] if grid and len(dims) == 3 else 0
    drawn: list[tuple[int, ...]] = []
    bundled = not grid and len(topo.links) > ARROW_LINKS
    if bundled:
        drawn = _cables(topo, ax, pos, utilization, cmap, norm)
    for link in () if bundled else topo.links:
        (x0, y0), (x1, y1) = pos[link.src], pos[link.dst]
        dx, dy = x1 - x0, y1 - y0
        start, end = 0.15, 0.85  # of the way to the partner
        if plane and link.src // plane != link.dst // plane:
            # a z link (planes are drawn side by side): a diagonal stub, up-right towards the
            # next plane, down-left towards the previous one (wrap-around: the other way)
            ahead = (link.dst // plane - link.src // plane) % dims[2] == 1
            dx = dy = 1.0 if ahead else -1.0
            start, end = STUB
        elif grid and abs(dx) + abs(dy) > 1.5:  # wrap-around link: a stub leaving the edge
            dx, dy = -float(_sign(dx)), -float(_sign(dy))
            start, end = STUB
        # shift each direction sideways so both arrows of a cable show
        length = max((dx * dx + dy * dy) ** 0.5, 1e-9)
        off = (-0.06 * dy / length, 0.06 * dx / length)
        if (start, end) == STUB:  # stubs are measured in grid units, clear of the marker
            dx, dy = dx / length, dy / length
        style: dict[str, Any] = {"lw": 1.0, "color": "0.6"}
        if utilization is not None:
            style = {"lw": 2.2, "color": cmap(norm(utilization.get(link.id, 0.0)))}
        if not link.up:
            style = {"lw": 1.2, "color": "red", "linestyle": "--"}
        ax.annotate("", xy=(x0 + dx * end + off[0], y0 + dy * end + off[1]),
                    xytext=(x0 + dx * start + off[0], y0 + dy * start + off[1]),
                    arrowprops={"arrowstyle": "-|>", "mutation_scale": 7, **style})
        drawn.append((link.id,))
    small = topo.num_devices > 128
    for switches, size, marker, colour in ((False, 110, "o", "#228833"),
                                           (True, 60, "s", "#4477aa")):
        where = [xy for device, xy in pos.items() if topo.is_switch(device) == switches]
        if where:
            ax.scatter([x for x, _ in where], [y for _, y in where], s=8 if small else size,
                       marker=marker, color=colour, zorder=3)
    for device, (x, y) in pos.items():
        if not small:
            ax.text(x, y, str(device), fontsize=6, ha="center", va="center", color="white",
                    zorder=4)
    _colour_bar(fig, ax, utilization, cm, norm, cmap, PercentFormatter)
    # arrows do not take part in autoscaling: frame every device and the wrap-around stubs
    xs, ys = [x for x, _ in pos.values()], [y for _, y in pos.values()]
    margin = 0.6 if grid else 0.05 * max(max(xs) - min(xs), max(ys) - min(ys), 1.0)
    ax.set_xlim(min(xs) - margin, max(xs) + margin)
    ax.set_ylim(min(ys) - margin, max(ys) + margin)
    if not grid and topo.info.kind != "ring" and topo.num_devices > topo.num_npus:
        _tier_labels(topo, ax, pos, min(xs) - margin)
    note = ""
    if grid and plane:
        note = "\nstubs: wrap-around links off each edge; z links to the next plane (up-right) " \
               "and the previous one (down-left)"
    elif grid and any(abs(pos[lk.src][0] - pos[lk.dst][0]) + abs(pos[lk.src][1] - pos[lk.dst][1])
                      > 1.5 for lk in topo.links):
        note = "\nstubs off each edge: wrap-around links"
    if bundled:
        note = (f"\n{len(topo.links)} directed links, each cable one line"
                + (" coloured by its busier direction" if utilization is not None else ""))
    ax.set_title((title or topo.name) + note)
    ax.set_axis_off()
    ax.set_aspect("equal" if grid else "auto")
    return fig, drawn


def _cables(topo: Topology, ax: Any, pos: Mapping[int, tuple[float, float]],
            utilization: Mapping[int, float] | None, cmap: Any, norm: Any
            ) -> list[tuple[int, ...]]:
    """Each cable (the links between two devices, either way) as one line; returns the link
    ids of each line. Coloured by its busier direction; dashed red when any is down."""
    from matplotlib.collections import LineCollection

    cables: dict[tuple[int, int], list[int]] = {}
    for link in topo.links:
        cables.setdefault((min(link.src, link.dst), max(link.src, link.dst)), []).append(
            link.id)
    segments, colours, styles, drawn = [], [], [], []
    for (a, b), ids in cables.items():
        segments.append((pos[a], pos[b]))
        if any(not topo.links[i].up for i in ids):
            colours.append("red")
            styles.append("--")
        else:
            colours.append("0.6" if utilization is None else
                           cmap(norm(max(utilization.get(i, 0.0) for i in ids))))
            styles.append("-")
        drawn.append(tuple(ids))
    ax.add_collection(LineCollection(segments, colors=colours, linestyles=styles,
                                     linewidths=0.4 if utilization is None else 0.8, zorder=1))
    return drawn


def _colour_bar(fig: Any, ax: Any, utilization: Mapping[int, float] | None, cm: Any,
                norm: Any, cmap: Any, percent: Any) -> None:
    if utilization is not None:
        bar = fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax,
                           label="link utilization (share of the run the link was busy)")
        bar.ax.yaxis.set_major_formatter(percent(1.0))


def _tier_labels(topo: Topology, ax: Any, pos: Mapping[int, tuple[float, float]],
                 x: float) -> None:
    """Name each row of a layered drawing by its devices' kinds ("NPUs", "edge", "core")."""
    rows: dict[float, set[str]] = {}
    for device, (_, y) in pos.items():
        kind = "NPUs" if not topo.is_switch(device) else topo.device_kind(device)
        rows.setdefault(y, set()).add(kind)
    for y, kinds in rows.items():
        ax.text(x, y, " / ".join(sorted(kinds)), ha="right", va="center", fontsize=8,
                weight="bold")


def _sign(v: float) -> int:
    return (v > 0) - (v < 0)


def draw_link_heatmap(topo: Topology, result: Any, path: str | Path) -> Path:
    """The run's link utilization drawn on the topology (laid out on the grid for mesh and
    torus)."""
    util = {lk.id: lk.utilization for lk in result.links}
    return draw_topology(topo, path, util, title=heatmap_title(topo, result))


def heatmap_title(topo: Topology, result: Any) -> str:
    """"NAME: link utilization over 6.76 s (busiest link 1.7%)": the run's length in human
    units and the busiest link's share to 0.1%."""
    from des.core.units import format_time

    busiest = max((lk.utilization for lk in result.links), default=0.0)
    return (f"{topo.name}: link utilization over {format_time(result.makespan_ns)} "
            f"(busiest link {busiest:.1%})")
