"""The house is layered and has no cycles (issue 15): import-linter's contracts in pyproject.toml, checked as CI
would run them (``lint-imports``), and shown to fail on an upward import and on a cycle."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The console script import-linter installs beside this interpreter (the test extra holds it).
LINT_IMPORTS = Path(sys.executable).parent / ("lint-imports.exe" if os.name == "nt" else "lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the package ``runner`` under ``root``, with the contracts of ``root/pyproject.toml``."""
    env = {**os.environ, "PYTHONPATH": str(root), "NO_COLOR": "1"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_house_keeps_every_contract() -> None:
    proc = lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Contracts: 8 kept, 0 broken." in proc.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken", "why"),
    [
        (  # the bottom of the house reaching for the engine
            "runner/config/source.py",
            "from runner.engine import execute",
            "The house: each layer imports only the layers below it BROKEN",
            "runner.config is not allowed to import runner.engine:",
        ),
        (  # providers/endpoint.py imports proxy.py; the way back closes a circle
            "runner/providers/proxy.py",
            "from runner.providers import endpoint",
            "No cycles between the modules of any package BROKEN",
            "No cycles are allowed in runner.providers.",
        ),
        (  # one plugin family reaching into another
            "runner/embeddings/hashing.py",
            "from runner.validate import check",
            "The plugin families do not import each other BROKEN",
            "runner.embeddings is not allowed to import runner.validate:",
        ),
    ],
)
def test_an_upward_import_or_a_cycle_fails_the_check(
    tmp_path: Path, module: str, line: str, broken: str, why: str
) -> None:
    shutil.copytree(ROOT / "runner", tmp_path / "runner", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with open(tmp_path / module, "a", encoding="utf-8") as f:
        f.write(f"\n{line}  # noqa: E402\n")
    proc = lint_imports(tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert broken in proc.stdout
    assert why in proc.stdout
