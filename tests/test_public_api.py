from __future__ import annotations

import json

import runner
from runner.providers import PROVIDERS
from tests.conftest import ROOT


def test_public_names() -> None:
    assert runner.__all__ == ["RunnerError", "SpecError", "__version__"]


def test_schema_provider_enum_matches_the_registry() -> None:
    schema = json.loads((ROOT / "schemas" / "workflow.schema.json").read_text())
    enum = schema["properties"]["models"]["additionalProperties"]["properties"]["provider"]["enum"]
    assert sorted(enum) == sorted(PROVIDERS)


def test_validate_does_not_import_the_network_stack() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from runner.cli import main; main(['validate', 'workflows']); "
        "print(','.join(m for m in ('httpx', 'numpy', 'uvloop', 'asyncio') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert out.stdout.splitlines()[-1] == ""
