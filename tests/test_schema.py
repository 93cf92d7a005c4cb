"""The shared input scheme (des.core.schema) and the defaults defined once."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from astra_bridge.configs import AstraSystem, system_from_dict
from des.app.config import ConfigError, scenario_from_dict
from des.app.sweep_load import sweep_from_dict
from des.app.sweep_types import SweepError
from des.core import schema, units
from des.core.hardware import HardwareError, gpu_from_dict
from des.core.schema import SchemaError, Section
from des.sim.hops import DEFAULT_PACKET_BYTES
from des.sim.options import (
    ASTRA_ENDPOINT_DELAY_NS,
    ASTRA_LOCAL_MEM_BW,
    DEFAULT_CHUNKS,
    EngineOptions,
)
from workloads.models import ModelConfigError, model_from_dict


class MyError(SchemaError):
    """A scheme error of some input kind."""


def scenario(**network: Any) -> dict[str, Any]:
    return {
        "topology": {"kind": "ring", "npus": 4, "bandwidth": "50 GB/s", "latency": "1 us"},
        "network": network,
        "workload": {"kind": "collectives",
                     "ops": [{"collective": "all_reduce", "size": "1 MiB"}]},
    }


def gpu(**changes: Any) -> dict[str, Any]:
    data = {"name": "G", "peak_flops": {"bf16": "100 TFLOP/s"}, "hbm_bandwidth": "1 TB/s",
            "hbm_capacity": "16 GiB", "launch_overhead": "1 us",
            "efficiency": {"default": [0.5, 0.5]}}
    data.update(changes)
    return data


def model(**changes: Any) -> dict[str, Any]:
    data = {"name": "m", "layers": 2, "hidden": 64, "heads": 4, "ffn": 256,
            "activation": "gelu", "vocab": 100, "seq": 32}
    data.update(changes)
    return data


def message(error: type[Exception], fn: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(error) as info:
        fn(*args, **kwargs)
    return str(info.value)


# ---------------------------------------------------------------------- Section
def test_errors_start_with_the_key_path_of_nested_lists_and_mappings() -> None:
    root = Section({"network": {"dims": [{"size": 2}, {"size": 0}]}}, "")
    dims = root.section("network").get("dims")
    second = Section(dims[1], "network.dims[1]")
    text = message(SchemaError, second.get, "size", schema.positive_int)
    assert text.startswith("network.dims[1].size: ")
    assert "int 0" in text and "positive integer" in text


def test_unknown_key_is_refused_with_the_closest_suggestion_and_the_allowed_keys() -> None:
    sec = Section({"chunks": 2, "chunkz": 3}, "network")
    sec.get("chunks")
    sec.get("window", default=0)
    text = message(SchemaError, sec.finish)
    assert text.startswith("network.chunkz: unknown key 'chunkz'")
    assert "did you mean 'chunks'?" in text
    assert "expected one of chunks, window" in text


def test_declared_keys_are_checked_before_any_value_is_read() -> None:
    # a typo of a required key is reported as the typo, not as a missing key
    text = message(SchemaError, Section, {"nme": "x"}, "gpu", keys=("name", "sources"))
    assert text.startswith("gpu.nme: unknown key 'nme' (did you mean 'name'?)")


def test_missing_required_key_names_it_and_hints_at_a_typo() -> None:
    sec = Section({"topolgy": {}}, "")
    text = message(SchemaError, sec.get, "topology")
    assert text.startswith("topology: required key is missing")
    assert "'topolgy'" in text


def test_choice_suggests_the_closest_value() -> None:
    sec = Section({"transport": "cut_thru"}, "network")
    text = message(SchemaError, sec.choice, "transport", ["cut_through", "store_and_forward"],
                   what="transport")
    assert text == ("network.transport: unknown transport 'cut_thru' (did you mean "
                    "'cut_through'?); expected one of cut_through, store_and_forward")


def test_bad_unit_names_key_value_and_allowed_units() -> None:
    sec = Section({"bandwidth": "50 GBs"}, "topology")
    text = message(SchemaError, sec.get, "bandwidth", units.parse_bandwidth)
    assert text.startswith("topology.bandwidth: cannot read '50 GBs' as a bandwidth")
    assert "unknown unit 'GBs'" in text and "GB/s" in text and "Gbps" in text


def test_positive_quantity_shows_the_value_given_and_what_it_became() -> None:
    sec = Section({"packet": "0 KiB"}, "network")
    text = message(SchemaError, sec.get, "packet", schema.positive(units.parse_size, "bytes"))
    assert text == "network.packet: must be > 0 bytes, got '0 KiB' (= 0.0)"


def test_long_bad_values_are_shortened() -> None:
    huge = "x" * 10_000
    text = message(SchemaError, Section({"name": list(range(1000))}, "").get, "name",
                   schema.text)
    assert len(text) < 200 and "..." in text
    text = message(SchemaError, Section({"bw": huge}, "").get, "bw", units.parse_bandwidth)
    assert len(text) < 400 and huge not in text
    text = message(SchemaError, Section, huge, "topology")
    assert len(text) < 200


def test_section_raises_its_error_class_and_nested_sections_inherit_it() -> None:
    sec = Section({"inner": {"n": "x"}}, "outer", error=MyError)
    inner = sec.section("inner")
    with pytest.raises(MyError, match=r"^outer\.inner\.n: must be a positive integer"):
        inner.get("n", schema.positive_int)
    with pytest.raises(MyError, match=r"^outer: must be a mapping of keys, got int 3"):
        Section(3, "outer", error=MyError)


def test_any_value_error_of_a_parser_gets_the_key_path() -> None:
    def parse(value: Any, where: str) -> Any:
        raise ValueError("no good")

    with pytest.raises(MyError, match=r"^a\.b: no good$"):
        Section({"b": 1}, "a", error=MyError).get("b", parse)


def test_entries_checks_keys_and_values() -> None:
    parse = schema.entries(schema.fraction, keys=("gemm", "default"), what="op class")
    text = message(SchemaError, parse, {"gemmm": 0.5}, "eff")
    assert text.startswith("eff: unknown op class 'gemmm' (did you mean 'gemm'?)")
    assert message(SchemaError, parse, {"gemm": 2}, "eff").startswith("eff.gemm: must be")
    assert parse({"gemm": 1}, "eff") == {"gemm": 1.0}


# ---------------------------------------------------------------------- every input kind
def test_every_input_kind_uses_the_scheme() -> None:
    for cls in (ConfigError, HardwareError, ModelConfigError, SweepError, units.UnitError):
        assert issubclass(cls, SchemaError) and issubclass(cls, ValueError)


@pytest.mark.parametrize(("error", "build", "path", "hint"), [
    (ConfigError, lambda: scenario_from_dict(scenario(chunkz=2)), "network.chunkz", "chunks"),
    (HardwareError, lambda: gpu_from_dict(gpu(hbm_bandwith="1 TB/s")),
     "hardware.hbm_bandwith", "hbm_bandwidth"),
    (ModelConfigError, lambda: model_from_dict(model(n_layers=3)), "model.n_layers", "layers"),
    (SweepError, lambda: sweep_from_dict({"base": scenario(), "axes": {"x": [1]}, "axis": {}}),
     "axis", "axes"),
])
def test_a_typo_gets_the_same_message_everywhere(error: type[Exception], build: Any,
                                                 path: str, hint: str) -> None:
    text = message(error, build)
    assert text.startswith(f"{path}: unknown key ")
    assert f"(did you mean {hint!r}?); expected one of " in text


@pytest.mark.parametrize(("error", "build", "start"), [
    (ConfigError, lambda: scenario_from_dict(scenario(packet_size="4 kb")),
     "network.packet_size: cannot read '4 kb' as a size"),
    (HardwareError, lambda: gpu_from_dict(gpu(hbm_bandwidth="1 TBps")),
     "hardware.hbm_bandwidth: cannot read '1 TBps' as a bandwidth"),
    (SweepError, lambda: sweep_from_dict({"base": scenario(), "axes": {"x": [1]},
                                          "memory_limit": "80 gb"}),
     "memory_limit: cannot read '80 gb' as a size"),
])
def test_a_bad_unit_gets_the_same_message_everywhere(error: type[Exception], build: Any,
                                                     start: str) -> None:
    assert message(error, build).startswith(start)


def test_hardware_and_model_value_errors_name_the_path() -> None:
    text = message(HardwareError, gpu_from_dict, gpu(peak_flops={"bf61": "1 TFLOP/s"}))
    assert text.startswith("hardware.peak_flops: unknown dtype 'bf61' (did you mean 'bf16'?)")
    text = message(ModelConfigError, model_from_dict, model(activation="gelu2"))
    assert text.startswith("model.activation: unknown activation 'gelu2' (did you mean 'gelu'?)")


def test_sweep_errors_name_the_path() -> None:
    base = scenario()
    text = message(SweepError, sweep_from_dict, {"base": base, "axes": {"tp": [1, 1]}})
    assert text == "axes.tp: value 1 appears more than once"
    text = message(SweepError, sweep_from_dict,
                   {"base": base, "axes": {"tp": [1]}, "derive": {"dp": 4}})
    assert text.startswith("derive.dp: must be text, got int 4")
    text = message(SweepError, sweep_from_dict,
                   {"base": base, "axes": {"tp": [1]}, "backend": "simpi"})
    assert "backend: unknown backend 'simpi' (did you mean 'simpy'?)" in text
    ok = sweep_from_dict({"base": copy.deepcopy(base), "axes": {"tp": [1, 2]},
                          "constraints": None, "groups": None})
    assert ok.constraints == [] and ok.groups == {} and ok.backend == "simpy"


# ---------------------------------------------------------------------- defaults defined once
def test_packet_and_chunk_defaults_agree_everywhere() -> None:
    assert EngineOptions().packet_bytes == DEFAULT_PACKET_BYTES == 4096.0
    assert EngineOptions().chunks == DEFAULT_CHUNKS
    options = scenario_from_dict(scenario()).options
    assert options.packet_bytes == DEFAULT_PACKET_BYTES
    assert options.chunks == DEFAULT_CHUNKS


def test_astra_defaults_agree_everywhere() -> None:
    compat = EngineOptions.astra_compat()
    assert compat.endpoint_delay_ns == ASTRA_ENDPOINT_DELAY_NS == 10.0
    assert compat.reduction_bandwidth == ASTRA_LOCAL_MEM_BW == 1600.0
    options = scenario_from_dict(scenario(model="astra_congestion_aware")).options
    assert options.endpoint_delay_ns == ASTRA_ENDPOINT_DELAY_NS
    assert options.reduction_bandwidth == ASTRA_LOCAL_MEM_BW
    assert AstraSystem().endpoint_delay_ns == ASTRA_ENDPOINT_DELAY_NS
    assert system_from_dict({}, 1).endpoint_delay_ns == ASTRA_ENDPOINT_DELAY_NS
