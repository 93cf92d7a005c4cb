"""Compute-time model of one GPU, and the bundled GPU presets (``configs/hardware/*.yaml``).

A compute node's time comes from a roofline: the larger of its FLOPs over the achievable FLOP
rate and its HBM traffic over the achievable bandwidth, plus a fixed kernel-launch overhead.
"Achievable" is the datasheet peak times an efficiency per operation class (GEMM, attention,
elementwise, reduction, default); the presets state where each figure comes from.

All quantities are in the internal units of :mod:`des.core.units`: ns, bytes, FLOP/ns, bytes/ns.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from des.core.energy_spec import EnergySpec, energy_from_dict
from des.core.paths import bundled, load_preset
from des.core.schema import (
    SchemaError,
    Section,
    check,
    entries,
    fraction,
    nonempty_text,
    nonneg_number,
    positive,
    show,
    text,
)
from des.core.units import parse_bandwidth, parse_flops, parse_size, parse_time

__all__ = [
    "DEFAULT_DTYPE",
    "DEFAULT_DTYPE_BYTES",
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
    "roofline_terms",
]

#: Data types a preset may give a peak FLOP rate for.
DTYPES: tuple[str, ...] = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8")
#: Operation classes a preset may give efficiencies for; others fall back to ``"default"``.
OP_CLASSES: tuple[str, ...] = ("gemm", "attention", "attention_unfused", "elementwise",
                               "reduction", "default")
#: A class a preset does not list that is timed as another before ``"default"``: the unfused
#: attention kernels (score and context matmuls, softmax and dropout over the score matrix) are
#: GEMMs and streaming kernels unless the preset gives their measured efficiency.
FALLBACK_CLASS = {"attention_unfused": "gemm"}

#: The dtype a GPU's FLOP rate is read at when a compute node names none.
DEFAULT_DTYPE = "bf16"
#: Bytes per element of :data:`DEFAULT_DTYPE`: the default ``dtype_bytes`` of the workloads.
DEFAULT_DTYPE_BYTES = 2

# Keys of a hardware mapping; the launch overhead is ``launch_overhead`` in YAML (a time with a
# unit) and ``launch_overhead_ns`` as a GpuSpec field.
_KEYS = ("name", "peak_flops", "hbm_bandwidth", "hbm_capacity", "launch_overhead", "efficiency",
         "default_dtype", "sources", "energy")


class HardwareError(SchemaError):
    """An invalid GPU description or compute request; the message names the key at fault."""


def _efficiency_pair(value: object, where: str) -> tuple[float, float]:
    expected = "expected [compute efficiency, memory efficiency], each in (0, 1]"
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple) or len(value) != 2:
        raise HardwareError(f"{where}: cannot read {show(value)}; {expected}")
    compute, memory = (fraction(item, f"{where}: {label} efficiency")
                       for label, item in zip(("compute", "memory"), value, strict=True))
    return compute, memory


def _sources(value: object, where: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise HardwareError(f"{where}: must be a list of strings, got {show(value)}")
    return tuple(nonempty_text(item, f"{where}[{i}]") for i, item in enumerate(value))


_PEAKS = entries(positive(parse_flops, "FLOP/ns"), keys=DTYPES, what="dtype", nonempty=True,
                 expected="a mapping of dtype to FLOP rate")
_EFFICIENCIES = entries(_efficiency_pair, keys=OP_CLASSES, what="op class",
                        expected="a mapping of op class to [compute, memory] efficiencies")


def _read(sec: Section, overhead_key: str) -> dict[str, Any]:
    """Every field of a GPU description from ``sec``, checked and normalised (floats in
    internal units, tuples, copies). Quantities may carry units (``"2 TB/s"``); a bare number
    is already in internal units. Errors name the key path, e.g. ``hardware.efficiency.gemm``.
    """
    values = {
        "name": sec.get("name", nonempty_text),
        "peak_flops": sec.get("peak_flops", _PEAKS),
        "hbm_bandwidth": sec.get("hbm_bandwidth", positive(parse_bandwidth, "bytes/ns")),
        "hbm_capacity": sec.get("hbm_capacity", positive(parse_size, "bytes")),
        "launch_overhead_ns": sec.get(overhead_key, parse_time),
        "efficiency": sec.get("efficiency", _EFFICIENCIES),
        "default_dtype": sec.get("default_dtype", text, default=DEFAULT_DTYPE),
        "sources": sec.get("sources", _sources, default=()),
        "energy": sec.get("energy", energy_from_dict, default=None),
    }
    sec.finish()
    if "default" not in values["efficiency"]:
        raise sec.fail("efficiency", "needs a 'default' entry (used for op classes not "
                       f"listed); has {', '.join(values['efficiency']) or 'none'}")
    energy = values["energy"]
    stray = [d for d in (energy.flop_pj if energy is not None else ()) if d not in DTYPES]
    if stray:
        raise sec.fail("energy", f"flop_energy: unknown dtype {stray[0]!r}; expected one of "
                       f"{', '.join(DTYPES)}")
    if values["default_dtype"] not in values["peak_flops"]:
        raise sec.fail("default_dtype", f"{values['default_dtype']!r} has no peak_flops entry; "
                       f"available: {', '.join(values['peak_flops'])}")
    return values


@dataclass(frozen=True)
class GpuSpec:
    """One GPU model for the roofline compute-time model.

    ``peak_flops`` is FLOP/ns per dtype (dense, no sparsity), ``hbm_bandwidth`` bytes/ns,
    ``hbm_capacity`` bytes, ``efficiency`` maps an op class to the fractions of peak FLOP rate and
    of HBM bandwidth it achieves (each in (0, 1]; ``"default"`` is required and used for op
    classes not listed), ``launch_overhead_ns`` is added once per compute node, ``sources``
    cites where the figures come from, and ``energy`` holds the energy figures
    (:class:`~des.core.energy_spec.EnergySpec`, None: no energy model). Invalid values raise
    :class:`HardwareError`.
    """

    name: str
    peak_flops: dict[str, float] = field(hash=False)
    hbm_bandwidth: float
    hbm_capacity: float
    efficiency: dict[str, tuple[float, float]] = field(hash=False)
    launch_overhead_ns: float
    default_dtype: str = DEFAULT_DTYPE
    sources: tuple[str, ...] = ()
    energy: EnergySpec | None = None

    def __post_init__(self) -> None:
        where = f"GpuSpec[{self.name}]" if isinstance(self.name, str) else "GpuSpec"
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values = _read(Section(fields, where, error=HardwareError), "launch_overhead_ns")
        for key, value in values.items():
            object.__setattr__(self, key, value)


def roofline_terms(
    spec: GpuSpec, flops: float, nbytes: float, op_class: str, dtype: str | None
) -> tuple[float, float]:
    """The roofline's compute and memory times (ns) of one kernel, without launch overhead:
    ``flops / (peak x eff_c)`` and ``nbytes / (hbm_bandwidth x eff_m)``."""
    if not (0.0 <= flops < math.inf and 0.0 <= nbytes < math.inf):  # the hot path: no parse
        for label, value in (("flops", flops), ("nbytes", nbytes)):
            check(nonneg_number, value, f"{spec.name}: {label}", HardwareError)
    dtype = spec.default_dtype if dtype is None else dtype
    peak = spec.peak_flops.get(dtype)
    if peak is None:
        raise HardwareError(
            f"{spec.name}: no peak FLOP rate for dtype {dtype!r}; "
            f"available: {', '.join(spec.peak_flops)}"
        )
    efficiency = spec.efficiency
    pair = efficiency.get(op_class)
    if pair is None:
        pair = efficiency.get(FALLBACK_CLASS.get(op_class, "default"), efficiency["default"])
    eff_compute, eff_memory = pair
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
    compute, memory = roofline_terms(spec, flops, nbytes, op_class, dtype)
    return max(compute, memory) + spec.launch_overhead_ns


def memory_time_ns(spec: GpuSpec, nbytes: float) -> float:
    """Time in ns to move ``nbytes`` through HBM at the ``"default"`` memory efficiency, for
    memory load/store nodes: ``nbytes / (hbm_bandwidth * eff_m)``, no launch overhead."""
    return roofline_terms(spec, 0.0, nbytes, "default", None)[1]


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
    compute, memory = roofline_terms(spec, flops, nbytes, op_class, dtype)
    return "compute" if compute >= memory else "memory"


def gpu_from_dict(data: Mapping[str, Any], where: str = "hardware") -> GpuSpec:
    """A :class:`GpuSpec` from a YAML-style mapping whose quantities carry units.

    Keys: ``name``, ``peak_flops`` (dtype -> FLOP rate such as ``"312 TFLOP/s"``),
    ``hbm_bandwidth`` (``"2039 GB/s"``), ``hbm_capacity`` (``"80 GiB"``), ``launch_overhead``
    (``"4 us"``), ``efficiency`` (op class -> ``[compute, memory]``), and optionally
    ``default_dtype`` (default ``bf16``), ``sources`` (list of citations) and ``energy`` (the
    energy figures, :mod:`des.core.energy_spec`). Errors name the key
    path under ``where``, e.g. ``hardware.hbm_bandwidth``; unknown or missing keys are errors.
    """
    sec = Section(data, where, keys=_KEYS, error=HardwareError)
    values = _read(sec, "launch_overhead")
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
