"""Named number formats of the LLM workloads and their bytes per element: the precision the
data-parallel gradients are held and reduced in (training, ``grad_reduce_dtype``) and the one
the KV cache is stored in (inference, ``kv_cache_dtype``).

One table serves both, so a setting drives memory and traffic alike: fp32 gradients are held
in a 4-byte buffer and all-reduced at 4 bytes per parameter (Megatron-LM's bf16 parameters with
fp32 gradients, 18 bytes per parameter with Adam: NVIDIA Megatron Core, "Distributed
Optimizer"); an fp8 KV cache holds and reads 1 byte per cached element (vLLM's
``kv_cache_dtype=fp8``; Micikevicius et al., "FP8 Formats for Deep Learning", 2022).
"""

from __future__ import annotations

from typing import Any

from des.core.schema import SchemaError, unknown

__all__ = ["DTYPE_BYTES", "GRAD_REDUCE_DTYPES", "KV_CACHE_DTYPES", "PrecisionError",
           "dtype_bytes"]

#: Bytes per element of each named format (IEEE 754 binary32/binary16, bfloat16, FP8 E4M3/E5M2).
DTYPE_BYTES: dict[str, int] = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1}
#: Formats data-parallel gradients may be held and reduced in.
GRAD_REDUCE_DTYPES: tuple[str, ...] = ("fp32", "bf16", "fp16")
#: Formats the inference KV cache may be stored in.
KV_CACHE_DTYPES: tuple[str, ...] = ("fp32", "bf16", "fp16", "fp8")


class PrecisionError(SchemaError):
    """An unknown number format; the message names the key, the value and the formats
    allowed."""


def dtype_bytes(name: Any, allowed: tuple[str, ...], where: str) -> int:
    """Bytes per element of format ``name``, which must be one of ``allowed``; else a
    :class:`PrecisionError` naming ``where``, the value and the allowed formats."""
    if not isinstance(name, str) or name not in allowed:
        raise PrecisionError(unknown(where, name, allowed, "number format"))
    return DTYPE_BYTES[name]
