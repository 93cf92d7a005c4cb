"""The energy figures of one GPU and its links (the ``energy:`` section of a hardware YAML),
and how a link's ``kind`` maps to a link class with a per-byte energy.

Units are the internal ones of :mod:`des.core.units`: power in W, energy per byte in pJ/B,
energy per FLOP in pJ/FLOP. Every figure is optional: a figure that is not set is not charged,
and :mod:`des.core.energy` lists it as missing in its report instead of inventing a value.

YAML keys (all optional)::

    energy:
      tdp: 400 W                 # board power at full load (datasheet)
      idle_power: 60 W           # static power of an idle GPU
      flop_energy: {bf16: 1.2 pJ/FLOP}   # per dtype; a dtype not listed gets tdp / peak
      hbm_energy: 3.9 pJ/bit     # per byte read or written in HBM
      link_energy: {nvlink: 5.5 pJ/bit, network: 60 pJ/bit}   # per byte per link, by class
      switch_energy: 10 pJ/bit   # per byte forwarded by a switch
      link_classes: {link: network}   # link kind -> class, over the built-in map
      default_link_class: nvlink       # class of a kind nothing maps

``flop_energy`` for a dtype it does not list is ``tdp / peak_flops[dtype]``: the energy of one
FLOP when the whole board power goes into FLOPs at the datasheet peak. It is an UPPER BOUND of
the arithmetic energy (the board power also feeds HBM, links and static power), used because
no per-FLOP figure of these GPUs is published.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from des.core.schema import SchemaError, Section, entries, nonempty_text, optional, show
from des.core.units import parse_byte_energy, parse_flop_energy, parse_power

__all__ = ["BUILTIN_LINK_CLASSES", "LINK_CLASSES", "EnergySpec", "energy_from_dict",
           "link_class"]

#: The link classes a per-byte energy can be given for: scale-up GPU links (NVLink and the
#: like) and the scale-out network (NIC, cable and transceivers: PCIe/NIC/InfiniBand/Ethernet).
LINK_CLASSES: tuple[str, ...] = ("nvlink", "network")

#: The link kinds the built-in topology builders use, and their class. An ASSUMPTION about what
#: each builder's links stand for: rings, direct links, torus axes and a single switch are a
#: node's GPU fabric (NVLink/NVSwitch); tree and rail tiers are the scale-out network.
#: Hierarchical stacks name their links ``dim<d>-<kind>``: dimension 0 is the scale-up fabric,
#: higher dimensions the network. ``energy.link_classes`` overrides any of these.
BUILTIN_LINK_CLASSES: dict[str, str] = {
    "nvlink": "nvlink", "ring": "nvlink", "direct": "nvlink", "uplink": "nvlink",
    "downlink": "nvlink", "x": "nvlink", "y": "nvlink", "z": "nvlink",
    "nic": "network", "host-leaf": "network", "leaf-spine": "network", "host-edge": "network",
    "edge-agg": "network", "agg-core": "network",
}
_DIM = re.compile(r"^dim(\d+)-")

_KEYS = ("tdp", "idle_power", "flop_energy", "hbm_energy", "link_energy", "switch_energy",
         "link_classes", "default_link_class")


def _link_class_name(value: Any, where: str) -> str:
    name = nonempty_text(value, where)
    if name not in LINK_CLASSES:
        raise SchemaError(f"{where}: unknown link class {show(value)}; expected one of "
                          f"{', '.join(LINK_CLASSES)}")
    return name


_FLOP_ENERGY = entries(parse_flop_energy, what="dtype", expected="a mapping of dtype to pJ/FLOP")
_LINK_ENERGY = entries(parse_byte_energy, keys=LINK_CLASSES, what="link class",
                       expected="a mapping of link class to energy per byte")
_LINK_CLASSES = entries(_link_class_name, what="link kind",
                        expected="a mapping of link kind to link class")


@dataclass(frozen=True)
class EnergySpec:
    """Energy figures of one GPU model and its links (see the module doc); None: not set.

    ``tdp_w`` and ``idle_power_w`` in W; ``flop_pj`` per dtype in pJ/FLOP; ``hbm_pj_per_byte``,
    ``link_pj_per_byte`` (per link class) and ``switch_pj_per_byte`` in pJ per byte;
    ``link_classes`` maps link kinds to classes over :data:`BUILTIN_LINK_CLASSES`.
    """

    tdp_w: float | None = None
    idle_power_w: float | None = None
    flop_pj: dict[str, float] = field(default_factory=dict, hash=False)
    hbm_pj_per_byte: float | None = None
    link_pj_per_byte: dict[str, float] = field(default_factory=dict, hash=False)
    switch_pj_per_byte: float | None = None
    link_classes: dict[str, str] = field(default_factory=dict, hash=False)
    default_link_class: str = "nvlink"

    def __post_init__(self) -> None:
        data = {"tdp": self.tdp_w, "idle_power": self.idle_power_w, "flop_energy": self.flop_pj,
                "hbm_energy": self.hbm_pj_per_byte, "link_energy": self.link_pj_per_byte,
                "switch_energy": self.switch_pj_per_byte, "link_classes": self.link_classes,
                "default_link_class": self.default_link_class}
        values = _read(Section(data, "EnergySpec"))
        for key, value in values.items():
            object.__setattr__(self, key, value)

    def flop_energy(self, dtype: str, peak_flop_per_ns: float | None) -> float | None:
        """pJ per FLOP of ``dtype``: the listed figure, else ``tdp / peak`` (an upper bound,
        see the module doc), else None (not set)."""
        if dtype in self.flop_pj:
            return self.flop_pj[dtype]
        if self.tdp_w is None or not peak_flop_per_ns:
            return None
        # W / (FLOP/ns) = J/s * ns/FLOP = 1e-9 J/FLOP = 1000 pJ/FLOP
        return self.tdp_w / peak_flop_per_ns * 1e3


def _read(sec: Section) -> dict[str, Any]:
    """The fields of an :class:`EnergySpec` from a YAML-style mapping, in internal units."""
    values = {
        "tdp_w": sec.get("tdp", optional(parse_power), default=None),
        "idle_power_w": sec.get("idle_power", optional(parse_power), default=None),
        "flop_pj": dict(sec.get("flop_energy", _FLOP_ENERGY, default={})),
        "hbm_pj_per_byte": sec.get("hbm_energy", optional(parse_byte_energy), default=None),
        "link_pj_per_byte": dict(sec.get("link_energy", _LINK_ENERGY, default={})),
        "switch_pj_per_byte": sec.get("switch_energy", optional(parse_byte_energy),
                                      default=None),
        "link_classes": dict(sec.get("link_classes", _LINK_CLASSES, default={})),
        "default_link_class": sec.get("default_link_class", _link_class_name,
                                      default="nvlink"),
    }
    sec.finish()
    return values


def energy_from_dict(data: Mapping[str, Any] | EnergySpec | None, where: str = "energy"
                     ) -> EnergySpec | None:
    """An :class:`EnergySpec` from the ``energy:`` mapping of a hardware YAML (None stays
    None; an EnergySpec is returned as is). Errors name the key path under ``where``."""
    if data is None or isinstance(data, EnergySpec):
        return data
    return EnergySpec(**_read(Section(data, where, keys=_KEYS)))


def link_class(kind: str, spec: EnergySpec) -> str:
    """The class of a link of ``kind``: ``spec.link_classes``, then the built-in map, then
    ``dim0-*`` -> nvlink and ``dim<d>-*`` (d >= 1) -> network, else the spec's default."""
    if kind in spec.link_classes:
        return spec.link_classes[kind]
    if kind in BUILTIN_LINK_CLASSES:
        return BUILTIN_LINK_CLASSES[kind]
    match = _DIM.match(kind)
    if match:
        return "nvlink" if match.group(1) == "0" else "network"
    return spec.default_link_class
