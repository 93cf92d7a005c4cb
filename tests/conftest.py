"""Shared test setup. Helpers several test files use live in ``tests/helpers.py``; this puts
``tests/`` on ``sys.path`` so ``from helpers import ...`` works whatever pytest's import mode
(``prepend`` does it already; ``importlib`` does not)."""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = str(Path(__file__).resolve().parent)
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)
