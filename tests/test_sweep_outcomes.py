"""What a finished sweep says: no point that ran is exit 2 with the reason (the mistyped key, or
why the points failed to run); inference sweeps rank on inference metrics in the table and in
results.csv; the progress bar estimates the time left."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import SWITCH, TINY
from rich.console import Console
from rich.progress import TimeRemainingColumn

from des.app.cli import EXIT_BAD_INPUT, EXIT_OK, main
from des.app.cli_sweep import SweepBar
from des.app.sweep_types import SweepProgress


def sweep(tmp_path: Path, doc: dict[str, Any], capsys) -> tuple[int, str, Path]:
    spec, out = tmp_path / "sweep.yaml", tmp_path / "out"
    spec.write_text(yaml.safe_dump({"name": "t", **doc}))
    code = main(["sweep", str(spec), "--out", str(out), "--workers", "1"])
    captured = capsys.readouterr()
    return code, captured.out + captured.err, out


def test_a_mistyped_only_axis_exits_2_naming_the_key(tmp_path, capsys):
    code, text, _ = sweep(tmp_path, {
        "base": {"topology": dict(SWITCH), "workload": {
            "kind": "collectives", "ops": [{"collective": "all_reduce", "size": "64 KiB"}]}},
        "axes": {"network.chunkz": [1, 2]}}, capsys)
    assert code == EXIT_BAD_INPUT
    assert "all 2 points are invalid" in text and "chunkz" in text


def test_a_sweep_whose_points_all_fail_to_run_exits_2_with_the_reason(tmp_path, capsys):
    # an LLM step without a hardware model builds but cannot be timed: every point an error
    code, text, _ = sweep(tmp_path, {
        "base": {"topology": dict(SWITCH), "workload": {
            "kind": "llm_training", "model": TINY,
            "parallel": {"dp": 2, "micro_batch": 1, "global_batch": 2}}},
        "axes": {"network.chunks": [1, 2]}}, capsys)
    assert code == EXIT_BAD_INPUT
    assert "no point of 2 ran (0 invalid, 2 failed to run)" in text and "hardware" in text


def test_an_inference_sweep_ranks_on_inference_metrics_in_the_table_and_csv(tmp_path, capsys):
    code, text, out = sweep(tmp_path, {
        "base": {"topology": dict(SWITCH), "hardware": "A100-SXM4-80GB", "workload": {
            "kind": "llm_inference", "model": TINY,
            "parallel": {"tp": 2, "batch": 1, "prompt": 32, "generate": 3}}},
        "axes": {"workload.parallel.batch": [1, 16, 4]}}, capsys)
    assert code == EXIT_OK
    assert "output tokens/s, highest first" in text
    assert "TTFT" in text and "TPOT" in text
    with (out / "results.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {"ttft_s", "tpot_s", "output_tokens_per_s", "rank"} <= set(rows[0])
    by_rank = sorted(rows, key=lambda r: int(r["rank"]))
    rates = [float(r["output_tokens_per_s"]) for r in by_rank]
    assert rates == sorted(rates, reverse=True)  # best first by tokens/s
    makespans = [float(r["makespan_ns"]) for r in by_rank]
    assert makespans != sorted(makespans)  # which the raw makespan would order otherwise
    assert [r["workload.parallel.batch"] for r in by_rank] == ["16", "4", "1"]


def test_the_sweep_progress_bar_shows_the_time_left():
    clock = [0.0]
    bar = SweepBar(Console(file=io.StringIO()))
    bar.progress.get_time = lambda: clock[0]  # a clock the test moves
    columns = bar.progress.columns
    remaining = next(c for c in columns if isinstance(c, TimeRemainingColumn))
    bar(SweepProgress("running", 1, 4, 10.0, 40.0))
    task = bar.progress.tasks[0]
    # the estimate is made from cost done per second against the cost total, not points
    assert (task.completed, task.total) == (10.0, 40.0)
    clock[0] = 10.0
    # 20 cost units in 10 s: 10 left take 5 s (by points, 2 of 4 in 10 s, it would say 20 s)
    bar(SweepProgress("running", 2, 4, 30.0, 40.0))
    assert task.time_remaining == pytest.approx(5.0)
    assert remaining.render(task).plain == "0:00:05"


def test_sweep_times_read_in_human_units():
    from des.app.render import _metric_cell

    assert _metric_cell({"ttft_s": 0.00012612}, "ttft_s", "time") == "126.1 us"
    assert _metric_cell({"iteration_s": 6.7639104}, "iteration_s", "time") == "6.764 s"
    assert _metric_cell({"iteration_s": 0.0123}, "iteration_s", "time") == "12.3 ms"


def test_sweep_plot_axes_pick_a_readable_time_unit():
    from des.app.sweep_plots import time_unit  # no matplotlib needed to choose the unit

    assert time_unit([0.000446, 0.0004]) == (1e6, "us")
    assert time_unit([6.76]) == (1.0, "s")
    assert time_unit([0.0123, 0.5]) == (1e3, "ms")
    assert time_unit([4e-8]) == (1e9, "ns")
