"""The HTML report (``des simulate --report``): every number on the page is the JSON result's,
shown in a unit that reads back to it; user text is escaped; the page needs nothing outside
itself; and it renders in headless Chromium (skipped, with the reason, where Chromium is not
installed; CI installs it)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import TINY

from des.app.cli import EXIT_BAD_INPUT, EXIT_OK, main
from des.app.html_report import COLLECTIVE_ROWS, build_html, pointer, ramp
from des.core.units import parse_bandwidth, parse_size, parse_time

SCENARIOS: dict[str, dict[str, Any]] = {
    # compute, overlapped and exposed all-reduces and idle time on a ring
    "dp_step": {"name": "dp <step> & \"co\"", "description": "<script>alert(1)</script> & more",
                "topology": {"kind": "ring", "npus": 4, "bandwidth": "50 GB/s",
                             "latency": "500 ns"},
                "hardware": "A100-SXM4-80GB",
                "workload": {"kind": "data_parallel_step", "layers": 3,
                             "params_per_layer": 2_000_000, "tokens_per_rank": 512}},
    # the LLM inference report
    "inference": {"name": "inference", "topology": {"kind": "switch", "npus": 2,
                                                    "bandwidth": "100 GB/s", "latency": "1 us"},
                  "hardware": "A100-SXM4-80GB",
                  "workload": {"kind": "llm_inference", "model": TINY,
                               "parallel": {"tp": 2, "batch": 2, "prompt": 32,
                                            "generate": 3}}},
}


class Page(HTMLParser):
    """Every element carrying data-key/data-ratio, with its text; tag counts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.cells: list[dict[str, Any]] = []
        self.open: list[dict[str, Any]] = []
        self.tags: dict[str, int] = {}
        self.attrs: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        a = dict(attrs)
        self.attrs.append((tag, a))
        if "data-key" in a or "data-ratio" in a:
            cell = {"tag": tag, **a, "text": ""}
            self.cells.append(cell)
            self.open.append(cell)
        elif self.open and tag not in ("title",):
            self.open.append({"tag": tag, "skip": True})

    def handle_endtag(self, tag: str) -> None:
        if self.open:
            self.open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self.open and not self.open[-1].get("skip"):
            self.open[-1]["text"] += data


def resolve(doc: Any, ptr: str) -> Any:
    for token in ptr.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        doc = doc[int(token)] if isinstance(doc, list) else doc[token]
    return doc


def read_back(text: str, unit: str) -> float:
    """The number a cell's text shows, in the JSON's unit."""
    text = text.strip()
    if unit == "ns":
        return parse_time(text)
    if unit == "s":
        return parse_time(text) / 1e9
    if unit == "bytes":
        return parse_size(text)
    if unit == "GBps":
        return parse_bandwidth(text)
    if unit == "ratio":
        return float(text.rstrip("%")) / 100
    return float(text.replace(",", ""))


def close(shown: float, value: float, unit: str) -> bool:
    """Equal to the precision the page shows (3 significant digits; percent to 0.1%)."""
    if unit == "ratio":
        return abs(shown - value) <= 0.0005 + 1e-12
    return abs(shown - value) <= 0.006 * abs(value) + 1e-9


def simulate(tmp_path: Path, which: str, *extra: str) -> tuple[dict[str, Any], Path]:
    spec = tmp_path / f"{which}.yaml"
    spec.write_text(yaml.safe_dump(SCENARIOS[which]))
    json_path, page = tmp_path / "result.json", tmp_path / "run.html"
    assert main(["simulate", str(spec), "-q", "--json", str(json_path), "--report", str(page),
                 *extra]) == EXIT_OK
    return json.loads(json_path.read_text()), page


def parse(page: Path | str) -> Page:
    parser = Page()
    parser.feed(page.read_text() if isinstance(page, Path) else page)
    return parser


@pytest.mark.parametrize("which", sorted(SCENARIOS))
def test_every_number_on_the_page_is_the_json_results(which, tmp_path):
    doc, page = simulate(tmp_path, which)
    parsed = parse(page)
    keys = set()
    for cell in parsed.cells:
        if "data-ratio" in cell:
            part, whole = (resolve(doc, p) for p in cell["data-ratio"].split())
            assert float(cell["text"].rstrip("%")) / 100 == pytest.approx(part / whole,
                                                                         abs=0.0005)
            continue
        key, unit = cell["data-key"], cell["data-unit"]
        value = resolve(doc, key)
        assert json.loads(cell["data-value"]) == value, key
        keys.add(key)
        if cell["tag"] != "rect":  # a bar's text is its tooltip; its height is checked below
            assert close(read_back(cell["text"], unit), value, unit), (key, cell["text"], value)
    # what the page must show, each tied to the JSON
    assert "/makespan_ns" in keys
    for rank in doc["ranks"]:
        for part in ("compute_ns", "exposed_comm_ns", "idle_ns"):
            assert pointer("ranks", rank, part) in keys
    for i, _ in enumerate(doc["collectives"][:COLLECTIVE_ROWS]):
        assert {pointer("collectives", i, "time_ns"),
                pointer("collectives", i, "busbw_GBps")} <= keys
    if which == "inference":
        for metric in ("ttft_s", "tpot_s", "e2e_s", "output_tokens_per_s"):
            assert pointer("meta", "llm", metric) in keys
    else:
        assert doc["collectives"], "the data-parallel step has all-reduces to show"
        busy = max(doc["links"], key=lambda lk: lk["utilization"])
        assert pointer("links", doc["links"].index(busy), "utilization") in keys


def test_bars_are_to_scale_and_add_up_to_when_each_rank_finished(tmp_path):
    doc, page = simulate(tmp_path, "dp_step")
    bars = [c for c in parse(page).cells if c["tag"] == "rect"
            and c["data-key"].startswith("/ranks/")]
    assert len(bars) == 3 * len(doc["ranks"])
    tallest = max(bars, key=lambda b: json.loads(b["data-value"]))
    k = float(tallest["height"]) / json.loads(tallest["data-value"])  # px per ns
    for b in bars:  # one time axis for every bar (heights are written to 0.001 px)
        assert float(b["height"]) == pytest.approx(json.loads(b["data-value"]) * k, abs=2e-3)
    per_rank: dict[str, float] = {}
    for b in bars:
        rank = b["data-key"].split("/")[2]
        per_rank[rank] = per_rank.get(rank, 0.0) + float(b["height"])
    for rank, height in per_rank.items():  # compute + exposed comm + idle = finished
        assert height == pytest.approx(doc["ranks"][rank]["finished_ns"] * k, abs=5e-3)
    assert any(json.loads(b["data-value"]) > 0 for b in bars if "exposed" in b["data-key"])


def test_a_long_run_lists_the_first_collectives_and_groups_them_all(tmp_path):
    """A training step runs tens of thousands of collectives: the page lists the first ones and
    counts every one of them in a grouped table whose counts and summed times match the JSON."""
    doc, _ = simulate(tmp_path, "dp_step")
    many = [dict(c, index=i) for i, c in enumerate(doc["collectives"] * 200)][:450]
    doc = dict(doc, collectives=many)
    page = build_html(doc)
    parsed = parse(page)
    listed = {key for c in parsed.cells if (key := c.get("data-key", "")).startswith(
        "/collectives/") and key.endswith("/time_ns")}
    assert len(listed) == COLLECTIVE_ROWS
    assert f"the first {COLLECTIVE_ROWS} of 450 collectives" in page
    grouped = page.split("by total time")[1].split("</table>")[0]
    rows = [re.findall(r"<td[^>]*>([^<]*)</td>", r) for r in grouped.split("<tr>")[2:]]
    counts = [int(r[4].replace(",", "")) for r in rows]
    assert sum(counts) == 450
    totals = [read_back(r[5], "ns") for r in rows]
    assert sum(totals) == pytest.approx(sum(c["time_ns"] for c in many), rel=0.01)


def test_user_text_is_escaped_and_the_page_is_self_contained(tmp_path):
    _, page = simulate(tmp_path, "dp_step")
    text = page.read_text()
    assert "<script" not in text and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in text
    assert "dp &lt;step&gt; &amp; &quot;co&quot;" in text
    parsed = parse(page)
    assert "script" not in parsed.tags and "link" not in parsed.tags
    for _, attrs in parsed.attrs:  # nothing fetched from elsewhere
        for name in ("src", "href"):
            assert not (attrs.get(name) or "data:").lower().startswith(("http", "//", "file"))


def test_heat_map_png_embedded_or_every_link_in_svg_on_an_absolute_scale(tmp_path):
    doc, page = simulate(tmp_path, "dp_step")
    src = next(a["src"] for tag, a in parse(page).attrs if tag == "img")
    assert src.startswith("data:image/png;base64,")
    assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    svg = build_html({**doc, "links": doc["links"]})  # no PNG: the SVG heat map
    squares = [c for c in parse(svg).cells if c["tag"] == "rect"
               and c["data-key"].startswith("/links/")]
    assert sorted(c["data-key"] for c in squares) == sorted(
        pointer("links", i, "utilization") for i in range(len(doc["links"])))
    for c in squares:  # colour is the ramp at the absolute utilization, not relative to max
        assert c["fill"] == ramp(json.loads(c["data-value"]))
    assert ramp(0.0) == "#ffffcc" and ramp(1.0) == "#800026" and ramp(2.0) == ramp(1.0)
    assert "100%" in "".join(parse(svg).text)


def test_a_report_path_that_is_a_folder_is_bad_input(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(SCENARIOS["dp_step"]))
    assert main(["simulate", str(spec), "-q", "--report", str(tmp_path)]) == EXIT_BAD_INPUT


# ---------------------------------------------------------------------- headless Chromium
def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    why = ("Chromium is not installed (Debian: apt-get install chromium; .ci/run installs it "
           "when it runs as root with apt-get)")
    if os.environ.get("DES_REQUIRE_CHROMIUM"):  # .ci/run could install it: not finding it fails
        pytest.fail(why)
    pytest.skip(why)


def run_chromium(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                           "--disable-dev-shm-usage", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def test_the_report_renders_in_headless_chromium(tmp_path):
    doc, page = simulate(tmp_path, "inference")
    done = run_chromium("--dump-dom", page.resolve().as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    dom = parse(done.stdout)  # the DOM Chromium built, not our text
    shown = {c["data-key"]: c for c in dom.cells if "data-key" in c}
    assert json.loads(shown["/makespan_ns"]["data-value"]) == doc["makespan_ns"]
    assert json.loads(shown["/meta/llm/ttft_s"]["data-value"]) == doc["meta"]["llm"]["ttft_s"]
    classes = {a.get("class") for tag, a in dom.attrs if tag == "table"}
    assert {"slowest", "ranks", "llm"} <= classes
    assert dom.tags.get("svg", 0) >= 1
    shot = tmp_path / "report.png"
    done = run_chromium("--window-size=1200,1600", f"--screenshot={shot}", page.resolve().as_uri())
    assert done.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", done.stderr
    width, height = int.from_bytes(shot.read_bytes()[16:20]), int.from_bytes(
        shot.read_bytes()[20:24])
    assert (width, height) == (1200, 1600)
