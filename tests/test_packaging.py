"""The wheel carries the schemas, and an installed package finds them (not the source checkout's copy)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import pytest

from tests.conftest import ROOT


@pytest.mark.timeout(120)
def test_installed_wheel_finds_its_schema(tmp_path) -> None:
    pytest.importorskip("hatchling", reason="building the wheel needs hatchling (the test extra has it)")
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=100,
    )
    (wheel,) = dist.glob("runner-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "runner/schemas/workflow.schema.json" in names
    assert "runner/schemas/report.schema.json" in names
    for asset in ("report.html", "report.css", "report.js"):  # the HTML report's page, read at run time
        assert f"runner/report/html_assets/{asset}" in names
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:  # a wheel is a zip laid out as site-packages
        zf.extractall(target)
    probe = (
        "import json, runner.resources as r; p = r.schema_path('workflow.schema.json'); "
        "print(json.dumps([str(p), r.load_schema('workflow.schema.json')['title']]))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); {probe}"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=30,
    )
    path, title = json.loads(out.stdout)
    assert path == str(target / "runner" / "schemas" / "workflow.schema.json")
    assert title == "runner workflow"
