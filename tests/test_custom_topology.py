"""Custom topologies from YAML edge lists and GraphML: happy paths and every error."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from helpers import route_devices

from topologies.base import TopologyError, shortest_path_router
from topologies.custom import from_dict, from_graphml, from_yaml

FABRIC = textwrap.dedent("""\
    name: my-fabric
    npus: 4
    switches: [{id: sw0, latency: 100 ns}, {id: sw1, kind: spine}]
    links:
      - {src: 0, dst: sw0, bandwidth: 100 GB/s, latency: 500 ns, duplex: true, kind: nic}
      - {src: 1, dst: sw0, bandwidth: 400 Gb/s, latency: 1 us, kind: nic}
      - {src: 2, dst: sw0, bandwidth: 50, latency: 20, kind: nic}
      - {src: 3, dst: sw0, bandwidth: 1 GiB/s, kind: nic}
      - {src: sw0, dst: sw1, bandwidth: 200 GB/s, kind: trunk}
      - {src: sw1, dst: 3, bandwidth: 25 GB/s, duplex: false}
    routing: explicit
    routes:
      - {src: 0, dst: 3, path: [0, sw0, sw1, 3]}
    """)


# ---------------------------------------------------------------------- YAML happy path
def test_yaml_counts_names_and_units():
    topo = from_yaml(FABRIC)
    assert topo.name == "my-fabric"
    assert (topo.num_npus, topo.num_devices) == (4, 6)
    assert topo.layout.names == {0: 0, 1: 1, 2: 2, 3: 3, "sw0": 4, "sw1": 5}
    assert len(topo.links) == 5 * 2 + 1  # five duplex links and one one-way link
    assert topo.switch_latency == {4: 100.0, 5: 0.0}
    assert topo.graph.nodes[5]["kind"] == "spine"

    def link(src: int, dst: int):
        (only,) = topo.links_between(src, dst)
        return only

    assert (link(0, 4).bandwidth, link(0, 4).latency, link(0, 4).kind) == (100.0, 500.0, "nic")
    assert (link(4, 1).bandwidth, link(4, 1).latency) == (50.0, 1000.0)  # 400 Gb/s, 1 us
    assert (link(2, 4).bandwidth, link(2, 4).latency) == (50.0, 20.0)  # bare numbers
    assert (link(3, 4).bandwidth, link(3, 4).latency) == (2**30 / 1e9, 0.0)
    assert link(4, 5).kind == "trunk"
    assert link(5, 3).kind == "link" and not topo.links_between(3, 5)


def test_explicit_route_is_used_verbatim_and_others_fall_back():
    topo = from_yaml(FABRIC)
    # the explicit route is longer than the 2-hop shortest path, and is still used
    assert route_devices(topo, 0, 3) == [0, 4, 5, 3]
    route = topo.route(0, 3, 5)
    assert route == (topo.links_between(0, 4)[0].id, topo.links_between(4, 5)[0].id,
                     topo.links_between(5, 3)[0].id)
    # routes are directional: 3 -> 0 has none and takes the shortest path
    assert route_devices(topo, 3, 0) == [3, 4, 0]
    assert topo.route(1, 2) == shortest_path_router(topo, 1, 2)
    assert route_devices(topo, 1, 2) == [1, 4, 2]


def test_explicit_route_broken_by_a_fault_falls_back_to_shortest_path():
    topo = from_yaml(FABRIC)
    topo.links_between(4, 5)[0].up = False
    topo.invalidate_routes()
    assert route_devices(topo, 0, 3) == [0, 4, 3]


def test_shortest_path_and_ecmp_routing():
    data = {
        "npus": 2, "switches": ["a", "b"],
        "links": [{"src": n, "dst": s, "bandwidth": 10} for n in (0, 1) for s in ("a", "b")],
    }
    shortest = from_dict(data)
    assert {tuple(route_devices(shortest, 0, 1, f)) for f in range(20)} == {(0, 2, 1)}
    ecmp = from_dict({**data, "routing": "ecmp", "seed": 3})
    assert {tuple(route_devices(ecmp, 0, 1, f)) for f in range(20)} == {(0, 2, 1), (0, 3, 1)}


def test_nodes_list_names_npus_in_order(tmp_path):
    path = tmp_path / "fabric.yaml"
    path.write_text(textwrap.dedent("""\
        nodes: [gpu-b, {id: gpu-a}, {id: sw, kind: switch, latency: 1 us}]
        links:
          - {src: gpu-a, dst: sw, bandwidth: 10 GB/s}
          - {src: gpu-b, dst: sw, bandwidth: 10 GB/s}
        """))
    for spec in (path, str(path)):
        topo = from_yaml(spec)
        assert topo.name == "fabric"
        assert topo.layout.names == {"gpu-b": 0, "gpu-a": 1, "sw": 2}
        assert topo.switch_latency == {2: 1000.0}
        assert route_devices(topo, 0, 1) == [0, 2, 1]


def test_errors_from_a_file_name_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("npus: 2\nlinks: [{src: 0, dst: 7, bandwidth: 1}]\n")
    with pytest.raises(TopologyError, match=re.escape(f"{path}: links[0].dst: unknown device")):
        from_yaml(path)
    with pytest.raises(TopologyError, match="cannot read"):
        from_yaml(tmp_path / "missing.yaml")


# ---------------------------------------------------------------------- YAML errors
BASE = "npus: 4\nswitches: [sw0]\n"
LINKS = ("links:\n  - {src: 0, dst: sw0, bandwidth: 1}\n  - {src: 1, dst: sw0, bandwidth: 1}\n"
         "  - {src: 2, dst: sw0, bandwidth: 1}\n")
EXPLICIT = BASE + LINKS + "  - {src: 3, dst: sw0, bandwidth: 1}\nrouting: explicit\n"


@pytest.mark.parametrize(("text", "message"), [
    (BASE + LINKS + "  - {src: 3, dst: sw9, bandwidth: 1}\n",
     "links[3].dst: unknown device 'sw9'; known: 0..3, sw0"),
    (BASE + "links: [{src: 0, dst: sw0, bandwidth: 0 GB/s}]\n",
     "links[0].bandwidth: must be > 0"),
    (BASE + "links: [{src: 0, dst: sw0, bandwidth: -5 GB/s}]\n",
     "links[0].bandwidth: cannot read '-5 GB/s' as a bandwidth (must not be negative)"),
    (BASE + "links: [{src: 0, dst: sw0, bandwidth: 5 furlongs}]\n",
     "links[0].bandwidth: cannot read '5 furlongs'"),
    (BASE + "links: [{src: 0, dst: sw0, bandwidth: 1, latency: -2 ns}]\n",
     "links[0].latency: cannot read '-2 ns' as a time (must not be negative)"),
    (BASE + "links: [{src: sw0, dst: sw0, bandwidth: 1}]\n",
     "links[0]: a link from 'sw0' to itself"),
    (BASE + "links: [{src: 0, bandwidth: 1}]\n",
     "links[0].dst: required key is missing"),
    (BASE + "links: [{src: 0, dst: sw0}]\n",
     "links[0].bandwidth: required key is missing"),
    (BASE + "links: [{src: 0, dst: sw0, bandwidth: 1, duplex: maybe}]\n",
     "links[0].duplex: expected true or false"),
    (BASE + "links: [{src: 0, dst: sw0, bandwidth: 1, colour: red}]\n",
     "links[0].colour: unknown key; allowed keys: src, dst, bandwidth, latency, duplex, kind"),
    ("npus: 4\nswitches: [{id: sw0}, {id: sw1}, {id: sw0}]\nlinks: []\n",
     "switches[2].id: duplicate device id 'sw0' (already switches[0].id)"),
    ("npus: 4\nswitches: [3]\nlinks: []\n",
     "switches[0]: duplicate device id 3 (already NPU 3)"),
    ("npus: 4\nswitches: [{id: s, speed: 3}]\nlinks: []\n",
     "switches[0].speed: unknown key; allowed keys: id, latency, kind"),
    ("npus: 4\nlinkz: []\n",
     "linkz: unknown key; allowed keys: name, description, npus, nodes, switches, links, "
     "routing, routes, seed"),
    ("npus: 4\n", "links: required key is missing"),
    ("switches: [sw0]\nlinks: []\n", "npus: required key is missing"),
    ("npus: 0\nlinks: []\n", "npus: expected a positive integer, got 0"),
    ("npus: 3\nnodes: [a, b]\nlinks: []\n", "npus: 3 disagrees with the 2 NPU entries"),
    ("npus: 2\nnpus: 3\nlinks: []\n", "duplicate key 'npus'"),
    ("npus: [1\n", "not valid YAML"),
    ("- 1\n- 2\n", "topology: expected a mapping"),
    (BASE + LINKS + "routing: fastest\n",
     "routing: unknown routing 'fastest'; expected one of shortest_path, ecmp, explicit"),
    (BASE + LINKS + "routes: [{src: 0, dst: 1, path: [0, sw0, 1]}]\n",
     "routes: only allowed with routing: explicit"),
    (EXPLICIT + "routes: [{src: 0, dst: 3, path: [1, sw0, 3]}]\n",
     "routes[0].path: starts at 1, not at src 0"),
    (EXPLICIT + "routes: [{src: 0, dst: 3, path: [0, sw0, 2]}]\n",
     "routes[0].path: ends at 2, not at dst 3"),
    (EXPLICIT + "routes: [{src: 0, dst: 3, path: [0, 3]}]\n",
     "routes[0].path[0]->path[1]: no link from 0 to 3"),
    (EXPLICIT + "routes: [{src: 0, dst: 3, path: [0, sw0, sw7, 3]}]\n",
     "routes[0].path[2]: unknown device 'sw7'"),
    (EXPLICIT + "routes: [{src: 0, dst: 3, path: [0, sw0, 1, sw0, 3]}]\n",
     "routes[0].path: visits a device twice"),
    (EXPLICIT + "routes: [{src: sw0, dst: 3, path: [sw0, 3]}]\n",
     "routes[0].src: 'sw0' is a switch"),
    (EXPLICIT + "routes: [{src: 0, dst: 3, path: [0, sw0, 3]}, {src: 0, dst: 3, "
     "path: [0, sw0, 3]}]\n",
     "routes[1]: a second route from 0 to 3"),
])
def test_yaml_errors_name_the_key_path(text, message):
    with pytest.raises(TopologyError, match=re.escape(message)):
        from_yaml(text)


def test_explicit_routes_must_form_a_valid_file_for_the_error_fixtures():
    """The error fixtures above differ from a valid file only in the broken part."""
    topo = from_yaml(EXPLICIT + "routes: [{src: 0, dst: 3, path: [0, sw0, 3]}]\n")
    assert route_devices(topo, 0, 3) == [0, 4, 3]


# ---------------------------------------------------------------------- GraphML
GRAPHML = """<?xml version="1.0" encoding="UTF-8"?>
<graphml xmlns="http://graphml.graphdrawing.org/xmlns">
  <key id="k" for="node" attr.name="kind" attr.type="string"><default>npu</default></key>
  <key id="nl" for="node" attr.name="latency" attr.type="double"/>
  <key id="bw" for="edge" attr.name="bandwidth" attr.type="string"/>
  <key id="el" for="edge" attr.name="latency" attr.type="string"/>
  <key id="ek" for="edge" attr.name="kind" attr.type="string"/>
  <graph id="G" edgedefault="undirected">
{body}
  </graph>
</graphml>
"""

HAPPY_BODY = """
    <node id="gpu10"/>
    <node id="gpu2"/>
    <node id="spine"><data key="k">switch</data><data key="nl">150</data></node>
    <node id="gpu1"><data key="k">npu</data></node>
    <edge source="gpu1" target="spine"><data key="bw">400 Gb/s</data>
      <data key="el">1 us</data><data key="ek">nic</data></edge>
    <edge source="gpu2" target="spine"><data key="bw">100</data><data key="el">500</data></edge>
    <edge source="gpu10" target="spine"><data key="bw">100.0</data></edge>
    <edge source="gpu10" target="gpu1" directed="true"><data key="bw">12.5</data></edge>
"""


def write(tmp_path: Path, body: str, name: str = "fabric.graphml") -> Path:
    path = tmp_path / name
    path.write_text(GRAPHML.format(body=body), encoding="utf-8")
    return path


def test_graphml_happy_path(tmp_path):
    topo = from_graphml(write(tmp_path, HAPPY_BODY))
    assert topo.name == "fabric"
    assert (topo.num_npus, topo.num_devices) == (3, 4)
    # NPUs in natural order of their ids, then the switch
    assert topo.layout.names == {"gpu1": 0, "gpu2": 1, "gpu10": 2, "spine": 3}
    assert topo.switch_latency == {3: 150.0}
    assert len(topo.links) == 3 * 2 + 1  # undirected edges are duplex; one directed edge
    (nic,) = topo.links_between(0, 3)
    assert (nic.bandwidth, nic.latency, nic.kind) == (50.0, 1000.0, "nic")
    (back,) = topo.links_between(3, 0)
    assert (back.bandwidth, back.latency) == (50.0, 1000.0)
    (plain,) = topo.links_between(1, 3)
    assert (plain.bandwidth, plain.latency, plain.kind) == (100.0, 500.0, "link")
    assert topo.links_between(2, 0)[0].bandwidth == 12.5 and not topo.links_between(0, 2)
    assert route_devices(topo, 2, 0) == [2, 0]  # the direct one-way link
    assert route_devices(topo, 0, 2) == [0, 3, 2]


def test_graphml_key_defaults_apply(tmp_path):
    path = tmp_path / "defaults.graphml"
    path.write_text("""<?xml version="1.0"?>
<graphml xmlns="http://graphml.graphdrawing.org/xmlns">
  <key id="t" for="node" attr.name="kind"><default>switch</default></key>
  <key id="b" for="edge" attr.name="bandwidth"><default>25 GB/s</default></key>
  <key id="c" for="all" attr.name="kind"><default>ignored</default></key>
  <key id="k" for="edge" attr.name="kind"><default>fabric</default></key>
  <graph edgedefault="directed">
    <node id="0"><data key="t">npu</data></node>
    <node id="1"><data key="t">npu</data></node>
    <node id="x"/>
    <edge source="0" target="x"/>
    <edge source="x" target="1"><data key="b">10</data></edge>
  </graph>
</graphml>
""")
    topo = from_graphml(path)
    assert (topo.num_npus, topo.num_devices) == (2, 3)
    assert [(lk.src, lk.dst, lk.bandwidth, lk.kind) for lk in topo.links] == [
        (0, 2, 25.0, "fabric"), (2, 1, 10.0, "fabric")]


def test_graphml_ecmp_option(tmp_path):
    topo = from_graphml(write(tmp_path, HAPPY_BODY), routing="ecmp", seed=4)
    assert topo.router_state.seed == 4
    assert route_devices(topo, 0, 1) == [0, 3, 1]
    with pytest.raises(TopologyError, match="unknown routing 'fast'"):
        from_graphml(write(tmp_path, HAPPY_BODY), routing="fast")


@pytest.mark.parametrize(("body", "message"), [
    ('<node id="a"/><node id="b"/><edge source="a" target="ghost"><data key="bw">1</data>'
     '</edge>', "edge 0 (a -> ghost): dangling endpoint 'ghost', not a declared node"),
    ('<node id="a"/><node id="b"/><edge id="e7" source="a" target="b"/>',
     "edge 0 'e7' (a -> b): missing bandwidth"),
    ('<node id="a"/><node id="b"/><edge source="a" target="b"><data key="bw">0</data></edge>',
     "edge 0 (a -> b): bandwidth: must be > 0"),
    ('<node id="a"/><node id="b"/><edge source="a" target="b"><data key="bw">-4</data></edge>',
     "must not be negative"),
    ('<node id="a"/><node id="b"/><edge source="a" target="b"><data key="bw">1</data>'
     '<data key="el">soon</data></edge>', "edge 0 (a -> b): latency: cannot read 'soon'"),
    ('<node id="a"/><edge source="a" target="a"><data key="bw">1</data></edge>',
     "an edge from a node to itself"),
    ('<node id="s"><data key="k">switch</data></node>', "no NPU nodes"),
    ('<node id="a"><data key="k">router</data></node>', "node 'a': unknown kind 'router'"),
    ('<node id="a"/><node id="a"/>', "node 'a': declared twice"),
    ('<node id="a"><data key="zz">1</data></node>', "undeclared key 'zz'"),
])
def test_graphml_errors(tmp_path, body, message):
    path = write(tmp_path, body)
    with pytest.raises(TopologyError, match=re.escape(message)) as info:
        from_graphml(path)
    assert str(info.value).startswith(str(path))


def test_graphml_billion_laughs_is_refused(tmp_path):
    path = tmp_path / "lol.graphml"
    path.write_text(textwrap.dedent("""\
        <?xml version="1.0"?>
        <!DOCTYPE graphml [
          <!ENTITY lol "lol">
          <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
          <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
          <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
          <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
          <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
          <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
          <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
          <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
          <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
        ]>
        <graphml><graph edgedefault="undirected"><node id="&lol9;"/></graph></graphml>
        """))
    with pytest.raises(TopologyError, match=r"refused unsafe XML.*EntitiesForbidden"):
        from_graphml(path)


def test_graphml_external_entity_is_refused(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("npu")
    path = tmp_path / "xxe.graphml"
    path.write_text(f"""<?xml version="1.0"?>
<!DOCTYPE graphml [<!ENTITY x SYSTEM "file://{secret}">]>
<graphml><graph><node id="&x;"/></graph></graphml>
""")
    with pytest.raises(TopologyError, match="refused unsafe XML"):
        from_graphml(path)


def test_graphml_malformed_and_missing_files(tmp_path):
    bad = tmp_path / "bad.graphml"
    bad.write_text("<graphml><graph>")
    with pytest.raises(TopologyError, match="not well-formed XML"):
        from_graphml(bad)
    with pytest.raises(TopologyError, match="cannot read"):
        from_graphml(tmp_path / "nope.graphml")
    other = tmp_path / "other.graphml"
    other.write_text("<svg/>")
    with pytest.raises(TopologyError, match="not <graphml>"):
        from_graphml(other)
