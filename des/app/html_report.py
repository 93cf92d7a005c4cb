"""The HTML report of one run (``des simulate --report run.html``): a single self-contained page.

Everything on the page is built from the run's JSON document (:meth:`Result.to_dict`, passed
through ``json`` once so the values are exactly those ``result.json`` holds), so the page and
the JSON cannot disagree. Every number shown carries its source: ``data-key`` is a JSON pointer
(RFC 6901) into that document, ``data-value`` the raw JSON value, ``data-unit`` how the text
shows it (``ns``/``s`` as a time, ``bytes``, ``GBps``, ``ratio`` as a percentage, ``count``,
``number``); a share of two figures carries ``data-ratio="POINTER POINTER"`` instead. The test
suite reads these back and compares them with ``result.json``.

No scripts, no external files: CSS is inline, the per-rank time breakdown is an inline SVG drawn
here, and the link heat map is the matplotlib drawing of :mod:`des.app.plots` embedded as a
base64 PNG when matplotlib is installed, else an inline SVG of every directed link on an
absolute 0-100% utilization scale with a colour bar. Text from the user's files (names,
descriptions, notes) is escaped with :func:`html.escape`.
"""

from __future__ import annotations

import base64
import html
import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from des import __version__
from des.core.results import Result
from des.core.units import format_bandwidth, format_size, format_time

#: Colours of the time breakdown (Paul Tol's colour-blind-safe "bright" scheme).
PART_COLOURS = {"compute_ns": "#4477AA", "exposed_comm_ns": "#EE6677", "idle_ns": "#BBBBBB"}
PART_NAMES = {"compute_ns": "compute", "exposed_comm_ns": "exposed communication",
              "idle_ns": "idle"}
#: The heat map's colour ramp from 0% to 100% utilization (light yellow to dark red, after
#: ColorBrewer's sequential YlOrRd), interpolated linearly between these stops.
RAMP = ((1.0, 1.0, 0.80), (1.0, 0.85, 0.46), (0.99, 0.55, 0.24), (0.89, 0.10, 0.11),
        (0.50, 0.0, 0.15))
HOT_LINKS = 10
CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:1.5em auto;
max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:1.8em;
border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f4f4f4}td.text,th.text{text-align:left}
.muted{color:#666;font-size:.9em}.big{font-size:1.3em;font-weight:600}
.scroll{max-height:32em;overflow:auto;display:inline-block}
svg text{font-family:inherit}img{max-width:min(100%,760px)}
"""


# ---------------------------------------------------------------------- public
def report_document(result: Result) -> dict[str, Any]:
    """The run's JSON document as ``result.json`` holds it (without ops): a JSON round trip of
    :meth:`Result.to_dict`, so tuples are lists and mapping keys strings, exactly as on disk."""
    return json.loads(json.dumps(result.to_dict(include_ops=False)))


def build_html(doc: Mapping[str, Any], *, name: str = "", description: str = "",
               heatmap_png: bytes | None = None) -> str:
    """The report page for a JSON document (see :func:`report_document`). ``heatmap_png``: a
    PNG of the link heat map to embed; without it the heat map is an inline SVG."""
    meta = doc.get("meta", {})
    name = name or str(meta.get("scenario", "des run"))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(name)}: des report</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{_e(name)}</h1>",
    ]
    if description:
        parts.append(f'<p class="muted">{_e(description)}</p>')
    parts += [_summary(doc), _breakdown_chart(doc), _rank_table(doc), _hot_links(doc),
              _heatmap(doc, heatmap_png), _collectives(doc), _workload_reports(doc)]
    parts.append(f'<p class="muted">des {_e(__version__)} · schema '
                 f'{_e(str(doc.get("schema", "")))} · every figure on this page is read from '
                 "the run's JSON result</p></body></html>")
    return "\n".join(p for p in parts if p)


def write_report(result: Result, path: str | Path, *, name: str = "", description: str = "",
                 topology: Any = None, heatmap: str = "auto") -> Path:
    """Write the report of ``result`` to ``path``. ``heatmap``: ``png`` draws the link heat map
    with matplotlib on ``topology`` (:func:`des.app.plots.draw_link_heatmap`), ``svg`` draws the
    per-link SVG, ``auto`` the PNG when matplotlib is installed and a topology given."""
    if heatmap not in ("auto", "png", "svg"):
        raise ValueError(f"heatmap: expected auto, png or svg, got {heatmap!r}")
    png = None
    if heatmap != "svg" and topology is not None:
        png = _heatmap_png(topology, result, required=heatmap == "png")
    elif heatmap == "png":
        raise ValueError("heatmap='png' needs the topology")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    page = build_html(report_document(result), name=name, description=description,
                      heatmap_png=png)
    path.write_text(page, encoding="utf-8")
    return path


# ---------------------------------------------------------------------- cells
def pointer(*tokens: str | int) -> str:
    """A JSON pointer (RFC 6901) to ``tokens``."""
    return "".join("/" + str(t).replace("~", "~0").replace("/", "~1") for t in tokens)


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def show(value: Any, unit: str) -> str:
    """How a value of ``unit`` reads on the page."""
    if value is None:
        return "-"
    if unit == "ns":
        return format_time(value)
    if unit == "s":
        return format_time(value * 1e9)
    if unit == "bytes":
        return format_size(value)
    if unit == "GBps":
        return format_bandwidth(value)
    if unit == "ratio":
        return f"{value:.1%}"
    if unit == "count":
        return f"{value:,}"
    return f"{value:,.4g}"


def _cell(path: str, value: Any, unit: str, tag: str = "td", extra: str = "") -> str:
    """A cell showing a JSON value, tagged with where it came from."""
    if value is None or isinstance(value, bool):
        return f"<{tag}{extra}>{_e(str(value) if isinstance(value, bool) else '-')}</{tag}>"
    return (f'<{tag}{extra} data-key="{_e(path)}" data-value="{_e(json.dumps(value))}" '
            f'data-unit="{unit}">{_e(show(value, unit))}</{tag}>')


def _ratio_cell(part: str, whole: str, value: float, tag: str = "td") -> str:
    """A share of two JSON values (part / whole), shown as a percentage."""
    return f'<{tag} data-ratio="{_e(part)} {_e(whole)}">{value:.1%}</{tag}>'


def _text(value: Any) -> str:
    return f'<td class="text">{_e(str(value))}</td>'


def _table(headers: Sequence[str], rows: Sequence[str], caption: str = "",
           scroll: bool = False, cls: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "\n".join(f"<tr>{r}</tr>" for r in rows)
    cap = f"<caption class='muted'>{_e(caption)}</caption>" if caption else ""
    table = f'<table class="{cls}">{cap}<thead><tr>{head}</tr></thead><tbody>\n{body}\n' \
            "</tbody></table>"
    return f'<div class="scroll">{table}</div>' if scroll else table


# ---------------------------------------------------------------------- sections
def _slowest(doc: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]] | None:
    ranks = doc.get("ranks", {})
    if not ranks:
        return None
    return max(ranks.items(), key=lambda kv: (kv[1]["finished_ns"], -int(kv[0])))


def _summary(doc: Mapping[str, Any]) -> str:
    meta = doc.get("meta", {})
    out = ['<h2 id="summary">Summary</h2>',
           f'<p class="big">makespan {_cell("/makespan_ns", doc["makespan_ns"], "ns", "span")}'
           "</p>"]
    facts = [f"topology {_e(str(meta.get('topology', '?')))}",
             f"{_e(str(meta.get('npus', len(doc.get('ranks', {})))))} NPUs",
             f"{len(doc.get('links', []))} directed links",
             f"backend {_e(str(meta.get('backend', '?')))}"
             + (f" ({_e(str(meta['transport']))})" if meta.get("transport") else ""),
             f"hardware {_e(str(meta.get('hardware') or 'none (explicit durations)'))}"]
    out.append(f'<p class="muted">{" · ".join(facts)}</p>')
    slowest = _slowest(doc)
    if slowest is not None and slowest[1]["finished_ns"] > 0:
        rank, st = slowest
        whole = pointer("ranks", rank, "finished_ns")
        rows = [f'<td class="text">finished</td>{_cell(whole, st["finished_ns"], "ns")}'
                f'<td>100.0%</td>']
        for key in ("compute_ns", "exposed_comm_ns", "idle_ns"):
            part = pointer("ranks", rank, key)
            rows.append(f'<td class="text">{PART_NAMES[key]}</td>{_cell(part, st[key], "ns")}'
                        f'{_ratio_cell(part, whole, st[key] / st["finished_ns"])}')
        out.append(_table(("", "time", "share"), rows,
                          caption=f"the slowest rank, {rank}: where its time went",
                          cls="slowest"))
    for key, label in (("failed_links", "links down"), ("derated_links", "links derated"),
                       ("timed_faults", "timed faults")):
        if meta.get(key):
            listed = ", ".join(str(x) for x in meta[key][:20])
            out.append(f'<p class="muted">{label}: {_e(listed)}</p>')
    return "\n".join(out)


def _breakdown_chart(doc: Mapping[str, Any]) -> str:
    """Per rank, a stacked bar: compute, exposed communication, idle (they add up to the time
    the rank finished), on one time axis up to the makespan."""
    ranks = sorted(doc.get("ranks", {}).items(), key=lambda kv: int(kv[0]))
    top = doc["makespan_ns"]
    if not ranks or top <= 0:
        return ""
    width, height, left, bottom, pad = 900.0, 260.0, 70.0, 40.0, 12.0
    step = width / len(ranks)
    bar = step * (0.8 if step >= 4 else 1.0)
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" id="breakdown" role="img" '
           f'width="{left + width + pad:.0f}" height="{height + bottom + pad + 24:.0f}" '
           f'viewBox="0 0 {left + width + pad:.0f} {height + bottom + pad + 24:.0f}">',
           "<title>time per rank: compute, exposed communication, idle</title>"]
    base_y = pad + height
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = base_y - frac * height
        svg.append(f'<line x1="{left}" x2="{left + width}" y1="{y:.2f}" y2="{y:.2f}" '
                   'stroke="#ddd"/>')
        svg.append(f'<text x="{left - 6}" y="{y + 4:.2f}" font-size="11" text-anchor="end">'
                   f"{_e(format_time(frac * top))}</text>")
    for i, (rank, st) in enumerate(ranks):
        x = left + i * step + (step - bar) / 2
        y = base_y
        for key, colour in PART_COLOURS.items():
            h = st[key] / top * height
            y -= h
            svg.append(f'<rect x="{x:.3f}" y="{y:.3f}" width="{bar:.3f}" height="{h:.3f}" '
                       f'fill="{colour}" data-key="{_e(pointer("ranks", rank, key))}" '
                       f'data-value="{_e(json.dumps(st[key]))}" data-unit="ns">'
                       f"<title>rank {_e(rank)}: {PART_NAMES[key]} "
                       f"{_e(format_time(st[key]))}</title></rect>")
    every = max(1, round(len(ranks) / 16))
    for i in range(0, len(ranks), every):
        x = left + (i + 0.5) * step
        svg.append(f'<text x="{x:.2f}" y="{base_y + 14:.2f}" font-size="10" '
                   f'text-anchor="middle">{_e(ranks[i][0])}</text>')
    svg.append(f'<text x="{left + width / 2}" y="{base_y + 28:.2f}" font-size="11" '
               'text-anchor="middle">rank</text>')
    lx = left
    for key, colour in PART_COLOURS.items():
        svg.append(f'<rect x="{lx}" y="{base_y + 34}" width="10" height="10" fill="{colour}"/>'
                   f'<text x="{lx + 14}" y="{base_y + 43}" font-size="11">'
                   f"{PART_NAMES[key]}</text>")
        lx += 170
    svg.append("</svg>")
    return ('<h2 id="breakdown-title">Time per rank</h2>'
            '<p class="muted">Each bar is one rank: compute, communication no compute '
            "overlaps, and idle time add up to when the rank finished; the axis runs to the "
            "makespan.</p>" + "\n".join(svg))


def _rank_groups(doc: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any]]]:
    """Consecutive ranks with identical figures share a row: (label, first rank, stats)."""
    keys = ("finished_ns", "compute_ns", "comm_ns", "exposed_comm_ns", "overlap_ns", "idle_ns")
    groups: list[tuple[list[int], tuple, Mapping[str, Any]]] = []
    for rank, st in sorted(doc.get("ranks", {}).items(), key=lambda kv: int(kv[0])):
        sig = (*(st[k] for k in keys), st.get("represented_by"))
        r = int(rank)
        if groups and groups[-1][1] == sig and groups[-1][0][-1] == r - 1:
            groups[-1][0].append(r)
        else:
            groups.append(([r], sig, st))
    return [(str(g[0]) if len(g) == 1 else f"{g[0]}-{g[-1]}", str(g[0]), st)
            for g, _, st in groups]


def _rank_table(doc: Mapping[str, Any]) -> str:
    rows = []
    for label, first, st in _rank_groups(doc):
        cells = [_text(label)]
        for key in ("finished_ns", "compute_ns", "comm_ns", "exposed_comm_ns", "overlap_ns",
                    "idle_ns"):
            cells.append(_cell(pointer("ranks", first, key), st[key], "ns"))
        rep = st.get("represented_by")
        cells.append(_text("" if rep is None else f"rank {rep}"))
        rows.append("".join(cells))
    return ('<h2 id="ranks">Per-rank time</h2>' + _table(
        ("ranks", "finished", "compute", "comm", "exposed comm", "overlap", "idle",
         "figures of"), rows, caption="consecutive ranks with identical figures share a row; "
        "'figures of': a folded rank carries the simulated rank's figures",
        scroll=len(rows) > 24, cls="ranks"))


def _hot_links(doc: Mapping[str, Any]) -> str:
    links = [(i, lk) for i, lk in enumerate(doc.get("links", [])) if lk["bytes"] > 0]
    links.sort(key=lambda il: (-il[1]["utilization"], il[1]["id"]))
    rows = []
    for i, lk in links[:HOT_LINKS]:
        p = lambda key, i=i: pointer("links", i, key)  # noqa: E731
        rows.append(_text(f"{lk['src']}->{lk['dst']}") + _text(lk["kind"])
                    + _cell(p("bandwidth_GBps"), lk["bandwidth_GBps"], "GBps")
                    + _cell(p("bytes"), lk["bytes"], "bytes")
                    + _cell(p("messages"), lk["messages"], "count")
                    + _cell(p("busy_ns"), lk["busy_ns"], "ns")
                    + _cell(p("utilization"), lk["utilization"], "ratio")
                    + _cell(p("peak_queue"), lk["peak_queue"], "count"))
    if not rows:
        return '<h2 id="links">Hottest links</h2><p class="muted">no link carried traffic</p>'
    return ('<h2 id="links">Hottest links</h2>' + _table(
        ("link", "kind", "bandwidth", "bytes", "messages", "busy", "utilization", "peak queue"),
        rows, caption=f"the {len(rows)} busiest of {len(doc['links'])} directed links "
        "(utilization: share of the run the link was busy)", cls="links"))


def ramp(value: float) -> str:
    """The heat map colour of a utilization in [0, 1] (clamped), as #rrggbb."""
    v = min(max(value, 0.0), 1.0) * (len(RAMP) - 1)
    i = min(int(v), len(RAMP) - 2)
    t = v - i
    rgb = [a + (b - a) * t for a, b in zip(RAMP[i], RAMP[i + 1], strict=True)]
    return "#" + "".join(f"{round(c * 255):02x}" for c in rgb)


def _heatmap(doc: Mapping[str, Any], png: bytes | None) -> str:
    links = doc.get("links", [])
    busiest = max((lk["utilization"] for lk in links), default=0.0)
    head = ('<h2 id="heatmap">Link heat map</h2>'
            f'<p class="muted">every one of the {len(links)} directed links, coloured by '
            f"utilization on an absolute 0-100% scale (busiest {busiest:.1%}) over "
            f"{_e(format_time(doc['makespan_ns']))}</p>")
    if png is not None:
        data = base64.b64encode(png).decode("ascii")
        return head + (f'<img id="heatmap-png" alt="link utilization drawn on the topology" '
                       f'src="data:image/png;base64,{data}">')
    return head + _heatmap_svg(links)


def _heatmap_svg(links: Sequence[Mapping[str, Any]]) -> str:
    """One square per directed link, grouped by link kind, in link-id order; a colour bar."""
    by_kind: dict[str, list[int]] = {}
    for i, lk in enumerate(links):
        by_kind.setdefault(lk["kind"] or "link", []).append(i)
    cols, label_w, top = 64, 110, 8
    cell = 16 if len(links) <= 1024 else 12
    rows_total = sum(-(-len(ids) // cols) for ids in by_kind.values())
    height = top + rows_total * cell + len(by_kind) * 8 + 60
    width = label_w + cols * cell + 24  # room for the colour bar's "100%"
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" id="heatmap-svg" role="img" '
           f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
           "<title>link utilization, one square per directed link</title>"]
    y = top
    for kind, ids in by_kind.items():
        svg.append(f'<text x="0" y="{y + 10}" font-size="11">{_e(kind)} ({len(ids)})</text>')
        for n, i in enumerate(ids):
            lk = links[i]
            row, col = divmod(n, cols)
            util = lk["utilization"]
            stroke = ' stroke="#d00" stroke-dasharray="2,1"' if lk.get("derate", 1.0) < 1.0 \
                else ""
            svg.append(f'<rect x="{label_w + col * cell}" y="{y + row * cell}" '
                       f'width="{cell - 1}" height="{cell - 1}" fill="{ramp(util)}"{stroke} '
                       f'data-key="{_e(pointer("links", i, "utilization"))}" '
                       f'data-value="{_e(json.dumps(util))}" data-unit="ratio">'
                       f"<title>link {lk['id']}: {lk['src']}-&gt;{lk['dst']} {_e(kind)}, "
                       f"{util:.1%} busy, {_e(format_size(lk['bytes']))}</title></rect>")
        y += -(-len(ids) // cols) * cell + 8
    # colour bar: 0% .. 100%
    y += 10
    steps = 50
    bar_w = cols * cell
    for s in range(steps):
        svg.append(f'<rect x="{label_w + s * bar_w / steps:.2f}" y="{y}" '
                   f'width="{bar_w / steps + 0.5:.2f}" height="12" '
                   f'fill="{ramp(s / (steps - 1))}"/>')
    svg.append(f'<text x="0" y="{y + 10}" font-size="11">utilization</text>')
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        svg.append(f'<text x="{label_w + frac * bar_w:.1f}" y="{y + 26}" font-size="10" '
                   f'text-anchor="middle">{frac:.0%}</text>')
    svg.append("</svg>")
    return "\n".join(svg)


def _heatmap_png(topology: Any, result: Result, required: bool) -> bytes | None:
    from des.app.plots import PlotError, draw_link_heatmap

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = draw_link_heatmap(topology, result, Path(tmp) / "heat.png")
        except PlotError:
            if required:
                raise
            return None
        return path.read_bytes()


#: Collectives listed one by one; beyond this the page shows them grouped (a training step can
#: run tens of thousands, which would make a page of tens of megabytes) and the JSON has them all.
COLLECTIVE_ROWS = 200


def _collectives(doc: Mapping[str, Any]) -> str:
    colls = doc.get("collectives", [])
    if not colls:
        return ""
    rows = []
    for i, c in enumerate(colls[:COLLECTIVE_ROWS]):
        p = lambda key, i=i: pointer("collectives", i, key)  # noqa: E731
        rows.append(_cell(p("index"), c["index"], "count") + _text(c["collective"])
                    + _text(c["algorithm"]) + _text(len(c["group"]))
                    + _cell(p("nbytes"), c["nbytes"], "bytes")
                    + _cell(p("chunks"), c["chunks"], "count")
                    + _cell(p("start_ns"), c["start_ns"], "ns")
                    + _cell(p("time_ns"), c["time_ns"], "ns")
                    + _cell(p("algbw_GBps"), c["algbw_GBps"], "GBps")
                    + _cell(p("busbw_GBps"), c["busbw_GBps"], "GBps"))
    shown = ("all" if len(colls) <= COLLECTIVE_ROWS
             else f"the first {COLLECTIVE_ROWS} of") + f" {len(colls)} collectives"
    return ('<h2 id="collectives">Collectives</h2>' + _collective_groups(colls) + _table(
        ("#", "collective", "algorithm", "ranks", "size", "chunks", "start", "time",
         "algorithm bw", "bus bw"), rows,
        caption=f"{shown} (every one is in the JSON); bandwidths as nccl-tests defines them "
        "(algbw = size / time, busbw = algbw x the collective's bus factor)",
        scroll=len(rows) > 24, cls="collectives"))


def _collective_groups(colls: Sequence[Mapping[str, Any]]) -> str:
    """Collectives of the same kind, algorithm, group size and size, counted and their times
    summed (shown only when the list is cut)."""
    if len(colls) <= COLLECTIVE_ROWS:
        return ""
    groups: dict[tuple, list[float]] = {}
    for c in colls:
        key = (c["collective"], c["algorithm"], len(c["group"]), c["nbytes"])
        groups.setdefault(key, []).append(c["time_ns"])
    order = sorted(groups.items(), key=lambda item: -sum(item[1]))
    rows = [_text(kind) + _text(algorithm) + _text(ranks) + f"<td>{show(nbytes, 'bytes')}</td>"
            + _text(len(times)) + f"<td>{show(sum(times), 'ns')}</td>"
            + f"<td>{show(min(times), 'ns')}</td><td>{show(max(times), 'ns')}</td>"
            for (kind, algorithm, ranks, nbytes), times in order]
    return _table(("collective", "algorithm", "ranks", "size", "count", "total time",
                   "fastest", "slowest"), rows,
                  caption=f"{len(colls)} collectives in {len(groups)} groups of the same shape, "
                  "by total time (summed from the JSON's per-collective times)",
                  scroll=len(rows) > 24, cls="collectives")


def _unit_of(key: str, value: Any, inherited: str = "") -> str:
    """The unit a report key's name states (``_s`` seconds, ``_ns``, ``_bytes``...)."""
    if inherited:
        return inherited
    if key.endswith("_ns"):
        return "ns"
    if key.endswith("_s") and not key.endswith("per_s"):
        return "s"
    if key.endswith("_bytes"):
        return "bytes"
    if key in ("mfu", "mfu_with_attention", "fraction_of_peak") or key.endswith("_share"):
        return "ratio"
    return "count" if isinstance(value, int) else "number"


def _workload_reports(doc: Mapping[str, Any]) -> str:
    """The workload's own report (``meta.llm``: LLM training or inference; ``meta.gemm``;
    ``meta.lstm``) and the energy (``meta.energy``), every scalar of each, nested mappings as
    their own tables."""
    meta = doc.get("meta", {})
    out = []
    for section, title in (("llm", "LLM report"), ("gemm", "GEMM report"),
                           ("lstm", "LSTM report"), ("energy", "Energy")):
        report = meta.get(section)
        if isinstance(report, Mapping):
            out.append(f'<h2 id="{section}">{title}</h2>')
            out.append(_mapping_table(report, ("meta", section), "", cls=section))
    return "\n".join(out)


def _mapping_table(data: Mapping[str, Any], where: tuple[str, ...], unit: str,
                   cls: str = "") -> str:
    rows, nested = [], []
    for key, value in data.items():
        path = pointer(*where, key)
        label = _text(key.replace("_", " "))
        if isinstance(value, Mapping):
            inner = "s" if key.endswith("_s") else "bytes" if key.endswith("_bytes") else ""
            nested.append(f"<h3>{_e(key.replace('_', ' '))}</h3>"
                          + _mapping_table(value, (*where, key), inner, cls=cls))
        elif isinstance(value, list):
            if value and all(isinstance(v, int | float) and not isinstance(v, bool)
                             for v in value):
                u = _unit_of(key, value[0], unit)
                rows.append(label + f'<td class="text">{len(value)} values: first '
                            + _cell(pointer(*where, key, 0), value[0], u, "span") + ", last "
                            + _cell(pointer(*where, key, len(value) - 1), value[-1], u,
                                    "span") + "</td>")
            else:
                rows.append(label + _text(", ".join(str(v) for v in value) or "none"))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            rows.append(label + _cell(path, value, _unit_of(key, value, unit)))
        else:
            rows.append(label + _text("-" if value is None else value))
    return _table(("", "value"), rows, cls=cls) + "".join(nested)


__all__ = ["build_html", "pointer", "ramp", "report_document", "show", "write_report"]
