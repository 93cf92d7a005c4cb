"""Install footprint: the size and package count of a fresh venv after ``pip install .``.

Each variant copies the repository (without .git, caches and build output) to a temporary
folder, creates a venv there, records its site-packages (pip alone), runs ``pip install`` of
the copy with the variant's extras, and reports what the install added: megabytes of files
(apparent size, the sum of file sizes) and distributions (``*.dist-info`` folders). Needs
network access to PyPI. Slow (minutes), so it is a benchmark, never part of the test suite.

    python bench/install_size.py                      # lean: pip install .
    python bench/install_size.py --variant chakra     # pip install .[chakra] (the old set)
    python bench/install_size.py --variant lean --variant chakra --json out.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_MB = 150.0  # issue 16: a lean `pip install .` stays under 150 MB

#: variant -> extras installed with the package ("" = none)
VARIANTS = {"lean": "", "chakra": "chakra"}

_IGNORE = shutil.ignore_patterns(".git", "__pycache__", "*.egg-info", "build", "dist", ".venv",
                                 ".pytest_cache", ".ruff_cache", ".hypothesis", "out",
                                 "results", "*.pyc")


def _site_packages(env: Path) -> Path:
    found = sorted(env.glob("lib/python*/site-packages")) or sorted(
        env.glob("Lib/site-packages"))
    if not found:
        raise RuntimeError(f"no site-packages under {env}")
    return found[0]


def _footprint(site: Path) -> tuple[int, set[str]]:
    """Bytes of all regular files under ``site`` and the names of its distributions."""
    total = sum(p.stat().st_size for p in site.rglob("*") if p.is_file() and not p.is_symlink())
    dists = {p.name.split("-")[0].lower().replace("_", "-") for p in site.glob("*.dist-info")}
    return total, dists


def measure(variant: str, workdir: Path) -> dict[str, object]:
    """Install the repository with ``variant``'s extras into a fresh venv under ``workdir``."""
    src = workdir / "src"
    shutil.copytree(ROOT, src, ignore=_IGNORE)
    env = workdir / "venv"
    venv.EnvBuilder(with_pip=True).create(env)
    python = env / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    site = _site_packages(env)
    base_bytes, base_dists = _footprint(site)
    extras = VARIANTS[variant]
    spec = f"{src}[{extras}]" if extras else str(src)
    start = time.monotonic()
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    spec], check=True)
    seconds = time.monotonic() - start
    after_bytes, after_dists = _footprint(site)
    added = sorted(after_dists - base_dists)
    return {"variant": variant, "spec": f"pip install .[{extras}]" if extras else "pip install .",
            "added_mb": (after_bytes - base_bytes) / 1e6, "site_packages_mb": after_bytes / 1e6,
            "venv_baseline_mb": base_bytes / 1e6, "packages_added": len(added),
            "packages": added, "install_seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", choices=sorted(VARIANTS),
                        help="what to install (repeatable; default: lean)")
    parser.add_argument("--json", type=Path, default=ROOT / "bench/results/install_size.json")
    args = parser.parse_args(argv)
    rows = []
    for variant in args.variant or ["lean"]:
        with tempfile.TemporaryDirectory(prefix=f"des-install-{variant}-") as tmp:
            rows.append(measure(variant, Path(tmp)))
    print(f"{'install':<26}{'added MB':>10}{'site-packages MB':>18}{'packages':>10}"
          f"{'seconds':>9}")
    for r in rows:
        print(f"{r['spec']:<26}{r['added_mb']:>10.1f}{r['site_packages_mb']:>18.1f}"
              f"{r['packages_added']:>10}{r['install_seconds']:>9.0f}")
    lean = next((r for r in rows if r["variant"] == "lean"), None)
    full = next((r for r in rows if r["variant"] == "chakra"), None)
    if lean:
        verdict = "under" if lean["added_mb"] < TARGET_MB else "OVER"
        print(f"lean install: {lean['added_mb']:.1f} MB, {verdict} the {TARGET_MB:.0f} MB target")
    if lean and full:
        print(f"with mlc-chakra: {full['added_mb'] / lean['added_mb']:.1f}x the size, "
              f"{full['packages_added'] / lean['packages_added']:.1f}x the packages")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"target_mb": TARGET_MB, "python": sys.version.split()[0],
                                     "rows": rows}, indent=2))
    print(f"written {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
