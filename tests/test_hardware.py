"""Tests for des.core.hardware: the roofline, GpuSpec validation, presets and YAML loading."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from des.core.hardware import (
    FALLBACK_CLASS,
    OP_CLASSES,
    GpuSpec,
    HardwareError,
    available_gpus,
    bound,
    compute_time_ns,
    gpu_from_dict,
    load_gpu,
    memory_time_ns,
)
from des.core.paths import bundled

PEAK_BF16 = 1000.0  # FLOP/ns
PEAK_FP32 = 100.0
BW = 2000.0  # bytes/ns
LAUNCH = 1000.0  # ns
EFF_DEFAULT = (0.5, 0.8)
EFF_GEMM = (0.8, 0.9)


def make_spec(**changes: Any) -> GpuSpec:
    fields: dict[str, Any] = {
        "name": "toy",
        "peak_flops": {"bf16": PEAK_BF16, "fp32": PEAK_FP32},
        "hbm_bandwidth": BW,
        "hbm_capacity": 16 * 2**30,
        "efficiency": {"default": EFF_DEFAULT, "gemm": EFF_GEMM},
        "launch_overhead_ns": LAUNCH,
        "default_dtype": "bf16",
        "sources": ("made up for tests",),
    }
    fields.update(changes)
    return GpuSpec(**fields)


def preset_dict(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "toy",
        "peak_flops": {"bf16": "1 PFLOP/s", "fp32": "100 TFLOP/s"},
        "hbm_bandwidth": "2 TB/s",
        "hbm_capacity": "16 GiB",
        "launch_overhead": "1 us",
        "default_dtype": "bf16",
        "efficiency": {"default": [0.5, 0.8], "gemm": [0.8, 0.9]},
        "sources": ["made up for tests"],
    }
    data.update(changes)
    return data


# --- roofline ----------------------------------------------------------------------------------


def test_compute_bound_time_is_flops_over_effective_peak_plus_launch() -> None:
    spec = make_spec()
    flops, nbytes = 1e9, 1e3
    expected = flops / (PEAK_BF16 * EFF_GEMM[0]) + LAUNCH
    got = compute_time_ns(spec, flops, nbytes, op_class="gemm")
    assert math.isclose(got, expected, rel_tol=1e-9)
    assert bound(spec, flops, nbytes, op_class="gemm") == "compute"


def test_memory_bound_time_is_bytes_over_effective_bandwidth_plus_launch() -> None:
    spec = make_spec()
    flops, nbytes = 1e3, 1e9
    expected = nbytes / (BW * EFF_GEMM[1]) + LAUNCH
    got = compute_time_ns(spec, flops, nbytes, op_class="gemm")
    assert math.isclose(got, expected, rel_tol=1e-9)
    assert bound(spec, flops, nbytes, op_class="gemm") == "memory"


@pytest.mark.parametrize("op_class", ["", "conv", "default"])
def test_unlisted_op_class_uses_default_efficiency(op_class: str) -> None:
    spec = make_spec()
    got = compute_time_ns(spec, 1e9, 0.0, op_class=op_class)
    assert math.isclose(got, 1e9 / (PEAK_BF16 * EFF_DEFAULT[0]) + LAUNCH, rel_tol=1e-9)
    got = compute_time_ns(spec, 0.0, 1e9, op_class=op_class)
    assert math.isclose(got, 1e9 / (BW * EFF_DEFAULT[1]) + LAUNCH, rel_tol=1e-9)


def test_dtype_selects_peak_and_defaults_to_default_dtype() -> None:
    spec = make_spec()
    fp32 = compute_time_ns(spec, 1e9, 0.0, op_class="gemm", dtype="fp32")
    assert math.isclose(fp32, 1e9 / (PEAK_FP32 * EFF_GEMM[0]) + LAUNCH, rel_tol=1e-9)
    assert compute_time_ns(spec, 1e9, 0.0, "gemm") == compute_time_ns(
        spec, 1e9, 0.0, "gemm", "bf16"
    )
    spec32 = make_spec(default_dtype="fp32")
    assert compute_time_ns(spec32, 1e9, 0.0, "gemm") == fp32


def test_empty_node_takes_exactly_the_launch_overhead() -> None:
    assert compute_time_ns(make_spec(), 0.0, 0.0) == LAUNCH
    assert compute_time_ns(make_spec(launch_overhead_ns=0.0), 0.0, 0.0) == 0.0


def test_memory_time_has_no_launch_overhead_and_uses_default_memory_efficiency() -> None:
    spec = make_spec()
    assert math.isclose(memory_time_ns(spec, 1e9), 1e9 / (BW * EFF_DEFAULT[1]), rel_tol=1e-9)
    assert memory_time_ns(spec, 0.0) == 0.0


@pytest.mark.parametrize("op_class", ["gemm", "attention"])
def test_bound_switches_at_the_ridge_point(op_class: str) -> None:
    spec = make_spec()
    eff_c, eff_m = spec.efficiency.get(op_class, spec.efficiency["default"])
    ridge = PEAK_BF16 * eff_c / (BW * eff_m)  # FLOP per byte
    nbytes = 1e8
    assert bound(spec, ridge * nbytes * (1 + 1e-6), nbytes, op_class) == "compute"
    assert bound(spec, ridge * nbytes * (1 - 1e-6), nbytes, op_class) == "memory"
    # At the ridge both roofline terms are equal, so the time is either one.
    at_ridge = compute_time_ns(spec, ridge * nbytes, nbytes, op_class)
    assert math.isclose(at_ridge, nbytes / (BW * eff_m) + LAUNCH, rel_tol=1e-9)
    assert math.isclose(at_ridge, ridge * nbytes / (PEAK_BF16 * eff_c) + LAUNCH, rel_tol=1e-9)


def test_time_grows_linearly_past_the_ridge() -> None:
    spec = make_spec()
    one = compute_time_ns(spec, 1e10, 1.0, "gemm") - LAUNCH
    two = compute_time_ns(spec, 2e10, 1.0, "gemm") - LAUNCH
    assert math.isclose(two, 2 * one, rel_tol=1e-9)


@pytest.mark.parametrize(
    ("flops", "nbytes", "label"),
    [
        (-1.0, 0.0, "flops"),
        (0.0, -1.0, "nbytes"),
        (math.nan, 0.0, "flops"),
        (0, math.inf, "nbytes"),
    ],
)
def test_bad_work_amounts_are_refused(flops: float, nbytes: float, label: str) -> None:
    with pytest.raises(HardwareError, match=label):
        compute_time_ns(make_spec(), flops, nbytes)
    with pytest.raises(HardwareError, match=label):
        bound(make_spec(), flops, nbytes)


def test_unknown_dtype_lists_available_ones() -> None:
    with pytest.raises(HardwareError) as info:
        compute_time_ns(make_spec(), 1.0, 1.0, dtype="fp8")
    message = str(info.value)
    assert "'fp8'" in message and "bf16" in message and "fp32" in message


# --- GpuSpec validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"hbm_bandwidth": -1.0}, "hbm_bandwidth"),
        ({"hbm_bandwidth": 0.0}, "hbm_bandwidth"),
        ({"hbm_capacity": math.nan}, "hbm_capacity"),
        ({"peak_flops": {"bf16": 0.0}}, "peak_flops.bf16"),
        ({"peak_flops": {"bf16": True}}, "peak_flops.bf16"),
        ({"peak_flops": {"bf16": 1.0, "int4": 1.0}}, "int4"),
        ({"peak_flops": {}}, "peak_flops"),
        ({"efficiency": {"default": (0.0, 0.5)}}, "efficiency.default"),
        ({"efficiency": {"default": (0.5, 1.5)}}, "efficiency.default"),
        ({"efficiency": {"default": (0.5,)}}, "efficiency.default"),
        ({"efficiency": {"gemm": (0.5, 0.5)}}, "default"),
        ({"efficiency": {"default": (0.5, 0.5), "gemmm": (0.5, 0.5)}}, "gemmm"),
        ({"launch_overhead_ns": -1.0}, "launch_overhead_ns"),
        ({"default_dtype": "fp8"}, "default_dtype"),
        ({"name": ""}, "name"),
        ({"sources": "one string"}, "sources"),
    ],
)
def test_gpuspec_validates(changes: dict[str, Any], key: str) -> None:
    with pytest.raises(HardwareError) as info:
        make_spec(**changes)
    assert key in str(info.value)


def test_efficiency_of_exactly_one_is_allowed() -> None:
    spec = make_spec(efficiency={"default": (1, 1)})
    assert spec.efficiency["default"] == (1.0, 1.0)


def test_gpuspec_is_frozen_hashable_and_normalised() -> None:
    spec = make_spec(efficiency={"default": [0.5, 0.8]}, sources=["a", "b"])
    assert spec.efficiency["default"] == (0.5, 0.8)
    assert spec.sources == ("a", "b")
    assert isinstance(hash(spec), int)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.hbm_bandwidth = 1.0  # type: ignore[misc]
    assert make_spec() == make_spec()


# --- gpu_from_dict -------------------------------------------------------------------------------


def test_gpu_from_dict_parses_units() -> None:
    spec = gpu_from_dict(preset_dict())
    assert spec.peak_flops == {"bf16": 1e6, "fp32": 1e5}
    assert spec.hbm_bandwidth == 2000.0
    assert spec.hbm_capacity == 16 * 2**30
    assert spec.launch_overhead_ns == 1000.0
    assert spec.efficiency == {"default": (0.5, 0.8), "gemm": (0.8, 0.9)}
    assert spec.sources == ("made up for tests",)


def test_gpu_from_dict_optional_keys() -> None:
    data = preset_dict()
    del data["default_dtype"], data["sources"]
    spec = gpu_from_dict(data)
    assert spec.default_dtype == "bf16"
    assert spec.sources == ()


@pytest.mark.parametrize(
    ("changes", "key", "bad"),
    [
        ({"hbm_bandwidth": "-5 GB/s"}, "hardware.hbm_bandwidth", "'-5 GB/s'"),
        ({"hbm_bandwidth": "50 GBs"}, "hardware.hbm_bandwidth", "'50 GBs'"),
        ({"hbm_bandwidth": "0 GB/s"}, "hardware.hbm_bandwidth", "0.0"),
        ({"hbm_capacity": "80 gb"}, "hardware.hbm_capacity", "'80 gb'"),
        ({"launch_overhead": "5 sec"}, "hardware.launch_overhead", "'5 sec'"),
        ({"launch_overhead": True}, "hardware.launch_overhead", "True"),
        ({"peak_flops": {"bf16": "312 TOPS"}}, "hardware.peak_flops.bf16", "'312 TOPS'"),
        ({"peak_flops": {"bf61": "312 TFLOP/s"}}, "hardware.peak_flops", "'bf61'"),
        ({"efficiency": {"default": [0, 0.8]}}, "hardware.efficiency.default", "0"),
        (
            {"efficiency": {"default": [0.7, 0.8], "gemm": [0.7, 1.2]}},
            "hardware.efficiency.gemm",
            "1.2",
        ),
        ({"efficiency": {"default": "0.7"}}, "hardware.efficiency.default", "'0.7'"),
        ({"efficiency": {"gemm": [0.7, 0.8]}}, "hardware.efficiency", "default"),
        ({"default_dtype": "fp8"}, "hardware.default_dtype", "'fp8'"),
    ],
)
def test_gpu_from_dict_errors_name_the_key(changes: dict[str, Any], key: str, bad: str) -> None:
    with pytest.raises(HardwareError) as info:
        gpu_from_dict(preset_dict(**changes))
    message = str(info.value)
    assert key in message
    assert bad in message


def test_gpu_from_dict_unknown_key_lists_allowed_keys() -> None:
    with pytest.raises(HardwareError) as info:
        gpu_from_dict(preset_dict(hbm_bw="2 TB/s"))
    message = str(info.value)
    assert "hbm_bw" in message
    for allowed in ("hbm_bandwidth", "peak_flops", "launch_overhead", "efficiency", "sources"):
        assert allowed in message


def test_gpu_from_dict_missing_key() -> None:
    data = preset_dict()
    del data["hbm_capacity"]
    with pytest.raises(HardwareError, match=r"hardware\.hbm_capacity: required key is missing"):
        gpu_from_dict(data)


def test_gpu_from_dict_where_prefixes_paths() -> None:
    with pytest.raises(HardwareError, match=r"^cluster\.gpu\.hbm_bandwidth: "):
        gpu_from_dict(preset_dict(hbm_bandwidth="-1 GB/s"), where="cluster.gpu")


def test_gpu_from_dict_refuses_non_mapping() -> None:
    with pytest.raises(HardwareError, match="mapping"):
        gpu_from_dict(["not", "a", "mapping"])  # type: ignore[arg-type]


# --- bundled presets -----------------------------------------------------------------------------


def test_expected_presets_are_bundled() -> None:
    assert {"A100-SXM4-80GB", "H100-SXM5-80GB", "H200"} <= set(available_gpus())
    assert available_gpus() == sorted(bundled("hardware"), key=str.lower)


@pytest.mark.parametrize("name", available_gpus())
def test_every_preset_loads_and_is_complete(name: str) -> None:
    spec = load_gpu(name)
    assert spec.name == name
    # every class, except those timed as another when not measured (FALLBACK_CLASS)
    assert set(OP_CLASSES) - set(FALLBACK_CLASS) <= set(spec.efficiency) <= set(OP_CLASSES)
    assert spec.sources and all(source.strip() for source in spec.sources)
    assert spec.launch_overhead_ns > 0
    assert spec.default_dtype == "bf16"
    # Dense tensor figures: bf16 and fp16 are equal, tf32 half of them, fp8 (if any) double.
    assert spec.peak_flops["bf16"] == spec.peak_flops["fp16"]
    assert math.isclose(spec.peak_flops["tf32"], spec.peak_flops["bf16"] / 2, rel_tol=1e-3)
    if "fp8" in spec.peak_flops:
        assert math.isclose(spec.peak_flops["fp8"], 2 * spec.peak_flops["bf16"], rel_tol=1e-3)
    # The raw YAML passes the strict parser on its own, too.
    data = yaml.safe_load(bundled("hardware")[name].read_text())
    assert gpu_from_dict(data) == spec


def test_a100_datasheet_figures() -> None:
    spec = load_gpu("A100-SXM4-80GB")
    assert spec.peak_flops == {
        "fp64": 19500.0,
        "fp32": 19500.0,
        "tf32": 156000.0,
        "bf16": 312000.0,
        "fp16": 312000.0,
    }
    assert spec.hbm_bandwidth == 2039.0
    assert spec.hbm_capacity == 80 * 2**30


def test_h100_datasheet_figures() -> None:
    spec = load_gpu("H100-SXM5-80GB")
    assert spec.peak_flops == {
        "fp64": 66900.0,
        "fp32": 66900.0,
        "tf32": 494700.0,
        "bf16": 989400.0,
        "fp16": 989400.0,
        "fp8": 1978900.0,
    }
    assert spec.hbm_bandwidth == 3350.0
    assert spec.hbm_capacity == 80 * 2**30


def test_h200_is_h100_compute_with_more_memory() -> None:
    h100, h200 = load_gpu("H100-SXM5-80GB"), load_gpu("H200")
    assert h200.peak_flops == h100.peak_flops
    assert h200.hbm_bandwidth == 4800.0
    assert h200.hbm_capacity == 141 * 2**30


def test_preset_gemm_is_compute_bound_and_decode_gemv_memory_bound() -> None:
    spec = load_gpu("H100-SXM5-80GB")
    n = 8192  # square bf16 GEMM: 2n^3 FLOPs over 3 n^2 2-byte matrices
    assert bound(spec, 2 * n**3, 3 * n * n * 2, "gemm") == "compute"
    assert bound(spec, 2 * n * n, n * n * 2, "gemm") == "memory"  # matrix-vector


@pytest.mark.parametrize("name", ["h100-sxm5-80gb", "H100-sxm5-80GB", " H100-SXM5-80GB "])
def test_load_by_case_insensitive_name(name: str) -> None:
    spec = load_gpu(name)
    assert spec.name == "H100-SXM5-80GB"
    assert spec == load_gpu("H100-SXM5-80GB")


def test_unknown_preset_lists_available_names() -> None:
    with pytest.raises(HardwareError) as info:
        load_gpu("B200")
    message = str(info.value)
    assert "'B200'" in message
    for name in available_gpus():
        assert name in message


# --- YAML files ---------------------------------------------------------------------------------


def test_load_from_yaml_path(tmp_path: Path) -> None:
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(preset_dict(name="my-gpu")))
    spec = load_gpu(str(path))
    assert spec.name == "my-gpu"
    assert spec.hbm_bandwidth == 2000.0
    assert load_gpu(path) == spec


def test_load_from_yaml_path_without_suffix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mygpu").write_text(yaml.safe_dump(preset_dict(name="plain")))
    monkeypatch.chdir(tmp_path)
    assert load_gpu("mygpu").name == "plain"


def test_yaml_file_errors_name_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(preset_dict(hbm_bandwidth="-5 GB/s")))
    with pytest.raises(HardwareError) as info:
        load_gpu(str(path))
    message = str(info.value)
    assert str(path) in message
    assert "hardware.hbm_bandwidth" in message
    assert "'-5 GB/s'" in message


def test_invalid_yaml_text(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(HardwareError, match="not valid YAML"):
        load_gpu(str(path))


def test_yaml_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yml"
    path.write_text("- a\n- b\n")
    with pytest.raises(HardwareError, match="must be a mapping"):
        load_gpu(str(path))


def test_missing_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(HardwareError, match="not found"):
        load_gpu(str(path))
