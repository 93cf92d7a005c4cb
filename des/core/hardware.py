"""Compute-time model of one GPU, and the bundled GPU presets (``configs/hardware/*.yaml``).

A compute node's time comes from a roofline: the larger of its FLOPs over the achievable FLOP
rate and its HBM traffic over the achievable bandwidth, plus a fixed kernel-launch overhead.
"Achievable" is the datasheet peak times an efficiency per operation class (GEMM, attention,
elementwise, reduction, default); the presets state where each figure comes from.

All quantities are in the internal units of :mod:`des.core.units`: ns, bytes, FLOP/ns, bytes/ns.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from des.core.paths import bundled, load_preset
from des.core.units import UnitError, parse_bandwidth, parse_flops, parse_size, parse_time

__all__ = [
    "DTYPES",
    "OP_CLASSES",
    "GpuSpec",
    "HardwareError",
    "available_gpus",
    "bound",
    "compute_time_ns",
    "gpu_from_dict",
    "load_gpu",
    "memory_time_ns",
]

#: Data types a preset may give a peak FLOP rate for.
DTYPES: tuple[str, ...] = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8")
#: Operation classes a preset may give efficiencies for; others fall back to ``"default"``.
OP_CLASSES: tuple[str, ...] = ("gemm", "attention", "elementwise", "reduction", "default")

# YAML keys of a hardware mapping: required, then optional.
_REQUIRED_KEYS = (
    "name",
    "peak_flops",
    "hbm_bandwidth",
    "hbm_capacity",
    "launch_overhead",
    "efficiency",
)
_OPTIONAL_KEYS = ("default_dtype", "sources")


class HardwareError(ValueError):
    """An invalid GPU description or compute request; the message names the key at fault."""


def _as_float(value: object) -> float | None:
    """``value`` as a finite float, or None for bools, non-numbers, NaN and infinities."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _positive(value: object, path: str, unit: str) -> float:
    number = _as_float(value)
    if number is None or number <= 0:
        raise HardwareError(f"{path}: must be a positive finite number of {unit}, got {value!r}")
    return number


def _efficiency_pair(value: object, path: str) -> tuple[float, float]:
    expected = "expected [compute efficiency, memory efficiency], each in (0, 1]"
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple) or len(value) != 2:
        raise HardwareError(f"{path}: cannot read {value!r}; {expected}")
    pair = []
    for label, item in zip(("compute", "memory"), value, strict=True):
        number = _as_float(item)
        if number is None or not 0 < number <= 1:
            raise HardwareError(
                f"{path}: {label} efficiency must be in (0, 1], got {item!r}; {expected}"
            )
        pair.append(number)
    return pair[0], pair[1]


def _validated(
    *,
    name: object,
    peak_flops: object,
    hbm_bandwidth: object,
    hbm_capacity: object,
    efficiency: object,
    launch_overhead_ns: object,
    default_dtype: object,
    sources: object,
    where: str,
    overhead_key: str,
) -> dict[str, Any]:
    """Check every field of a GPU description; return them normalised (floats, tuples, copies).

    Error messages name ``where`` plus the key, e.g. ``hardware.efficiency.gemm``.
    """
    if not isinstance(name, str) or not name.strip():
        raise HardwareError(f"{where}.name: must be a non-empty string, got {name!r}")

    if not isinstance(peak_flops, Mapping) or not peak_flops:
        raise HardwareError(
            f"{where}.peak_flops: must be a non-empty mapping of dtype to FLOP rate "
            f"(one of {', '.join(DTYPES)}), got {peak_flops!r}"
        )
    peaks: dict[str, float] = {}
    for dtype, rate in peak_flops.items():
        if dtype not in DTYPES:
            raise HardwareError(
                f"{where}.peak_flops: unknown dtype {dtype!r}; allowed: {', '.join(DTYPES)}"
            )
        peaks[dtype] = _positive(rate, f"{where}.peak_flops.{dtype}", "FLOP/ns")

    bandwidth = _positive(hbm_bandwidth, f"{where}.hbm_bandwidth", "bytes/ns")
    capacity = _positive(hbm_capacity, f"{where}.hbm_capacity", "bytes")

    overhead = _as_float(launch_overhead_ns)
    if overhead is None or overhead < 0:
        raise HardwareError(
            f"{where}.{overhead_key}: must be a finite time >= 0 ns, got {launch_overhead_ns!r}"
        )

    if not isinstance(efficiency, Mapping):
        raise HardwareError(
            f"{where}.efficiency: must be a mapping of op class to [compute, memory] "
            f"efficiencies, got {efficiency!r}"
        )
    effs: dict[str, tuple[float, float]] = {}
    for op_class, pair in efficiency.items():
        if op_class not in OP_CLASSES:
            raise HardwareError(
                f"{where}.efficiency: unknown op class {op_class!r}; "
                f"allowed: {', '.join(OP_CLASSES)}"
            )
        effs[op_class] = _efficiency_pair(pair, f"{where}.efficiency.{op_class}")
    if "default" not in effs:
        raise HardwareError(
            f"{where}.efficiency: needs a 'default' entry (used for op classes not listed); "
            f"has {', '.join(effs) or 'none'}"
        )

    if not isinstance(default_dtype, str) or default_dtype not in peaks:
        raise HardwareError(
            f"{where}.default_dtype: {default_dtype!r} has no peak_flops entry; "
            f"available: {', '.join(peaks)}"
        )

    if isinstance(sources, str) or not isinstance(sources, list | tuple):
        raise HardwareError(f"{where}.sources: must be a list of strings, got {sources!r}")
    for index, source in enumerate(sources):
        if not isinstance(source, str) or not source.strip():
            raise HardwareError(
                f"{where}.sources[{index}]: must be a non-empty string, got {source!r}"
            )

    return {
        "name": name,
        "peak_flops": peaks,
        "hbm_bandwidth": bandwidth,
        "hbm_capacity": capacity,
        "efficiency": effs,
        "launch_overhead_ns": overhead,
        "default_dtype": default_dtype,
        "sources": tuple(sources),
    }


@dataclass(frozen=True)
class GpuSpec:
    """One GPU model for the roofline compute-time model.

    ``peak_flops`` is FLOP/ns per dtype (dense, no sparsity), ``hbm_bandwidth`` bytes/ns,
    ``hbm_capacity`` bytes, ``efficiency`` maps an op class to the fractions of peak FLOP rate and
    of HBM bandwidth it achieves (each in (0, 1]; ``"default"`` is required and used for op
    classes not listed), ``launch_overhead_ns`` is added once per compute node, and ``sources``
    cites where the figures come from. Invalid values raise :class:`HardwareError`.
    """

    name: str
    peak_flops: dict[str, float] = field(hash=False)
    hbm_bandwidth: float
    hbm_capacity: float
    efficiency: dict[str, tuple[float, float]] = field(hash=False)
    launch_overhead_ns: float
    default_dtype: str = "bf16"
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        where = f"GpuSpec[{self.name}]" if isinstance(self.name, str) else "GpuSpec"
        values = _validated(
            name=self.name,
            peak_flops=self.peak_flops,
            hbm_bandwidth=self.hbm_bandwidth,
            hbm_capacity=self.hbm_capacity,
            efficiency=self.efficiency,
            launch_overhead_ns=self.launch_overhead_ns,
            default_dtype=self.default_dtype,
            sources=self.sources,
            where=where,
            overhead_key="launch_overhead_ns",
        )
        for key, value in values.items():
            object.__setattr__(self, key, value)


def _terms(
    spec: GpuSpec, flops: float, nbytes: float, op_class: str, dtype: str | None
) -> tuple[float, float]:
    """The roofline's compute and memory times (ns), without launch overhead."""
    for label, value in (("flops", flops), ("nbytes", nbytes)):
        number = _as_float(value)
        if number is None or number < 0:
            raise HardwareError(f"{spec.name}: {label} must be a finite number >= 0, got {value!r}")
    dtype = spec.default_dtype if dtype is None else dtype
    peak = spec.peak_flops.get(dtype)
    if peak is None:
        raise HardwareError(
            f"{spec.name}: no peak FLOP rate for dtype {dtype!r}; "
            f"available: {', '.join(spec.peak_flops)}"
        )
    eff_compute, eff_memory = spec.efficiency.get(op_class, spec.efficiency["default"])
    return flops / (peak * eff_compute), nbytes / (spec.hbm_bandwidth * eff_memory)


def compute_time_ns(
    spec: GpuSpec,
    flops: float,
    nbytes: float,
    op_class: str = "",
    dtype: str | None = None,
) -> float:
    """Time in ns of one compute node on ``spec``: a roofline plus the launch overhead.

    ``max(flops / (peak[dtype] * eff_c), nbytes / (hbm_bandwidth * eff_m)) + launch_overhead_ns``
    with ``(eff_c, eff_m) = spec.efficiency.get(op_class, spec.efficiency["default"])`` and
    ``dtype`` defaulting to ``spec.default_dtype``. The roofline model is from Williams, Waterman
    & Patterson, "Roofline: an insightful visual performance model for multicore
    architectures", CACM 52(4), 2009. A node with zero FLOPs and zero bytes still launches a
    kernel, so it takes exactly ``launch_overhead_ns``.

    Raises :class:`HardwareError` for negative or non-finite ``flops``/``nbytes`` or a dtype the
    GPU has no peak for.
    """
    compute, memory = _terms(spec, flops, nbytes, op_class, dtype)
    return max(compute, memory) + spec.launch_overhead_ns


def memory_time_ns(spec: GpuSpec, nbytes: float) -> float:
    """Time in ns to move ``nbytes`` through HBM at the ``"default"`` memory efficiency, for
    memory load/store nodes: ``nbytes / (hbm_bandwidth * eff_m)``, no launch overhead."""
    return _terms(spec, 0.0, nbytes, "default", None)[1]


def bound(
    spec: GpuSpec,
    flops: float,
    nbytes: float,
    op_class: str = "",
    dtype: str | None = None,
) -> str:
    """``"compute"`` or ``"memory"``: which roofline term of :func:`compute_time_ns` is larger.

    The switch is at the ridge point ``flops / nbytes == peak * eff_c / (hbm_bandwidth * eff_m)``;
    a tie (including zero FLOPs and zero bytes) counts as ``"compute"``.
    """
    compute, memory = _terms(spec, flops, nbytes, op_class, dtype)
    return "compute" if compute >= memory else "memory"


def gpu_from_dict(data: Mapping[str, Any], where: str = "hardware") -> GpuSpec:
    """A :class:`GpuSpec` from a YAML-style mapping whose quantities carry units.

    Keys: ``name``, ``peak_flops`` (dtype -> FLOP rate such as ``"312 TFLOP/s"``),
    ``hbm_bandwidth`` (``"2039 GB/s"``), ``hbm_capacity`` (``"80 GiB"``), ``launch_overhead``
    (``"4 us"``), ``efficiency`` (op class -> ``[compute, memory]``), and optionally
    ``default_dtype`` (default ``bf16``) and ``sources`` (list of citations). Errors name the key
    path under ``where``, e.g. ``hardware.hbm_bandwidth``; unknown or missing keys are errors.
    """
    if not isinstance(data, Mapping):
        raise HardwareError(f"{where}: must be a mapping, got {type(data).__name__}")
    allowed = _REQUIRED_KEYS + _OPTIONAL_KEYS
    unknown = [str(key) for key in data if key not in allowed]
    if unknown:
        raise HardwareError(
            f"{where}: unknown key(s) {', '.join(unknown)}; allowed keys: {', '.join(allowed)}"
        )
    missing = [key for key in _REQUIRED_KEYS if key not in data]
    if missing:
        raise HardwareError(f"{where}: missing key(s) {', '.join(missing)}")

    try:
        peaks_raw = data["peak_flops"]
        if not isinstance(peaks_raw, Mapping):
            raise HardwareError(
                f"{where}.peak_flops: must be a mapping of dtype to FLOP rate, got {peaks_raw!r}"
            )
        peaks = {
            dtype: parse_flops(rate, f"{where}.peak_flops.{dtype}")
            for dtype, rate in peaks_raw.items()
        }
        bandwidth = parse_bandwidth(data["hbm_bandwidth"], f"{where}.hbm_bandwidth")
        capacity = parse_size(data["hbm_capacity"], f"{where}.hbm_capacity")
        overhead = parse_time(data["launch_overhead"], f"{where}.launch_overhead")
    except UnitError as error:
        raise HardwareError(str(error)) from error

    values = _validated(
        name=data["name"],
        peak_flops=peaks,
        hbm_bandwidth=bandwidth,
        hbm_capacity=capacity,
        efficiency=data["efficiency"],
        launch_overhead_ns=overhead,
        default_dtype=data.get("default_dtype", "bf16"),
        sources=data.get("sources", ()),
        where=where,
        overhead_key="launch_overhead",
    )
    return GpuSpec(**values)




def available_gpus() -> list[str]:
    """Names of the bundled GPU presets (file stems in ``configs/hardware``), sorted."""
    return sorted(bundled("hardware"), key=str.lower)


def load_gpu(name_or_path: str | os.PathLike[str]) -> GpuSpec:
    """A GPU from a YAML file path, or a bundled preset by case-insensitive name.

    ``load_gpu("h100-sxm5-80gb")`` finds ``configs/hardware/H100-SXM5-80GB.yaml``. A value
    ending in ``.yaml``/``.yml`` or containing a path separator is always read as a path; a bare
    name that is no preset is tried as a file last. Unknown names raise :class:`HardwareError`
    listing the available presets.
    """
    return load_preset("hardware", name_or_path, gpu_from_dict, HardwareError, "GPU")
