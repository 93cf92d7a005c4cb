"""The nasty-file corpus (tests/nasty/): every file is refused with exit 2 and a message that
names the file or key path and what went wrong, quoting the input as written (never as rich
markup), and the work is bounded (the alias bomb and deep files run in a subprocess with a
timeout and a memory cap)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import checkout_env

from des.app.cli import EXIT_BAD_INPUT, EXIT_OK, main
from des.core.schema import SchemaError, short
from des.core.yaml_safe import YamlLimits, load_json, load_yaml

NASTY = Path(__file__).parent / "nasty"


def flat(text: str) -> str:
    """Text with rich's line wrapping undone."""
    return " ".join(text.split())


# (file, command, what the message must say)
CASES = [
    ("alias_bomb.yaml", "simulate", ["alias_bomb.yaml, line 8", "once aliases are expanded",
                                     "YamlLimits.max_nodes"]),
    ("recursive_alias.yaml", "simulate", ["recursive_alias.yaml, line 2",
                                          "refers to the structure that contains it"]),
    ("deep_nesting.yaml", "simulate", ["deep_nesting.yaml, line 2",
                                       "nesting deeper than 100 levels"]),
    ("deep_block_nesting.yaml", "simulate", ["deep_block_nesting.yaml, line 4",
                                             "nesting deeper than 100 levels"]),
    ("giant_integer.yaml", "simulate", ["giant_integer.yaml, line 2", "5000 digits",
                                        "at most 100"]),
    ("duplicate_key.yaml", "simulate", ["duplicate_key.yaml, line 7", "duplicate key "
                                        "'topology' (first given on line 2)"]),
    ("duplicate_nested_key.yaml", "simulate", ["duplicate key 'npus'"]),
    ("control_character.yaml", "simulate", ["control_character.yaml, line 1", "#x0000"]),
    ("tab_indent.yaml", "simulate", ["tab_indent.yaml: not valid YAML", "'\\t'", "line 3"]),
    ("unclosed.yaml", "simulate", ["unclosed.yaml: not valid YAML", "expected ',' or ']'"]),
    ("not_a_mapping.yaml", "simulate", ["must be a mapping of keys, got list"]),
    ("empty.yaml", "simulate", ["must be a mapping of keys, got NoneType"]),
    ("latin1.yaml", "simulate", ["latin1.yaml: not UTF-8 text: byte 0xe9 at offset 9",
                                 "save the scenario file as UTF-8"]),
    ("utf16.yaml", "simulate", ["utf16.yaml: not UTF-8 text: byte 0xff at offset 0"]),
    ("markup_in_key.yaml", "simulate", ["network.[/bold]: unknown key '[/bold]'"]),
    ("markup_in_value.yaml", "simulate", ["topology.kind: unknown value '[/]ring[bold]'",
                                          "expected one of"]),
    ("markup_in_size.yaml", "simulate", ["workload.ops[0].size: cannot read "
                                         "'[red]1[/red] MiB' as a size"]),
    ("bracket_object.yaml", "simulate", ["workload.ops: expected a non-empty list"]),
    ("huge_key.yaml", "simulate", ["network.'kkkk", "...", "unknown key"]),
    ("huge_value.yaml", "simulate", ["topology.bandwidth: cannot read '9999", "..."]),
    ("sweep_alias_bomb.yaml", "sweep", ["sweep_alias_bomb.yaml, line 8",
                                        "once aliases are expanded"]),
    ("sweep_markup.yaml", "sweep", ["constraints[0]: cannot read '[/bold] > 1'"]),
    ("topology_duplicate.yaml", "topo", ["topology_duplicate.yaml, line 3",
                                         "duplicate key 'src'"]),
    ("topology_alias_bomb.yaml", "topo", ["topology_alias_bomb.yaml, line 8",
                                          "once aliases are expanded"]),
    ("hf_giant_integer.json", "model", ["hf_giant_integer.json: an integer of 5000 digits"]),
    ("hf_deep.json", "model", ["hf_deep.json: nesting deeper than 100 levels"]),
    ("hf_duplicate.json", "model", ["hf_duplicate.json: duplicate key 'hidden_size'"]),
    ("hf_latin1.json", "model", ["hf_latin1.json: not UTF-8 text: byte 0xe9"]),
    ("hf_markup.json", "model", ["hf_markup.json", "missing required key"]),
]


def argv(name: str, command: str, tmp_path: Path) -> list[str]:
    path = str(NASTY / name)
    return {"simulate": ["simulate", path],
            "sweep": ["sweep", path, "--out", str(tmp_path / "sweep")],
            "topo": ["topo", "show", path],
            "model": ["model", "import", path]}[command]


def test_the_corpus_is_covered() -> None:
    files = {p.name for p in NASTY.iterdir() if p.is_file()}  # folders: other suites' corpora
    assert files == {name for name, _, _ in CASES} | {"markup_name.yaml"}


@pytest.mark.parametrize(("name", "command", "expected"), CASES, ids=[c[0] for c in CASES])
def test_nasty_file_exits_2_with_a_clear_message(name: str, command: str, expected: list[str],
                                                 tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code = main(argv(name, command, tmp_path))
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT, err
    message = flat(err)
    assert message.startswith("error: ")
    for part in expected:
        assert part in message, message
    assert "Traceback" not in err and "internal error" not in err
    assert len(err) < 2500


def test_bracketed_text_of_a_valid_run_is_printed_as_written(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", str(NASTY / "markup_name.yaml")]) == EXIT_OK
    out = flat(capsys.readouterr().out)
    assert "[/bold]:smile: [red]run[/red]: expected an object {pg_name: [x]} [/]" in out


@pytest.mark.parametrize("name", ["alias_bomb.yaml", "deep_nesting.yaml",
                                  "giant_integer.yaml", "markup_in_key.yaml"])
def test_nasty_file_fails_fast_in_a_real_process(name: str, tmp_path: Path) -> None:
    """A fresh interpreter with 1 GiB of address space and a timeout: the bomb is refused
    before anything expands it."""
    def cap_memory() -> None:
        import resource

        limit = 1 << 30
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    proc = subprocess.run([sys.executable, "-m", "des", "simulate", str(NASTY / name)],
                          cwd=tmp_path, env=checkout_env(COLUMNS="200"), capture_output=True,
                          text=True, timeout=60, check=False,
                          preexec_fn=cap_memory if os.name == "posix" else None)
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr


# ---------------------------------------------------------------------- the loader itself
def test_limits_can_be_raised() -> None:
    text = "x: " + "9" * 150
    with pytest.raises(SchemaError, match="150 digits"):
        load_yaml(text, "f")
    assert load_yaml(text, "f", YamlLimits(max_int_digits=200)) == {"x": int("9" * 150)}
    deep = "[" * 150 + "]" * 150
    with pytest.raises(SchemaError, match="deeper than 100"):
        load_yaml(deep, "f")
    assert load_yaml(deep, "f", YamlLimits(max_depth=200)) is not None


def test_merge_keys_and_plain_aliases_still_work() -> None:
    doc = load_yaml("base: &b {x: 1, y: 2}\nother: {<<: *b, x: 3}\nsame: *b\n", "f")
    assert doc == {"base": {"x": 1, "y": 2}, "other": {"x": 3, "y": 2},
                   "same": {"x": 1, "y": 2}}


def test_aliases_expanding_past_the_limit_are_refused_small_ones_are_not() -> None:
    lines = ["a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*{p}'] * 10)}]"
              for i, p in enumerate(["a", "l0", "l1"])]
    assert len(load_yaml("\n".join(lines), "f")["l2"]) == 10  # 10^4 values: fine
    with pytest.raises(SchemaError, match="alias bomb"):
        load_yaml("\n".join(lines), "f", YamlLimits(max_nodes=5000))


def test_json_reader_refuses_what_the_yaml_reader_refuses() -> None:
    with pytest.raises(SchemaError, match="duplicate key 'a'"):
        load_json('{"a": 1, "a": 2}', "c.json")
    with pytest.raises(SchemaError, match="deeper than"):
        load_json("[" * 200 + "]" * 200, "c.json")
    assert load_json('{"s": "[[[[x"}', "c.json") == {"s": "[[[[x"}  # brackets in strings


def test_short_is_bounded_whatever_it_is_given() -> None:
    bomb: list = ["lol"] * 9
    for _ in range(9):
        bomb = [bomb] * 9  # 9^10 strings if walked naively
    for value in (bomb, 10 ** 5000, b"x" * 10 ** 6, {i: i for i in range(10 ** 4)},
                  set(range(10 ** 4)), "[/bold]" * 10 ** 5, object()):
        assert len(short(value)) <= 120
