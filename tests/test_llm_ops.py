"""Tests for workloads.ops: Megatron FLOP formula, sharding, backward, flash vs plain
attention, MoE, optimizer and error cases."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workloads import ops
from workloads.models import ModelConfig, load_model
from workloads.op_cost import OpCost, OpsError, Shard

GEMM_LIKE = ("gemm", "attention")


def by_name(costs: list[OpCost]) -> dict[str, OpCost]:
    return {c.name: c for c in costs}


def layer(model: ModelConfig, shard: Shard) -> list[OpCost]:
    return ops.attention_forward(model, shard) + ops.mlp_forward(model, shard)


def megatron(b: int, s: int, layers: int, h: int, vocab: int) -> float:
    """Narayanan et al. 2021, eq. (3): forward + backward FLOPs of a GPT iteration."""
    return 72 * b * s * layers * h**2 * (1 + s / (6 * h) + vocab / (12 * layers * h))


def gpt_toy(**changes: object) -> ModelConfig:
    fields: dict[str, object] = dict(name="toy", layers=3, hidden=256, heads=8, kv_heads=8,
                                     head_dim=32, ffn=1024, activation="gelu", vocab=5000,
                                     seq=512)
    fields.update(changes)
    return ModelConfig(**fields)  # type: ignore[arg-type]


# -- Megatron / 6ND --------------------------------------------------------------------------


@pytest.mark.parametrize("flash", [True, False])
@pytest.mark.parametrize(("name", "batch", "seq"),
                         [("gpt3-175b", 1, 2048), ("gpt3-175b", 8, 2048),
                          ("megatron-22b", 4, 2048), ("toy", 2, 512), ("toy", 3, 100)])
def test_megatron_formula_exact(name: str, batch: int, seq: int, flash: bool) -> None:
    model = gpt_toy() if name == "toy" else load_model(name)
    shard = Shard(tokens=batch * seq, seq=seq, causal=False, flash=flash)
    fwd = layer(model, shard)
    head = ops.lm_head_forward(model, shard)
    # model FLOPs = 3x forward (Megatron counts backward as 2x forward, no recomputation;
    # the flash core's own backward does 2.5x, see test_backward_multipliers_names_and_order)
    total = 3 * (model.layers * ops.matmul_flops(fwd) + ops.matmul_flops(head))
    expected = megatron(batch, seq, model.layers, model.hidden, model.vocab)
    assert total == pytest.approx(expected, rel=1e-9)
    assert ops.training_flops(model, batch * seq, seq, causal=False) == pytest.approx(
        expected, rel=1e-9)


def test_megatron_formula_from_backward_ops_plain() -> None:
    # Unfused attention: every matmul is a GEMM whose backward is exactly 2x.
    model = load_model("gpt3-175b")
    b, s = 2, 2048
    shard = Shard(tokens=b * s, seq=s, causal=False, flash=False)
    fwd, head = layer(model, shard), ops.lm_head_forward(model, shard)

    def gemm(costs: list[OpCost]) -> float:  # the unfused score/context matmuls included
        return ops.matmul_flops(costs)

    total = model.layers * (gemm(fwd) + gemm(ops.backward(fwd))) + gemm(head) + gemm(
        ops.backward(head))
    assert total == pytest.approx(megatron(b, s, model.layers, model.hidden, model.vocab),
                                  rel=1e-9)
    # ... the unfused chain's softmax is not a matmul
    softmax = [c for c in fwd if c.name == "attn_softmax"]
    assert softmax and softmax[0].op_class == "attention_unfused" and gemm(softmax) == 0.0


def test_six_nd_plus_attention_gpt3() -> None:
    model = load_model("gpt3-175b")
    b, s, h, n_layers = 4, 2048, model.hidden, model.layers
    tokens = b * s
    six_nd = 6 * model.params() * tokens
    full = ops.training_flops(model, tokens, s, causal=False)
    assert full == pytest.approx(six_nd + 12 * b * s * s * h * n_layers, rel=0.02)
    # the attention term matters at s=2048 (s/(6h) = 2.8%): 6ND alone is off by more than 2%
    assert abs(full / six_nd - 1) > 0.02
    causal = ops.training_flops(model, tokens, s)
    assert causal == pytest.approx(six_nd + 6 * b * s * s * h * n_layers, rel=0.02)


def test_dense_gemm_flops_are_two_params_per_token() -> None:
    # Llama-2-70B (GQA, SwiGLU, no biases): the weight GEMMs of a layer do 2 FLOPs per weight
    # per token, tying ops to models.
    model = load_model("llama2-70b")
    t = 4096
    costs = [c for c in layer(model, Shard(tokens=t, seq=4096)) if c.op_class == "gemm"]
    assert sum(c.flops for c in costs) == 2 * t * (model.attention_params()
                                                   + model.mlp_params())
    assert sum(c.weight_bytes for c in costs) == 2 * (model.attention_params()
                                                      + model.mlp_params())


def test_causal_halves_attention_core_only() -> None:
    model = load_model("llama2-7b")
    full = by_name(layer(model, Shard(tokens=4096, seq=4096, causal=False)))
    half = by_name(layer(model, Shard(tokens=4096, seq=4096, causal=True)))
    assert half["flash_attn"].flops == full["flash_attn"].flops / 2
    assert half["flash_attn"].flops == 2 * 4096 * 4096 * 32 * 128
    for name in ("qkv", "attn_out", "mlp_up", "mlp_gate", "mlp_down"):
        assert half[name] == full[name]


# -- sharding --------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "tp"), [("llama2-7b", 2), ("llama2-7b", 8),
                                          ("gpt3-175b", 8), ("llama2-70b", 8),
                                          ("mixtral-8x7b", 4)])
def test_tp_divides_gemm_flops_and_weights_exactly(name: str, tp: int) -> None:
    model = load_model(name)
    one = by_name(ops.attention_forward(model, Shard(tokens=2048, seq=2048))
                  + ops.lm_head_forward(model, Shard(tokens=2048, seq=2048)))
    split = by_name(ops.attention_forward(model, Shard(tokens=2048, seq=2048, tp=tp))
                    + ops.lm_head_forward(model, Shard(tokens=2048, seq=2048, tp=tp)))
    if not model.is_moe:
        one.update(by_name(ops.mlp_forward(model, Shard(tokens=2048, seq=2048))))
        split.update(by_name(ops.mlp_forward(model, Shard(tokens=2048, seq=2048, tp=tp))))
    for name_, cost in one.items():
        if cost.op_class in GEMM_LIKE:
            assert split[name_].flops * tp == pytest.approx(cost.flops, rel=1e-12), name_
            assert split[name_].weight_bytes * tp == pytest.approx(cost.weight_bytes,
                                                                   rel=1e-12)


def test_tp_beyond_kv_heads_replicates_kv() -> None:
    model = load_model("llama2-70b")  # 8 KV heads
    s16 = by_name(ops.attention_forward(model, Shard(tokens=1024, seq=1024, tp=16)))
    h, d = model.hidden, model.head_dim
    assert s16["qkv"].flops == 2 * 1024 * h * (64 // 16 + 2 * 1) * d
    with pytest.raises(OpsError, match="tp=3 must divide heads"):
        ops.attention_forward(model, Shard(tokens=1024, seq=1024, tp=3))


@pytest.mark.parametrize("tp", [2, 4, 8])
def test_sp_divides_norm_dropout_residual_tokens(tp: int) -> None:
    model = load_model("gpt3-175b")
    kw = dict(tokens=4096, seq=2048, tp=tp, dropout=True)
    off = by_name(layer(model, Shard(sp=False, **kw)))  # type: ignore[arg-type]
    on = by_name(layer(model, Shard(sp=True, **kw)))  # type: ignore[arg-type]
    elementwise = ("norm1", "norm2", "dropout1", "dropout2", "residual1", "residual2")
    for name in elementwise:
        assert on[name].flops * tp == pytest.approx(off[name].flops, rel=1e-12)
        activation_bytes = off[name].bytes - off[name].weight_bytes
        assert (on[name].bytes - on[name].weight_bytes) * tp == pytest.approx(
            activation_bytes, rel=1e-12)
    for name, cost in off.items():
        if name not in elementwise:
            assert on[name] == cost  # GEMMs and the attention core see all tokens


def test_cp_divides_attention_flops_but_reads_all_kv() -> None:
    model = load_model("llama3-8b")
    seq, cp = 8192, 4
    whole = by_name(ops.attention_forward(model, Shard(tokens=seq, seq=seq)))
    part = by_name(ops.attention_forward(model, Shard(tokens=seq // cp, seq=seq, cp=cp)))
    assert part["flash_attn"].flops * cp == whole["flash_attn"].flops
    assert part["qkv"].flops * cp == whole["qkv"].flops
    e, d, kv = 2, model.head_dim, model.kv_heads
    kv_bytes = 2 * e * seq * kv * d  # the K and V of the whole sequence
    q_o_bytes = 2 * e * (seq // cp) * model.heads * d
    assert part["flash_attn"].bytes == q_o_bytes + kv_bytes + 4 * (seq // cp) * model.heads


@settings(max_examples=40, deadline=None)
@given(tokens=st.integers(1, 1 << 14), tp=st.sampled_from([1, 2, 4, 8]),
       sp=st.booleans(), flash=st.booleans(), causal=st.booleans())
def test_property_tp_scales_layer_gemm_flops(tokens: int, tp: int, sp: bool, flash: bool,
                                             causal: bool) -> None:
    model = load_model("llama2-13b" if tp != 8 else "llama2-7b")
    base = Shard(tokens=tokens, seq=2048, flash=flash, causal=causal)
    split = dataclasses.replace(base, tp=tp, sp=sp)
    assert ops.matmul_flops(layer(model, split)) * tp == pytest.approx(
        ops.matmul_flops(layer(model, base)), rel=1e-12)
    for cost in layer(model, split):
        assert cost.flops >= 0 and cost.bytes >= cost.weight_bytes >= 0


# -- backward --------------------------------------------------------------------------------


def test_backward_multipliers_names_and_order() -> None:
    model = load_model("gpt3-175b")
    fwd = layer(model, Shard(tokens=2048, seq=2048, dropout=True))
    bwd = ops.backward(fwd)
    assert [c.name for c in bwd] == ["bwd." + c.name for c in reversed(fwd)]
    for f, b in zip(reversed(fwd), bwd, strict=True):
        flops_x = 2.5 if f.op_class == "attention" else 2.0
        assert b.flops == f.flops * flops_x
        assert b.bytes == 2 * f.bytes and b.weight_bytes == 2 * f.weight_bytes
        assert b.op_class == f.op_class
    gemm = [c for c in fwd if c.op_class == "gemm"]
    assert ops.total_flops(ops.backward(gemm)) == 2 * ops.total_flops(gemm)


def test_backward_rejects_non_ops() -> None:
    with pytest.raises(OpsError, match="expected OpCost"):
        ops.backward([("qkv", 1.0)])  # type: ignore[list-item]


# -- flash vs plain ----------------------------------------------------------------------------


@pytest.mark.parametrize("causal", [True, False])
def test_flash_and_plain_same_matmul_flops_flash_far_fewer_bytes(causal: bool) -> None:
    model = load_model("llama2-7b")
    s, e = 4096, 2
    kw = dict(tokens=s, seq=s, causal=causal)
    flash = by_name(ops.attention_forward(model, Shard(flash=True, **kw)))  # type: ignore[arg-type]
    plain = by_name(ops.attention_forward(model, Shard(flash=False, **kw)))  # type: ignore[arg-type]
    assert "flash_attn" not in plain and "attn_scores" not in flash
    assert flash["flash_attn"].flops == plain["attn_scores"].flops + plain["attn_context"].flops
    # the plain path writes and reads the s x s score/probability matrices per head
    squares = s * s * model.heads
    assert plain["attn_softmax"].bytes == 2 * e * squares
    plain_core = sum(plain[n].bytes for n in ("attn_scores", "attn_softmax", "attn_context"))
    assert plain_core > 4 * e * squares
    assert flash["flash_attn"].bytes < plain_core / 20
    assert ops.matmul_flops(flash.values()) == ops.matmul_flops(plain.values())


def test_plain_attention_dropout_op() -> None:
    model = gpt_toy()
    names = [c.name for c in ops.attention_forward(
        model, Shard(tokens=512, seq=512, flash=False, dropout=True))]
    assert names == ["norm1", "qkv", "attn_scores", "attn_softmax", "attn_dropout",
                     "attn_context", "attn_out", "dropout1", "residual1"]
    names = [c.name for c in ops.attention_forward(model, Shard(tokens=512, seq=512))]
    assert names == ["norm1", "qkv", "flash_attn", "attn_out", "residual1"]


# -- MLP / MoE -------------------------------------------------------------------------------


def test_mlp_swiglu_has_gate_gelu_does_not() -> None:
    llama = [c.name for c in ops.mlp_forward(load_model("llama2-7b"), Shard(tokens=8, seq=8))]
    gpt = [c.name for c in ops.mlp_forward(load_model("gpt3-175b"), Shard(tokens=8, seq=8))]
    assert llama == ["norm2", "mlp_up", "mlp_gate", "mlp_act", "mlp_down", "residual2"]
    assert gpt == ["norm2", "mlp_up", "mlp_act", "mlp_down", "residual2"]


def test_mlp_ffn_must_split() -> None:
    model = gpt_toy(ffn=1004)
    with pytest.raises(OpsError, match=r"tp=8 must divide ffn \(1004\)"):
        ops.mlp_forward(model, Shard(tokens=8, seq=8, tp=8))


def test_moe_forward_expert_costs() -> None:
    model = load_model("mixtral-8x7b")
    tokens, ep, tp = 4096, 4, 2
    per_expert = ops.balanced_tokens_per_expert(model, tokens, ep)
    assert per_expert == tokens * ep * 2 / 8
    local = model.experts // ep
    costs = by_name(ops.moe_forward(model, Shard(tokens=tokens, seq=4096, tp=tp), per_expert,
                                    local))
    routed = per_expert * local
    assert routed == tokens * model.top_k  # balanced: this GPU processes its tokens' top_k
    f = model.expert_ffn // tp
    expert_gemm = sum(costs[n].flops for n in ("expert_up", "expert_gate", "expert_down"))
    assert expert_gemm == 2 * routed * 3 * model.hidden * f
    weights = sum(costs[n].weight_bytes for n in ("expert_up", "expert_gate", "expert_down"))
    assert weights == 2 * local * model.expert_params() / tp
    assert costs["router"].flops == 2 * tokens * model.hidden * model.experts


def test_moe_layer_flops_match_active_params() -> None:
    model = load_model("mixtral-8x7b")
    t, s = 1024, 4096
    attention_core = 4 * t * (s / 2) * model.heads * model.head_dim
    per_layer_active = model.active_params() - model.embedding_params() - model.lm_head_params()
    per_layer_active -= model.norm_params()  # final norm
    norms = 2 * model.norm_params()
    expected = 2 * t * (per_layer_active / model.layers - norms) + attention_core
    assert ops.layer_flops_forward(model, t, s) == pytest.approx(expected, rel=1e-12)


def test_moe_errors() -> None:
    mixtral, dense = load_model("mixtral-8x7b"), load_model("llama2-7b")
    shard = Shard(tokens=16, seq=16)
    with pytest.raises(OpsError, match="needs an MoE model"):
        ops.moe_forward(dense, shard, 4.0, 1)
    with pytest.raises(OpsError, match=r"local_experts: must be in 1\.\.8"):
        ops.moe_forward(mixtral, shard, 4.0, 9)
    with pytest.raises(OpsError, match="tokens_per_expert"):
        ops.moe_forward(mixtral, shard, -1.0, 2)
    with pytest.raises(OpsError, match="MoE ModelConfig"):
        ops.balanced_tokens_per_expert(dense, 16)


# -- embedding, head, loss, optimizer, decode --------------------------------------------------


def test_embedding_head_loss() -> None:
    model = load_model("gpt3-175b")
    t, tp, e = 2048, 8, 2
    shard = Shard(tokens=t, seq=2048, tp=tp)
    emb = by_name(ops.embedding_forward(model, shard))
    assert set(emb) == {"embedding", "pos_embedding"}
    assert emb["embedding"].weight_bytes == e * t * model.hidden / tp
    assert "pos_embedding" not in by_name(ops.embedding_forward(load_model("llama2-7b"), shard))
    head = by_name(ops.lm_head_forward(model, shard))
    assert head["lm_head"].flops == 2 * t * model.hidden * model.vocab / tp
    assert head["final_norm"].op_class == "reduction"
    (loss,) = ops.loss_forward(model, shard)
    assert loss.op_class == "reduction"
    assert loss.bytes == 2 * e * t * model.vocab / tp + 4 * t


def test_optimizer_step_bytes_and_flops() -> None:
    params = 1e9
    grad_norm, adam = ops.optimizer_step(params)
    assert adam.bytes == 28 * params  # grad 2 + (master, m, v) x (read + write) 24 + bf16 copy 2
    assert adam.flops == 12 * params and adam.op_class == "elementwise"
    assert grad_norm.bytes == 2 * params
    (sharded,) = ops.optimizer_step(params, zero_shard=8, clip_grad=False)
    assert sharded.bytes == 28 * params / 8
    (no_master,) = ops.optimizer_step(params, master_bytes=0, clip_grad=False)
    assert no_master.bytes == (2 + 4 + 16) * params
    with pytest.raises(OpsError, match="zero_shard"):
        ops.optimizer_step(params, zero_shard=0)
    with pytest.raises(OpsError, match="params_local"):
        ops.optimizer_step(-1)


def test_decode_reads_the_kv_cache() -> None:
    model = load_model("llama2-70b")
    batch, context, tp = 4, 4096, 8
    costs = by_name(ops.attention_forward(
        model, Shard(tokens=batch, seq=context, tp=tp, decode=True)))
    core = costs["flash_attn"]
    kv_local, d = model.kv_heads // tp, model.head_dim
    kv_cache_per_layer = 2 * kv_local * d * context * batch * 2
    q_o = 2 * 2 * batch * (model.heads // tp) * d
    assert core.bytes == kv_cache_per_layer + q_o + 4 * batch * model.heads // tp
    assert core.flops == 4 * batch * context * (model.heads // tp) * d  # no causal halving


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"tokens": 0, "seq": 8}, r"Shard\.tokens: must be a positive integer"),
        ({"tokens": 8, "seq": 8, "tp": 0}, r"Shard\.tp"),
        ({"tokens": 8, "seq": 8, "sp": 1}, r"Shard\.sp: must be True or False"),
        ({"tokens": 8, "seq": 8, "cp": 2, "decode": True}, r"Shard\.cp: context-parallel"),
        ({"tokens": 8.0, "seq": 8}, r"Shard\.tokens"),
    ],
)
def test_shard_validation(kwargs: dict[str, object], pattern: str) -> None:
    with pytest.raises(OpsError, match=pattern):
        Shard(**kwargs)  # type: ignore[arg-type]


def test_opcost_validation() -> None:
    with pytest.raises(OpsError, match=r"op_class: unknown 'matmul'; allowed: gemm"):
        OpCost("x", "matmul", 1.0, 1.0)
    with pytest.raises(OpsError, match=r"OpCost\[x\]\.flops"):
        OpCost("x", "gemm", float("nan"), 1.0)
    with pytest.raises(OpsError, match="weight_bytes"):
        OpCost("x", "gemm", 1.0, 1.0, 2.0)
    assert issubclass(OpsError, ValueError)


def test_bad_arguments() -> None:
    with pytest.raises(OpsError, match="model: must be a ModelConfig"):
        ops.attention_forward("llama2-7b", Shard(tokens=8, seq=8))  # type: ignore[arg-type]
    with pytest.raises(OpsError, match="shard: must be a Shard"):
        ops.mlp_forward(load_model("llama2-7b"), (8, 8))  # type: ignore[arg-type]


def _unfused_chain_ms(gpu, seq: int) -> tuple[float, float]:
    """(forward, forward + backward) ms of the unfused attention chain on FlashAttention's
    App. E.6 benchmark: batch 16, 8 heads of dimension 64, fp16, no mask or dropout."""
    from des.core.hardware import compute_time_ns
    from workloads.models import ModelConfig

    model = ModelConfig(name="bench", layers=1, hidden=512, heads=8, kv_heads=8, head_dim=64,
                        ffn=2048, activation="gelu", vocab=8, seq=seq)
    shard = Shard(tokens=16 * seq, seq=seq, causal=False, flash=False, dropout=False)
    core = [c for c in ops.attention_forward(model, shard) if c.op_class == "attention_unfused"]
    fwd = sum(compute_time_ns(gpu, c.flops, c.bytes, c.op_class) for c in core) / 1e6
    bwd = sum(compute_time_ns(gpu, c.flops, c.bytes, c.op_class)
              for c in ops.backward(core)) / 1e6
    return fwd, fwd + bwd


def test_the_a100_unfused_attention_figure_reproduces_its_source() -> None:
    # configs/hardware/A100-SXM4-80GB.yaml derives attention_unfused's memory efficiency from
    # Dao et al. 2022, App. E.6, Table 20: Megatron's attention, 13.21 ms forward + backward at
    # sequence 2048 on an A100 40GB (1,555 GB/s). Changing the byte model must revisit it.
    import dataclasses

    from des.core.hardware import load_gpu

    a100_40gb = dataclasses.replace(load_gpu("A100-SXM4-80GB"), hbm_bandwidth=1555.0)
    fwd, both = _unfused_chain_ms(a100_40gb, 2048)
    assert both == pytest.approx(13.21, rel=0.01)
    assert fwd == pytest.approx(4.28, rel=0.05)  # Table 18's forward, not used to derive it


def test_a_preset_without_the_unfused_figure_times_the_chain_as_gemms() -> None:
    from des.core.hardware import compute_time_ns, load_gpu

    h100 = load_gpu("H100-SXM5-80GB")
    assert "attention_unfused" not in h100.efficiency
    for flops, nbytes in ((1e12, 1e9), (1e9, 1e10)):
        assert compute_time_ns(h100, flops, nbytes, "attention_unfused") == \
            compute_time_ns(h100, flops, nbytes, "gemm")
