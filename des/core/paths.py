"""Where the bundled YAML data (``configs/``) lives, from a checkout or an installed wheel."""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Any, TypeVar

from des.core.schema import SchemaError
from des.core.yaml_safe import YamlError, is_file, load_yaml, read_text

T = TypeVar("T")


def config_root() -> Traversable:
    """The ``configs/`` folder: the checkout's own when run from source, else ``des.configs``."""
    checkout = Path(__file__).resolve().parents[2] / "configs"
    if checkout.is_dir():
        return checkout
    return resources.files("des.configs")


def bundled(kind: str) -> dict[str, Traversable]:
    """Bundled YAML files of one kind (``hardware``, ``scenarios``, ...) by stem name."""
    folder = config_root() / kind
    if not folder.is_dir():
        return {}
    return {
        entry.name.rsplit(".", 1)[0]: entry
        for entry in folder.iterdir()
        if entry.name.endswith((".yaml", ".yml"))
    }


def read_preset(kind: str, name_or_path: str | os.PathLike[str]) -> tuple[str, str] | None:
    """(YAML text, where it came from) for a bundled preset of ``kind`` by case-insensitive
    name or for a YAML file path; None when it is neither. A value ending in ``.yaml``/``.yml``
    or holding a path separator is always a path (FileNotFoundError if missing); a bare name
    that is no preset is tried as a file last."""
    text = os.fspath(name_or_path)
    path = Path(text)
    if path.suffix.lower() in (".yaml", ".yml") or "/" in text or os.sep in text:
        if not is_file(path):
            raise FileNotFoundError(f"{kind} file not found: {text}")
        return read_text(path, f"{kind} file"), text
    presets = bundled(kind)
    stem = {s.lower(): s for s in presets}.get(text.strip().lower())
    if stem is not None:
        return read_text(presets[stem], f"{kind} preset"), f"preset {stem}"
    if is_file(path):
        return read_text(path, f"{kind} file"), text
    return None


def read_file_or_bundled(kind: str, spec: str, base_dir: Path | None = None
                         ) -> tuple[str, Path] | None:
    """(text, path) of ``spec`` as a file (relative to ``base_dir`` first, the file that
    names it), else of the bundled ``kind`` file of that exact name; None when it is neither.
    Read with the bounded reader either way."""
    path = Path(spec)
    if not path.is_absolute() and base_dir is not None and is_file(base_dir / path):
        path = base_dir / path
    if is_file(path):
        return read_text(path, f"{kind} file"), path
    found = bundled(kind)
    if spec not in found:
        return None
    return read_text(found[spec], f"bundled {kind}"), Path(spec)


def load_preset(kind: str, name_or_path: str | os.PathLike[str], parse: Callable[[Any], T],
                error: type[Exception], what: str) -> T:
    """A bundled preset or YAML file of ``kind`` parsed by ``parse``; every failure (unknown
    name, missing file, bad YAML, bad content) is an ``error`` naming the source."""
    try:
        found = read_preset(kind, name_or_path)
    except (FileNotFoundError, YamlError, SchemaError) as err:
        raise error(str(err)) from None
    if found is None:
        names = ", ".join(sorted(bundled(kind), key=str.lower)) or "none"
        raise error(f"unknown {what} {os.fspath(name_or_path)!r}; available presets: {names} "
                    "(or give the path of a YAML file)")
    text, source = found
    try:
        data = load_yaml(text, source)
    except YamlError as err:
        raise error(str(err)) from None
    try:
        return parse(data)
    except error as err:
        raise error(f"{source}: {err}") from err
