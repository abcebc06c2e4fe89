"""OpenAI model and embedding settings: records, defaults, messages, and their schema definitions kept in step
with the records."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from runner.config.openai import (
    OpenAIModelConfig,
    PoolConfig,
    RateLimitConfig,
    TimeoutConfig,
    parse_openai_embedding,
    parse_openai_model,
)
from runner.retry import DEFAULT_RETRY_ON, MODEL_RETRY
from tests.conftest import schema_def

pytestmark = pytest.mark.timeout(20)

ROOT = Path(__file__).resolve().parent.parent
MODEL_SCHEMA = schema_def("openaiModel")
EMBEDDING_SCHEMA = schema_def("openaiEmbedding")

DESIGN_EXAMPLE = {  # models.main in DESIGN.md
    "provider": "openai",
    "model": "qwen-plus",
    "base_url": "https://example.invalid/v1",
    "api_key_env": "OPENAI_API_KEY",
    "stream": True,
    "params": {"temperature": 0.2, "max_tokens": 800},
    "timeout": {"connect": 5, "read": 60, "write": 10, "pool": 10, "first_token": 20, "idle": 30},
    "pool": {"max_connections": 64, "max_keepalive_connections": 16, "keepalive_expiry": 30},
    "retry": {
        "max_attempts": 4,
        "initial_delay": 0.5,
        "max_delay": 8,
        "retry_on": [429, 500, 502, 503, 504, "timeout", "connect"],
    },
    "rate_limit": {"requests_per_minute": 600, "tokens_per_minute": 200000},
}


def test_design_example_parses() -> None:
    jsonschema.Draft202012Validator(MODEL_SCHEMA).validate(DESIGN_EXAMPLE)
    config = parse_openai_model(DESIGN_EXAMPLE)
    assert config.timeout == TimeoutConfig(connect=5, read=60, write=10, pool=10, first_token=20, idle=30)
    assert config.pool == PoolConfig(64, 16, 30)
    assert config.retry.retry_on == (429, 500, 502, 503, 504, "timeout", "connect")
    assert config.retry.retries("503") and config.retry.retries("timeout") and not config.retry.retries("read")
    assert config.rate_limit == RateLimitConfig(600, 200000)
    assert dict(config.params) == {"temperature": 0.2, "max_tokens": 800}


def test_defaults() -> None:
    config = parse_openai_model({"provider": "openai", "base_url": "http://127.0.0.1:8000/v1/", "model": "m"})
    assert config == OpenAIModelConfig(base_url="http://127.0.0.1:8000/v1", model="m")
    assert config.retry.retry_on == DEFAULT_RETRY_ON
    with pytest.raises(TypeError):
        config.params["x"] = 1  # type: ignore[index]  # read-only


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"timeout": {"read": 0}}, "timeout.read must be a number greater than 0, not 0"),
        ({"timeout": {"connect": None}}, "timeout.connect must be a number greater than 0, not None"),
        ({"pool": {"max_connections": 0}}, "pool.max_connections must be a positive integer, not 0"),
        ({"retry": {"jitter": "some"}}, "retry.jitter must be one of full, none, not 'some'"),
        (
            {"retry": {"retry_on": ["sometimes"]}},
            "retry.retry_on entries are HTTP statuses or one of timeout, connect, read, protocol, not 'sometimes'",
        ),
        (
            {"headers": {"Authorization": "Bearer x"}},
            "headers must not set Authorization: name the key's variable in api_key_env",
        ),
        ({"params": {"stream": False}}, "params must not set 'stream': the runner sets it"),
        ({"model": ""}, "model must be a non-empty string, not ''"),
    ],
)
def test_bad_values_name_the_key(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_openai_model({"provider": "openai", "base_url": "http://h/v1", "model": "m", **raw})
    assert str(info.value) == message


def test_null_disables_stream_timeouts() -> None:
    config = parse_openai_model(
        {"base_url": "http://h/v1", "model": "m", "timeout": {"first_token": None, "idle": None, "total": None}}
    )
    assert (config.timeout.first_token, config.timeout.idle, config.timeout.total) == (None, None, None)


@pytest.mark.parametrize(
    "bad",
    [
        {"unknown": 1},
        {"timeout": {"read": -1}},
        {"timeout": {"stall": 3}},
        {"headers": {"authorization": "Bearer x"}},
        {"retry": {"retry_on": [400]}},
        {"retry": {"max_attempts": 0}},
        {"pool": {"max_connections": 0}},
        {"params": {"messages": []}},
        {"base_url": "api.openai.com/v1"},
        {"api_key_env": "sk-live-1234"},
    ],
)
def test_schema_rejects(bad: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(MODEL_SCHEMA)
    assert not validator.is_valid({**DESIGN_EXAMPLE, **bad})


def _described(node: Any, path: str) -> list[str]:
    missing = []
    if isinstance(node, dict):
        for key, sub in (node.get("properties") or {}).items():
            if "description" not in sub:
                missing.append(f"{path}.{key}")
            missing += _described(sub, f"{path}.{key}")
    return missing


@pytest.mark.parametrize("schema", [MODEL_SCHEMA, EMBEDDING_SCHEMA], ids=["model", "embedding"])
def test_schema_is_valid_and_every_key_is_described(schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["additionalProperties"] is False
    assert _described(schema, "") == []


@pytest.mark.parametrize(
    ("section", "record"),
    [
        ("timeout", TimeoutConfig()),
        ("pool", PoolConfig()),
        ("retry", MODEL_RETRY),
        ("rate_limit", RateLimitConfig()),
    ],
)
def test_schema_defaults_match_the_records(section: str, record: Any) -> None:
    for schema in (MODEL_SCHEMA, EMBEDDING_SCHEMA):
        properties = schema["properties"][section]["properties"]
        assert set(properties) == {f.name for f in fields(record)}
        for f in fields(record):
            value = getattr(record, f.name)
            default = list(value) if isinstance(value, tuple) else value
            assert properties[f.name]["default"] == default, f"{section}.{f.name}"


def test_embedding_settings() -> None:
    raw = {
        "provider": "openai",
        "base_url": "http://h/v1",
        "model": "e",
        "dimensions": 256,
        "batch_size": 16,
        "cache": {"dir": ".runner/cache"},
    }
    jsonschema.Draft202012Validator(EMBEDDING_SCHEMA).validate({k: v for k, v in raw.items() if k != "cache"})
    config = parse_openai_embedding(raw)
    assert (config.dimensions, config.batch_size, config.max_concurrency, config.send_dimensions) == (256, 16, 4, False)
    with pytest.raises(ValueError, match="dimensions is required"):
        parse_openai_embedding({"base_url": "http://h/v1", "model": "e"})


def test_settings_module_imports_nothing_heavy() -> None:
    code = (
        "import sys; import runner.config.openai; "
        "print(sorted(m for m in ('httpx', 'aiohttp', 'numpy', 'anyio') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
    )
    assert out.stdout.strip() == "[]"
