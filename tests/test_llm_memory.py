"""Tests for workloads.memory: Korthikanti et al. Table 2, ZeRO, pipeline in-flight counts,
KV cache and the capacity check."""

from __future__ import annotations

import dataclasses

import pytest

from workloads.memory import (
    MemoryBreakdown,
    MemoryModelError,
    activations_per_layer,
    fits,
    in_flight_microbatches,
    kv_cache_bytes,
    pipeline_activation_memory,
    weights_and_optimizer,
)
from workloads.models import ModelConfig, load_model

# (s, b, h, a, t): Korthikanti et al. 2022 Table 3 models at s=2048, plus small shapes.
TABLE2_CASES = [
    (2048, 1, 12288, 96, 8),  # GPT-3 175B
    (2048, 4, 6144, 64, 8),  # 22B
    (2048, 1, 20480, 128, 8),  # 530B
    (512, 2, 1024, 16, 4),
    (1000, 3, 768, 12, 2),
]


def gpt(h: int, a: int, layers: int = 2) -> ModelConfig:
    """A GPT layer as the paper assumes: MHA, ffn = 4h, GELU, LayerNorm."""
    return ModelConfig(name=f"gpt-h{h}", layers=layers, hidden=h, heads=a, kv_heads=a,
                       head_dim=h // a, ffn=4 * h, activation="gelu", vocab=51200, seq=2048)


@pytest.mark.parametrize(("s", "b", "h", "a", "t"), TABLE2_CASES)
def test_korthikanti_table2_exact(s: int, b: int, h: int, a: int, t: int) -> None:
    model = gpt(h, a)
    sbh = s * b * h

    def act(**kw: object) -> float:
        return activations_per_layer(model, micro_batch=b, seq=s, **kw)  # type: ignore[arg-type]

    rel = 1e-12
    assert act() == pytest.approx(sbh * (34 + 5 * a * s / h), rel=rel)
    assert act(tp=t) == pytest.approx(sbh * (10 + 24 / t + 5 * a * s / (h * t)), rel=rel)
    assert act(tp=t, sp=True) == pytest.approx(sbh * (34 / t + 5 * a * s / (h * t)), rel=rel)
    assert act(tp=t, recompute="selective") == pytest.approx(sbh * (10 + 24 / t), rel=rel)
    assert act(tp=t, sp=True, recompute="selective") == pytest.approx(sbh * 34 / t, rel=rel)
    assert act(tp=t, recompute="full") == pytest.approx(2 * sbh, rel=rel)
    assert act(tp=t, sp=True, recompute="full") == pytest.approx(2 * sbh / t, rel=rel)


def test_five_x_reduction_gpt3_175b() -> None:
    # Korthikanti et al.: sequence parallelism + selective recomputation "reduce activation
    # memory by 5x" against the tensor-parallel baseline (Fig. 7: ~20% of the baseline). For
    # GPT-3 175B at t=8, s=2048 the formulas give (10 + 24/8 + 10) / (34/8) = 23/4.25 = 5.41.
    model = load_model("gpt3-175b")
    base = activations_per_layer(model, micro_batch=1, seq=2048, tp=8)
    best = activations_per_layer(model, micro_batch=1, seq=2048, tp=8, sp=True,
                                 recompute="selective")
    assert base / best == pytest.approx(23 / 4.25, rel=1e-12)
    assert 5.0 < base / best < 6.0


@pytest.mark.parametrize(("h", "a"), [(6144, 64), (12288, 96), (20480, 128), (25600, 160)])
def test_reduction_about_five_x_across_table3(h: int, a: int) -> None:
    # 22B .. 1T at t=8: 4.9x to 6.2x, i.e. "about 5x" / 16-20% of the baseline.
    model = gpt(h, a)
    base = activations_per_layer(model, micro_batch=1, seq=2048, tp=8)
    best = activations_per_layer(model, micro_batch=1, seq=2048, tp=8, sp=True,
                                 recompute="selective")
    assert 4.5 < base / best < 6.5


def test_gqa_swiglu_terms() -> None:
    mha = ModelConfig(name="mha", layers=1, hidden=8192, heads=64, kv_heads=64, head_dim=128,
                      ffn=28672, activation="swiglu", vocab=32000, seq=4096, norm="rmsnorm")
    gqa = load_model("llama2-70b")
    s, b, t = 4096, 1, 8
    diff = (activations_per_layer(mha, micro_batch=b, seq=s, tp=t)
            - activations_per_layer(gqa, micro_batch=b, seq=s, tp=t))
    assert diff == pytest.approx(4 * s * b * (mha.kv_dim - gqa.kv_dim) / t, rel=1e-12)
    # SwiGLU keeps three ffn-wide tensors (gate, up, down input), GELU two
    sel = activations_per_layer(gqa, micro_batch=b, seq=s, recompute="selective",
                                dropout=False)
    sbh = s * b * gqa.hidden
    assert sel == pytest.approx(8 * sbh + 4 * s * b * (gqa.q_dim + gqa.kv_dim)
                                + 6 * s * b * gqa.ffn, rel=1e-12)


def test_flash_keeps_only_logsumexp() -> None:
    model = gpt(12288, 96)
    s, b, t = 2048, 1, 8
    selective = activations_per_layer(model, micro_batch=b, seq=s, tp=t,
                                      recompute="selective")
    flash = activations_per_layer(model, micro_batch=b, seq=s, tp=t, flash=True)
    assert flash - selective == pytest.approx(4 * 96 * s * b / t, rel=1e-12)


def test_moe_activations_scale_with_top_k() -> None:
    mixtral = load_model("mixtral-8x7b")
    one = dataclasses.replace(mixtral, top_k=1)
    s, b = 4096, 1
    diff = (activations_per_layer(mixtral, micro_batch=b, seq=s, recompute="selective")
            - activations_per_layer(one, micro_batch=b, seq=s, recompute="selective"))
    assert diff == pytest.approx(2 * s * b * mixtral.hidden + 6 * s * b * mixtral.expert_ffn,
                                 rel=1e-12)


def test_activation_errors() -> None:
    model = gpt(1024, 16)
    with pytest.raises(MemoryModelError, match=r"recompute: unknown policy 'some'; allowed"):
        activations_per_layer(model, micro_batch=1, seq=8, recompute="some")
    with pytest.raises(MemoryModelError, match="tp=3 must divide heads"):
        activations_per_layer(model, micro_batch=1, seq=8, tp=3)
    with pytest.raises(MemoryModelError, match="micro_batch"):
        activations_per_layer(model, micro_batch=0, seq=8)
    with pytest.raises(MemoryModelError, match="model: must be a ModelConfig"):
        activations_per_layer("gpt", micro_batch=1, seq=8)  # type: ignore[arg-type]


# -- ZeRO --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stage", "expected"),
    [(0, (2.0, 2.0, 12.0)), (1, (2.0, 2.0, 12 / 8)), (2, (2.0, 2 / 8, 12 / 8)),
     (3, (2 / 8, 2 / 8, 12 / 8))],
)
def test_zero_stages(stage: int, expected: tuple[float, float, float]) -> None:
    params = 7e9
    got = weights_and_optimizer(params, zero_stage=stage, dp=8)
    assert got == pytest.approx(tuple(x * params for x in expected), rel=1e-12)


def test_zero3_is_sixteen_p_over_dp() -> None:
    params = 1e9
    assert sum(weights_and_optimizer(params, zero_stage=3, dp=8)) == 16 * params / 8
    assert sum(weights_and_optimizer(params, zero_stage=0, dp=8)) == 16 * params
    # bf16 Adam states, no master copy: 2 + 2 + 2*2
    assert sum(weights_and_optimizer(params, zero_stage=0, dp=1, master_bytes=0,
                                     state_bytes=2)) == 8 * params


def test_zero_errors() -> None:
    with pytest.raises(MemoryModelError, match="zero_stage: must be 0, 1, 2 or 3"):
        weights_and_optimizer(1.0, zero_stage=4, dp=1)
    with pytest.raises(MemoryModelError, match="dp"):
        weights_and_optimizer(1.0, zero_stage=1, dp=0)
    with pytest.raises(MemoryModelError, match="params_local"):
        weights_and_optimizer(-1.0, zero_stage=1, dp=1)


# -- pipeline ----------------------------------------------------------------------------------


def test_1f1b_in_flight() -> None:
    pp, m = 8, 32
    assert [in_flight_microbatches("1f1b", pp, s, m) for s in range(pp)] == [8, 7, 6, 5, 4,
                                                                              3, 2, 1]
    assert in_flight_microbatches("1F1B", 8, 0, 3) == 3  # fewer micro-batches than stages
    assert in_flight_microbatches("gpipe", 8, 5, 32) == 32


def test_interleaved_in_flight_matches_korthikanti() -> None:
    # Stage 0 holds L (1 + (p - 1)/(p v)) layers' worth (Korthikanti et al. 2022, 4.2.3).
    layers, pp, v, m = 96, 8, 3, 64
    chunks = in_flight_microbatches("interleaved", pp, 0, m, virtual=v)
    assert chunks == 2 * (pp - 1) + (v - 1) * pp + 1
    held = pipeline_activation_memory(1.0, layers / (pp * v), chunks)
    assert held == pytest.approx(layers * (1 + (pp - 1) / (pp * v)), rel=1e-12)
    assert in_flight_microbatches("interleaved", pp, pp - 1, m, virtual=v) == (v - 1) * pp + 1
    assert in_flight_microbatches("interleaved", 4, 0, 1, virtual=2) == 2  # capped at m * v


def test_pipeline_errors() -> None:
    with pytest.raises(MemoryModelError, match=r"schedule: unknown 'zb'; allowed: gpipe"):
        in_flight_microbatches("zb", 4, 0, 8)
    with pytest.raises(MemoryModelError, match=r"stage: must be in 0\.\.3"):
        in_flight_microbatches("1f1b", 4, 4, 8)
    with pytest.raises(MemoryModelError, match="interleaved schedule needs virtual >= 2"):
        in_flight_microbatches("interleaved", 4, 0, 8)
    with pytest.raises(MemoryModelError, match="virtual: must be 1"):
        in_flight_microbatches("1f1b", 4, 0, 8, virtual=2)


def test_pipeline_activation_memory() -> None:
    assert pipeline_activation_memory(3.0, 10, 4) == 120.0
    with pytest.raises(MemoryModelError, match="per_layer"):
        pipeline_activation_memory(-1.0, 10, 4)


# -- KV cache ----------------------------------------------------------------------------------


def test_kv_cache_llama2_70b() -> None:
    model = load_model("llama2-70b")
    full = kv_cache_bytes(model, batch=1, context=4096)
    assert full == 2 * 80 * 8 * 128 * 4096 * 2 == 1_342_177_280
    assert kv_cache_bytes(model, batch=1, context=4096, tp=8) == full / 8
    assert kv_cache_bytes(model, batch=1, context=4096, tp=16) == full / 8  # replicated head
    assert kv_cache_bytes(model, batch=3, context=100, dtype_bytes=1) == 2 * 80 * 8 * 128 * 300
    mha = load_model("llama2-7b")
    assert kv_cache_bytes(mha, batch=1, context=4096) == 2 * 32 * 32 * 128 * 4096 * 2
    with pytest.raises(MemoryModelError, match="context"):
        kv_cache_bytes(model, batch=1, context=0)


# -- breakdown and fit ------------------------------------------------------------------------


def test_breakdown_and_fits() -> None:
    mem = MemoryBreakdown(weights=10, gradients=20, optimizer=30, activations=40, kv_cache=5,
                          other=1)
    assert mem.total == 106
    assert fits(mem, 106) and not fits(mem, 105.9)
    assert fits(mem, 110, reserve=4) and not fits(mem, 110, reserve=4.5)
    with pytest.raises(MemoryModelError, match=r"MemoryBreakdown\.activations"):
        MemoryBreakdown(1, 1, 1, -1)
    with pytest.raises(MemoryModelError, match="breakdown: must be a MemoryBreakdown"):
        fits(106, 200)  # type: ignore[arg-type]
    with pytest.raises(MemoryModelError, match="reserve"):
        fits(mem, 200, reserve=-1)
    assert issubclass(MemoryModelError, ValueError)


def test_llama2_7b_fits_h100_with_zero3() -> None:
    model = load_model("llama2-7b")
    weights, grads, optimizer = weights_and_optimizer(model.params(), zero_stage=3, dp=8)
    act = model.layers * activations_per_layer(model, micro_batch=1, seq=4096, flash=True,
                                               dropout=False)
    mem = MemoryBreakdown(weights, grads, optimizer, act)
    assert fits(mem, 80 * 2**30)
    unsharded = MemoryBreakdown(*weights_and_optimizer(model.params(), zero_stage=0, dp=8), act)
    assert not fits(unsharded, 80 * 2**30)  # 16 x 6.74e9 = 108 GB
