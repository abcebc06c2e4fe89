"""Files that ship with the package: the JSON Schemas.

``schemas/`` at the top of the repository is the single source of truth; the wheel carries a copy at
``runner/schemas/`` (see pyproject.toml). A source checkout or an editable install reads the top-level
folder directly.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

_PACKAGED = Path(__file__).resolve().parent / "schemas"
_SOURCE = Path(__file__).resolve().parent.parent / "schemas"


def schema_path(name: str) -> Path:
    for folder in (_PACKAGED, _SOURCE):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"schema {name!r} is missing from the installation (looked in {_PACKAGED} and {_SOURCE})")


@cache
def load_schema(name: str) -> dict[str, Any]:
    with schema_path(name).open(encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data
