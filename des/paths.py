"""Where the bundled YAML data (``configs/``) lives, from a checkout or an installed wheel."""

from __future__ import annotations

from importlib import resources
from importlib.abc import Traversable
from pathlib import Path


def config_root() -> Traversable:
    """The ``configs/`` folder: the checkout's own when run from source, else ``des.configs``."""
    checkout = Path(__file__).resolve().parent.parent / "configs"
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
