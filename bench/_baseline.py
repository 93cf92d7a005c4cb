"""A baseline checkout for before/after benchmarks: ``git archive REV`` of this repository
unpacked into a temporary folder, so one benchmark run can time the old code and the new side
by side (same machine, same load) and report ratios. Only bench scripts use this."""

from __future__ import annotations

import io
import subprocess
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def checkout(rev: str) -> Path:
    """The tree of ``rev`` (a commit, branch or tag of this repository) in a fresh temporary
    folder; raises ``subprocess.CalledProcessError`` for an unknown revision."""
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", rev],
                         capture_output=True, text=True, check=True).stdout.strip()
    data = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", sha],
                          capture_output=True, check=True).stdout
    folder = Path(tempfile.mkdtemp(prefix=f"des-baseline-{sha}-"))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(folder, filter="data")
    return folder
