"""The records the op-cost formulas of :mod:`workloads.ops` take and give: a :class:`Shard`
(how one GPU's share of a layer is cut) and :class:`OpCost` (one op's FLOPs and HBM bytes on that
GPU), with the checks on both and their :class:`OpsError`."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass

from des.core.hardware import DEFAULT_DTYPE_BYTES

__all__ = ["OP_CLASSES", "OpCost", "OpsError", "Shard", "finite_number", "kernels",
           "positive_int"]

#: Op classes used here (a subset of :data:`des.core.hardware.OP_CLASSES`).
OP_CLASSES: tuple[str, ...] = ("gemm", "attention", "attention_unfused", "elementwise",
                               "reduction")


class OpsError(ValueError):
    """An invalid shard, op or argument; the message names the value at fault."""


def finite_number(value: object, label: str, *, positive: bool = False) -> float:
    """``value`` as a finite float >= 0 (> 0 with ``positive``), else :class:`OpsError`."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise OpsError(f"{label}: must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        need = "> 0" if positive else ">= 0"
        raise OpsError(f"{label}: must be a finite number {need}, got {value!r}")
    return number


def positive_int(value: object, label: str) -> int:
    """``value`` if it is an integer >= 1, else :class:`OpsError`."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise OpsError(f"{label}: must be a positive integer, got {value!r}")
    return value


@dataclass(frozen=True)
class OpCost:
    """One operation's cost on one GPU: ``flops`` and HBM ``bytes`` (inputs read + outputs
    written + weights read); ``weight_bytes`` is the parameter part of ``bytes``."""

    name: str
    op_class: str
    flops: float
    bytes: float
    weight_bytes: float = 0.0

    def __post_init__(self) -> None:
        if self.op_class not in OP_CLASSES:
            raise OpsError(
                f"OpCost[{self.name}].op_class: unknown {self.op_class!r}; "
                f"allowed: {', '.join(OP_CLASSES)}"
            )
        for label in ("flops", "bytes", "weight_bytes"):
            value = finite_number(getattr(self, label), f"OpCost[{self.name}].{label}")
            object.__setattr__(self, label, value)
        if self.weight_bytes > self.bytes:
            raise OpsError(
                f"OpCost[{self.name}].weight_bytes ({self.weight_bytes}) exceeds bytes "
                f"({self.bytes})"
            )


@dataclass(frozen=True)
class Shard:
    """How one GPU's share of a layer is cut.

    ``tokens``: tokens this GPU processes (micro-batch x local sequence, after the context
    parallel split). ``seq``: the full sequence length its queries attend over (with or without
    context parallelism). ``tp``/``sp``/``cp``: tensor, sequence and context parallelism;
    ``flash``: FlashAttention vs the unfused attention; ``causal``: halve the attended keys;
    ``dropout``: add dropout ops (GPT/Megatron training; Llama trains without);
    ``decode``: each token is one new token of its own sequence attending ``seq`` cached keys
    (incremental inference; no causal halving; ``cp`` must be 1). ``kv_bytes``: bytes per
    element of the KV cache a decode step reads (0: ``dtype_bytes``; 1 for an fp8 cache).
    """

    tokens: int
    seq: int
    tp: int = 1
    sp: bool = False
    cp: int = 1
    flash: bool = True
    dtype_bytes: int = DEFAULT_DTYPE_BYTES
    causal: bool = True
    dropout: bool = False
    decode: bool = False
    kv_bytes: int = 0

    def __post_init__(self) -> None:
        for label in ("tokens", "seq", "tp", "cp", "dtype_bytes"):
            positive_int(getattr(self, label), f"Shard.{label}")
        if self.kv_bytes != 0:
            positive_int(self.kv_bytes, "Shard.kv_bytes")
        for label in ("sp", "flash", "causal", "dropout", "decode"):
            if not isinstance(getattr(self, label), bool):
                raise OpsError(f"Shard.{label}: must be True or False, got "
                               f"{getattr(self, label)!r}")
        if self.decode and self.cp != 1:
            raise OpsError(f"Shard.cp: context-parallel decode is not modelled; cp must be 1 "
                           f"with decode=True, got {self.cp}")

    @property
    def norm_tokens(self) -> float:
        """Tokens of the norms, dropout and residual adds: ``tokens / tp`` with sequence
        parallelism, else ``tokens``."""
        return self.tokens / self.tp if self.sp else float(self.tokens)

    @property
    def keys_per_query(self) -> float:
        """Keys each query attends on average: ``seq/2`` when causal (not decode), else
        ``seq``."""
        return self.seq / 2 if self.causal and not self.decode else float(self.seq)

    @property
    def cache_bytes(self) -> int:
        """Bytes per cached K/V element: ``kv_bytes``, or ``dtype_bytes`` when 0."""
        return self.kv_bytes or self.dtype_bytes

    @property
    def kv_tokens(self) -> float:
        """Key/value positions this GPU's attention reads: the ``cp`` chunks of its sequences
        (``tokens * cp``), or ``tokens * seq`` cached positions when decoding."""
        return float(self.tokens * self.seq) if self.decode else float(self.tokens * self.cp)


def kernels(costs: Iterable[OpCost]) -> list[tuple[float, float, str]]:
    """``(flops, bytes, op_class)`` per op: the kernel sequence of an event-graph compute node."""
    return [(c.flops, c.bytes, c.op_class) for c in costs]
