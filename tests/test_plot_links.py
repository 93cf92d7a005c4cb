"""Topology drawings and link heat maps draw every link: on grids one arrow per directed link
(wrap-around and z links included, no two on top of each other); on a SuperPOD every link is
covered by a drawn line or box, per cable up to 128 GPUs and per node and rail above; heat map
titles give the run's length in human units."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from matplotlib.collections import LineCollection
from matplotlib.text import Annotation

from des.app.plots import heatmap_title, positions, topology_figure
from topologies.spec import parse_spec


def drawn_arrows(fig) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    ax = fig.axes[0]
    return [(tuple(a.xyann), tuple(a.xy)) for a in ax.texts if isinstance(a, Annotation)]


@pytest.mark.parametrize("spec", ["torus2d:4x4", "torus3d:4x4x4", "torus3d:3x3x3",
                                  "torus3d:4x4x2", "mesh2d:4x3", "ring:8"])
def test_grids_draw_one_arrow_per_directed_link_none_on_top_of_another(spec):
    import matplotlib.pyplot as plt

    topo = parse_spec(spec, 50.0, 500.0)
    fig, drawn = topology_figure(topo)
    arrows = drawn_arrows(fig)
    plt.close(fig)
    assert len(arrows) == len(topo.links)  # wrap-around and z links included
    assert sorted(drawn) == [(i,) for i in range(len(topo.links))]
    rounded = {tuple(round(c, 6) for pt in a for c in pt) for a in arrows}
    assert len(rounded) == len(arrows), "two links drawn on top of each other"
    # every arrow starts clear of its device's marker (about 0.22 grid units across), or it
    # is hidden under it: wrap-around and z stubs once were
    pos = positions(topo)
    for link, (start, _) in zip(topo.links, arrows, strict=True) if topo.info.dims else ():
        x, y = pos[link.src]
        assert ((start[0] - x) ** 2 + (start[1] - y) ** 2) ** 0.5 >= 0.14, link


def test_a_4x4_torus_heat_map_has_its_16_wrap_around_links():
    import matplotlib.pyplot as plt

    topo = parse_spec("torus2d:4x4", 50.0, 500.0)
    wraps = [lk.id for lk in topo.links
             if abs(lk.src % 4 - lk.dst % 4) == 3 or abs(lk.src // 4 - lk.dst // 4) == 3]
    assert len(wraps) == 16
    util = {lk.id: 0.5 if lk.id in wraps else 0.0 for lk in topo.links}
    fig, drawn = topology_figure(topo, util)
    arrows = drawn_arrows(fig)
    ax = fig.axes[0]
    colours = [a.arrow_patch.get_edgecolor() for a in ax.texts if isinstance(a, Annotation)]
    plt.close(fig)
    assert len(arrows) == 64
    by_link = {ids[0]: tuple(c) for ids, c in zip(drawn, colours, strict=True)}
    cold = next(i for i in by_link if i not in wraps)
    assert by_link[wraps[0]] != by_link[cold]
    hot = {i for i, c in by_link.items() if c == by_link[wraps[0]]}
    assert hot == set(wraps)  # each wrap-around link drawn in its own colour


@pytest.mark.parametrize("nodes, detailed", [(2, True), (16, True), (128, False)])
def test_a_superpod_drawing_covers_every_link(nodes, detailed):
    import matplotlib.pyplot as plt

    topo = parse_spec(f"superpod:nodes={nodes}", 50.0, 500.0)
    assert topo.num_npus == nodes * 8  # 16, 128 and 1024 GPUs
    fig, drawn = topology_figure(topo)
    ax = fig.axes[0]
    title = ax.get_title()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    segments = sum(len(c.get_segments()) for c in ax.collections
                   if isinstance(c, LineCollection))
    tiers = {t.get_text() for t in ax.texts}
    plt.close(fig)
    covered = [i for ids in drawn for i in ids]
    assert set(covered) == set(range(len(topo.links)))
    kinds = {k: sum(1 for lk in topo.links if lk.kind == k)
             for k in ("nvlink", "nic", "leaf-spine")}
    assert sum(kinds.values()) == len(topo.links)
    for kind, label in (("nvlink", "NVLink"), ("nic", "NIC"), ("leaf-spine", "leaf-spine")):
        assert any(text.startswith(label) and f"({kinds[kind]} links" in text
                   for text in legend), (label, legend)
    assert {"spines", "rail leaves", "rails (NIC)"} <= tiers
    if detailed:  # one line per cable (both directions), none shared
        assert len(covered) == len(set(covered))
        assert all(len(ids) == 2 for ids in drawn)
        cables = len(topo.links) // 2
        assert segments == cables + 2 * 8  # plus each rail's bus and its join to the leaf
        assert "GPUs" in tiers and "NVSwitch per node" in tiers
        assert "drawn per node" not in title
    else:
        assert "drawn per node and per rail" in title and "nodes (GPUs)" in tiers
        assert segments < 1000  # aggregated: not a line per cable


def test_heat_map_titles_use_human_units():
    topo = parse_spec("ring:4", 50.0, 500.0)
    result = SimpleNamespace(makespan_ns=6763910432.4,
                             links=[SimpleNamespace(id=0, utilization=0.017)])
    assert heatmap_title(topo, result) == \
        "ring:4: link utilization over 6.76 s (busiest link 1.7%)"


@pytest.mark.parametrize("spec, bundled", [("fattree:k=4", False), ("fattree:k=12", True),
                                           ("leafspine:leaves=4,hosts=8,spines=2", False)])
def test_layered_drawings_cover_every_link_and_bundle_large_fabrics(spec, bundled):
    import matplotlib.pyplot as plt

    topo = parse_spec(spec, 50.0, 500.0)
    fig, drawn = topology_figure(topo)
    ax = fig.axes[0]
    arrows = drawn_arrows(fig)
    lines = sum(len(c.get_segments()) for c in ax.collections if isinstance(c, LineCollection))
    labels = {t.get_text() for t in ax.texts}
    title = ax.get_title()
    plt.close(fig)
    covered = [i for ids in drawn for i in ids]
    assert sorted(covered) == list(range(len(topo.links)))  # each link exactly once
    assert "NPUs" in labels  # rows are named by what is in them
    if bundled:  # a cable (both directions) per line, the title says so
        assert not arrows and lines == len(drawn) == len(topo.links) // 2
        assert f"{len(topo.links)} directed links, each cable one line" in title
    else:
        assert len(arrows) == len(topo.links) and lines == 0
