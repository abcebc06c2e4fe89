from __future__ import annotations

import json

import pytest

import runner
from runner.providers import PROVIDERS
from tests.conftest import ROOT

API = [
    "load",
    "check",
    "run",
    "arun",
    "stream",
    "each",
    "RowResult",
    "Workflow",
    "Diagnostic",
    "Result",
    "RunStream",
    "Event",
    "NodeQueued",
    "NodeStarted",
    "NodeFinished",
    "NodeFailed",
    "NodeCancelled",
    "NodeSkipped",
    "Retry",
    "Token",
    "StreamRestarted",
    "RunFinished",
    "GateRequest",
    "Decision",
    "ChatProvider",
    "CallContext",
    "ChatResult",
    "Usage",
    "ToolCall",
    "RunnerError",
    "SpecError",
    "RunError",
    "TemplateError",
    "StageTimeout",
    "ToolError",
    "ProviderError",
    "ProviderConfigError",
    "ProviderConnectError",
    "ProviderTimeout",
    "ProviderHTTPError",
    "ProviderProtocolError",
    "GateStop",
    "GateWaiting",
    "GateRejected",
    "__version__",
]
"""The public API (issue 15): a name added, renamed or removed here is a change users see."""


def test_public_names() -> None:
    assert runner.__all__ == API
    for name in API:
        assert getattr(runner, name) is not None, name
    assert set(API) <= set(dir(runner))
    assert runner.load.__module__ == "runner.api" and runner.Result.__module__ == "runner.result"
    assert issubclass(runner.SpecError, runner.RunnerError) and issubclass(runner.ProviderTimeout, runner.RunError)
    with pytest.raises(AttributeError) as caught:
        runner.lod  # noqa: B018
    assert str(caught.value) == "module 'runner' has no attribute 'lod'"


def test_python_c_import_runner_lists_the_api_and_imports_nothing_heavy() -> None:
    """The CLI imports the package on every start: the names load when first used (PEP 562)."""
    import subprocess
    import sys

    code = (
        "import sys, runner; print(runner.__all__); "
        "print(sorted(m for m in ('asyncio', 'jinja2', 'jsonschema', 'numpy', 'aiohttp', 'httpx', 'yaml', 'typing') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert out.stdout.splitlines() == [repr(API), "[]"], out.stderr


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
