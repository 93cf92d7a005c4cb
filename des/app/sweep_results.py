"""A sweep's results: the ``points.jsonl`` stream a run appends to and resumes from, the
``results.csv``/``results.json`` tables, and the ranking of finished points."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from des.app.sweep_types import PointResult


def results_path(out: Path) -> Path:
    """Where a sweep streams its results (one JSON object per line)."""
    return out / "points.jsonl"


def load_done(out: Path) -> dict[str, PointResult]:
    """Results already on disk (resuming); a torn last line is ignored."""
    done: dict[str, PointResult] = {}
    path = results_path(out)
    if not path.is_file():
        return done
    for line in path.read_text().splitlines():
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            continue
        done[doc["key"]] = PointResult(**doc)
    return done



def write_csv(rows: list[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """``rows`` as CSV at ``path``: the columns are the union of the rows' keys in first-seen
    order (a row missing one leaves its cell empty); returns the path."""
    import csv

    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    path = Path(path)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_table(results: list[PointResult], out: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``results.csv`` and ``results.json``: one row per point, in point order, with every axis
    and metric and its ``rank`` (1 = best by the points' workload kind: output tokens/s for
    inference, iteration time for training, the makespan otherwise; see :func:`ranking`;
    empty for points that did not run). An axis named ``rank`` keeps its name and the rank
    becomes ``result.rank``."""
    out = Path(out)
    place = {r.key: n for n, r in enumerate(ranking(results), start=1)}
    rows = []
    for r in results:
        row = r.row()
        row["result.rank" if "rank" in r.values else "rank"] = place.get(r.key, "")
        rows.append(row)
    csv_path, json_path = out / "results.csv", out / "results.json"
    write_csv(rows, csv_path)
    json_path.write_text(json.dumps(rows, indent=1, default=str) + "\n")
    return csv_path, json_path


def ranking(results: list[PointResult], memory_limit: float | None = None
            ) -> list[PointResult]:
    """Finished points best first by their workload kind's rank key (iteration time for
    training, output tokens/s for inference, the makespan otherwise; see
    :mod:`des.app.workload_kinds`); with ``memory_limit``, only those that fit."""
    from des.app.workload_kinds import ranking_kind

    ok = [r for r in results if r.status == "ok"]
    if memory_limit is not None:
        ok = [r for r in ok if (r.metrics.get("peak_memory_bytes") or 0) <= memory_limit]
    kind = ranking_kind(r.metrics for r in ok)
    return sorted(ok, key=lambda r: (kind.sort_key(r.metrics), r.index))
