"""Pictures of a sweep (the ``plot`` extra, matplotlib): iteration time per strategy, the
time/memory Pareto front, and one axis compared across the others (e.g. topology kinds).

Every function takes the sweep's results (:class:`~des.app.sweep_types.PointResult`, or their
``points.jsonl`` mappings), writes one PNG and returns its path. Only finished points (status
ok) are drawn; points that ran out of memory are hatched grey; invalid and failed points are
left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from des.app.plots import PlotError, _pyplot
from des.app.sweep_types import PointResult, canonical_json
from des.core.units import seconds_unit

GIB = 1024.0 ** 3
_BAR = "#4477aa"
_OOM = "0.7"
_FRONT = "#cc3311"


# ---------------------------------------------------------------------- helpers
def _as_results(results: Iterable[PointResult | Mapping[str, Any]]) -> list[PointResult]:
    out = []
    for r in results:
        if isinstance(r, PointResult):
            out.append(r)
        elif isinstance(r, Mapping):
            out.append(PointResult(**r))
        else:
            raise PlotError(f"expected sweep results, got {type(r).__name__}")
    return out


def _finished(results: Iterable[PointResult | Mapping[str, Any]]) -> list[PointResult]:
    """Points that ran (status ok) and have an iteration time."""
    return [r for r in _as_results(results)
            if r.status == "ok" and r.metrics.get("iteration_s") is not None]


def _oom(r: PointResult) -> bool:
    return bool(r.metrics.get("out_of_memory"))


def _axes(results: Sequence[PointResult]) -> list[str]:
    """Axis keys in the sweep's order (first appearance)."""
    return list(dict.fromkeys(k for r in results for k in r.values))


def _ident(value: Any) -> str:
    return canonical_json(value)


def _varying(results: Sequence[PointResult], axes: Sequence[str]) -> list[str]:
    """The axes that take more than one value among ``results`` (all of them if none do)."""
    varying = [a for a in axes if len({_ident(r.values.get(a)) for r in results}) > 1]
    return varying or list(axes)


def _leaf(axis: str) -> str:
    return axis.rsplit(".", 1)[-1]


def _short(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, Mapping):
        for key in ("name", "kind"):
            if key in value:
                return str(value[key])
        return ",".join(f"{k}={_short(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return "[" + ",".join(_short(v) for v in value) + "]"
    return str(value)


def axis_label(axis: str, value: Any) -> str:
    """One axis value, compactly: numbers after the key's last part (``tp8``), words and
    group names as they are (``full``, ``system1``), mappings by their name or kind."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{_leaf(axis)}{_short(value)}"
    if isinstance(value, bool):
        return f"{_leaf(axis)} {_short(value)}"
    return _short(value)


def point_label(result: PointResult, axes: Sequence[str]) -> str:
    """``tp8 dp8 cp1 full``: the point's values of ``axes``."""
    return " ".join(axis_label(a, result.values[a]) for a in axes if a in result.values)


def _resolve_axis(name: str, axes: Sequence[str]) -> str:
    if name in axes:
        return name
    matches = [a for a in axes if _leaf(a) == name]
    if len(matches) == 1:
        return matches[0]
    raise PlotError(f"axis {name!r}: not an axis of this sweep (or ambiguous); axes: "
                    f"{', '.join(axes) or 'none'}")


def _label_axes(results: Sequence[PointResult], label_axes: Sequence[str] | None) -> list[str]:
    axes = _axes(results)
    if label_axes is None:
        return _varying(results, axes)
    return [_resolve_axis(a, axes) for a in label_axes]


def time_unit(seconds: Iterable[float]) -> tuple[float, str]:
    """``(factor, unit)`` that shows these times (s) in readable numbers, by the largest."""
    return seconds_unit(max((abs(v) for v in seconds), default=0.0))


def _what(results: Sequence[PointResult]) -> str:
    """What ``iteration_s`` measures for these points: an inference request batch's end-to-end
    time, a GEMM's or a step's time, an LLM training iteration."""
    kinds = {r.metrics.get("workload") for r in results}
    if kinds == {"llm_inference"}:
        return "end-to-end time"
    return "iteration time" if kinds <= {"llm_training", None} else "time"


def _save(fig: Any, plt: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def pareto_front(results: Iterable[PointResult | Mapping[str, Any]]) -> list[PointResult]:
    """Finished points with a peak memory that no other point beats on both iteration time and
    memory (lower is better for both), by increasing memory (so decreasing time)."""
    points = [r for r in _finished(results) if r.metrics.get("peak_memory_bytes") is not None]
    points.sort(key=lambda r: (r.metrics["peak_memory_bytes"], r.metrics["iteration_s"],
                               r.index))
    front: list[PointResult] = []
    for r in points:
        if not front or r.metrics["iteration_s"] < front[-1].metrics["iteration_s"]:
            front.append(r)
    return front


# ---------------------------------------------------------------------- plots
def time_vs_strategy(results: Iterable[PointResult | Mapping[str, Any]], path: str | Path, *,
                     label_axes: list[str] | None = None, top: int = 40) -> Path:
    """Horizontal bars of iteration time of the ``top`` fastest finished points, fastest at
    the top, labelled by their values of ``label_axes`` (default: the axes that vary); points
    that do not fit in memory are hatched grey."""
    done = _finished(results)
    if not done:
        raise PlotError("time vs strategy: no finished points to draw")
    if top < 1:
        raise PlotError(f"top: expected a whole number >= 1, got {top!r}")
    axes = _label_axes(done, label_axes)
    shown = sorted(done, key=lambda r: (r.metrics["iteration_s"], r.index))[:top]
    plt = _pyplot()
    from matplotlib.patches import Patch

    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.28 * len(shown)), dpi=120)
    ys = range(len(shown))
    factor, unit = time_unit(r.metrics["iteration_s"] for r in shown)
    what = _what(done)
    times = [r.metrics["iteration_s"] * factor for r in shown]
    bars = ax.barh(list(ys), times, color=[_OOM if _oom(r) else _BAR for r in shown],
                   edgecolor="0.3", linewidth=0.5)
    for bar, r in zip(bars, shown, strict=True):
        if _oom(r):
            bar.set_hatch("//")
    ax.set_yticks(list(ys), [point_label(r, axes) or f"#{r.index}" for r in shown], fontsize=7)
    ax.invert_yaxis()  # fastest at the top
    ax.set_xlabel(f"{what} ({unit})")
    total = len(done)
    ax.set_title(f"{what} by strategy ({len(shown)} fastest of {total} finished)"
                 if len(shown) < total else f"{what} by strategy ({total} points)")
    if any(_oom(r) for r in shown):
        ax.legend(handles=[Patch(facecolor=_BAR, label="fits in memory"),
                           Patch(facecolor=_OOM, hatch="//", label="out of memory")],
                  loc="lower right", fontsize=7)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, plt, path)


def pareto(results: Iterable[PointResult | Mapping[str, Any]], path: str | Path, *,
           memory_limit: float | None = None, label_axes: list[str] | None = None) -> Path:
    """Peak memory per GPU (GiB) against iteration time (s) of the finished points that report
    memory, with the Pareto front (nothing is both faster and smaller) as a step line and its
    points highlighted and labelled; ``memory_limit`` (bytes) is a dashed vertical line."""
    done = [r for r in _finished(results) if r.metrics.get("peak_memory_bytes") is not None]
    if not done:
        raise PlotError("pareto: no finished point reports its peak memory (only LLM "
                        "training points do)")
    axes = _label_axes(done, label_axes)
    front = pareto_front(done)
    on_front = {r.key for r in front}
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    factor, unit = time_unit(r.metrics["iteration_s"] for r in done)
    what = _what(done)
    rest = [r for r in done if r.key not in on_front]
    for oom, marker, colour, label in ((False, "o", _BAR, "fits in memory"),
                                       (True, "x", "0.5", "out of memory")):
        pick = [r for r in rest if _oom(r) == oom]
        if pick:
            ax.scatter([r.metrics["peak_memory_bytes"] / GIB for r in pick],
                       [r.metrics["iteration_s"] * factor for r in pick], s=18, marker=marker,
                       color=colour, alpha=0.7, label=label)
    xs = [r.metrics["peak_memory_bytes"] / GIB for r in front]
    ys = [r.metrics["iteration_s"] * factor for r in front]
    ax.step(xs, ys, where="post", color=_FRONT, lw=1.5, zorder=2)
    ax.scatter(xs, ys, s=40, color=_FRONT, edgecolor="black", linewidth=0.5, zorder=3,
               label=f"Pareto front ({len(front)})")
    for x, y, r in zip(xs, ys, front, strict=True):
        ax.annotate(point_label(r, axes), (x, y), xytext=(4, 4), textcoords="offset points",
                    fontsize=6)
    if memory_limit is not None:
        ax.axvline(memory_limit / GIB, color="black", linestyle="--", lw=1,
                   label=f"memory limit {memory_limit / GIB:g} GiB")
    ax.set_xlabel("peak memory per GPU (GiB)")
    ax.set_ylabel(f"{what} ({unit})")
    ax.set_title(f"{what} vs memory")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, plt, path)


def compare(results: Iterable[PointResult | Mapping[str, Any]], path: str | Path, *,
            by: str) -> Path:
    """Grouped bars of iteration time: one group per combination of the other axes' values,
    one bar per value of axis ``by`` (its full key, or its last part when unique). A value
    with no finished point in a group leaves a gap marked n/a; out-of-memory bars are
    hatched."""
    everything = _as_results(results)
    axis = _resolve_axis(by, _axes(everything))
    done = _finished(everything)
    if not done:
        raise PlotError("compare: no finished points to draw")
    by_values: dict[str, Any] = {}
    for r in everything:  # every value of the axis, in sweep order, even with no finished point
        if axis in r.values:
            by_values.setdefault(_ident(r.values[axis]), r.values[axis])
    others = [a for a in _varying(everything, _axes(everything)) if a != axis]
    groups: dict[str, dict[str, PointResult]] = {}
    labels: dict[str, str] = {}
    for r in sorted(done, key=lambda r: r.index):
        group = _ident([r.values.get(a) for a in others])
        labels.setdefault(group, point_label(r, others) or "all")
        groups.setdefault(group, {}).setdefault(_ident(r.values.get(axis)), r)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.0 + 0.5 * len(groups) * len(by_values)), 5),
                           dpi=120)
    width = 0.8 / len(by_values)
    colours = plt.get_cmap("tab10")
    factor, unit = time_unit(r.metrics["iteration_s"] for r in done)
    what = _what(done)
    labelled: set[str] = set()
    for j, (ident, value) in enumerate(by_values.items()):
        offset = (j - (len(by_values) - 1) / 2) * width
        for i, members in enumerate(groups.values()):
            r = members.get(ident)
            x = i + offset
            if r is None:
                ax.text(x, 0, "n/a", rotation=90, ha="center", va="bottom", fontsize=6,
                        color="0.4")
                continue
            ax.bar(x, r.metrics["iteration_s"] * factor, width, color=colours(j % 10),
                   hatch="//" if _oom(r) else None, edgecolor="0.3", linewidth=0.5,
                   label=None if ident in labelled else axis_label(axis, value))
            labelled.add(ident)
    ax.set_xticks(range(len(groups)), [labels[g] for g in groups], rotation=30, ha="right",
                  fontsize=7)
    ax.set_ylabel(f"{what} ({unit})")
    ax.set_title(f"{what} by {_leaf(axis)}")
    ax.legend(title=_leaf(axis), fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, plt, path)
