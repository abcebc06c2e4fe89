"""The working-memory settings: record, parser, schema definition, token counters."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from runner.config.memory import (
    MODES,
    TOKEN_COUNTERS,
    WORKING_MEMORY_KEYS,
    WorkingMemoryConfig,
    parse_working_memory,
)
from runner.memory.tokens import (
    COUNTERS_BY_NAME,
    IMAGE_PART_TOKENS,
    MESSAGE_OVERHEAD,
    ApproxCounter,
    TokenCounterError,
    make_counter,
)
from tests.conftest import schema_def

pytestmark = pytest.mark.timeout(10)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def schema() -> dict[str, object]:
    return schema_def("memory")


def test_defaults_applied() -> None:
    assert parse_working_memory({"max_total_tokens": 20000}) == WorkingMemoryConfig(
        max_total_tokens=20000,
        keep_recent_count=10,
        working_summary_mode="auto",
        compact_ratio_threshold=0.75,
        max_tool_message_tokens=2000,
        summary_model=None,
        summary_group_tokens=None,
        token_counter="approx",
    )


def test_every_key_parsed() -> None:
    config = parse_working_memory(
        {
            "max_total_tokens": 8000,
            "keep_recent_count": 0,
            "working_summary_mode": "compress",
            "compact_ratio_threshold": 1,
            "max_tool_message_tokens": 500,
            "summary_model": "main",
            "summary_group_tokens": 3000,
            "token_counter": "tiktoken",
            "long_term": {"embedding": "default", "store": "x"},  # another parser's key: ignored
        }
    )
    assert config == WorkingMemoryConfig(8000, 0, "compress", 1.0, 500, "main", 3000, "tiktoken")
    assert isinstance(config.compact_ratio_threshold, float)
    assert config.group_tokens == 3000
    assert config.summarises
    assert parse_working_memory({"max_total_tokens": 8000}).group_tokens == 8000
    assert not parse_working_memory({"max_total_tokens": 8000, "working_summary_mode": "compact"}).summarises


def test_record_is_frozen() -> None:
    config = WorkingMemoryConfig(max_total_tokens=1000)
    with pytest.raises(AttributeError):
        config.max_total_tokens = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, "max_total_tokens is required for a working memory (e.g. 20000)"),
        ({"max_total_tokens": 255}, "max_total_tokens must be an integer of at least 256, not 255"),
        ({"max_total_tokens": True}, "max_total_tokens must be an integer of at least 256, not True"),
        ({"max_total_tokens": "1000"}, "max_total_tokens must be an integer of at least 256, not '1000'"),
        (
            {"max_total_tokens": 1000, "keep_recent_count": -1},
            "keep_recent_count must be an integer of at least 0, not -1",
        ),
        (
            {"max_total_tokens": 1000, "working_summary_mode": "shrink"},
            "working_summary_mode must be one of compact, compress, auto, not 'shrink'",
        ),
        (
            {"max_total_tokens": 1000, "token_counter": "exact"},
            "token_counter must be one of approx, tiktoken, not 'exact'",
        ),
        (
            {"max_total_tokens": 1000, "compact_ratio_threshold": 0},
            "compact_ratio_threshold must be a number above 0 and at most 1, not 0",
        ),
        (
            {"max_total_tokens": 1000, "compact_ratio_threshold": 1.5},
            "compact_ratio_threshold must be a number above 0 and at most 1, not 1.5",
        ),
        (
            {"max_total_tokens": 1000, "max_tool_message_tokens": 63},
            "max_tool_message_tokens must be an integer of at least 64, not 63",
        ),
        (
            {"max_total_tokens": 1000, "max_tool_message_tokens": 1000},
            "max_tool_message_tokens (1000) must be below max_total_tokens (1000): "
            "a single tool result could otherwise fill the whole budget",
        ),
        (
            {"max_total_tokens": 1000, "summary_model": ""},
            "summary_model must be the name of an entry under models:, not ''",
        ),
        (
            {"max_total_tokens": 1000, "summary_group_tokens": 10},
            "summary_group_tokens must be an integer of at least 256, not 10",
        ),
    ],
)
def test_bad_values_named(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_working_memory(raw)
    assert str(caught.value) == message


def test_default_tool_limit_may_exceed_a_small_budget() -> None:
    # The default (2000) is not the user's choice, so a small budget alone is no error.
    assert parse_working_memory({"max_total_tokens": 1000}).max_tool_message_tokens == 2000


def test_schema_definition_matches_parser(schema: dict[str, object]) -> None:
    jsonschema.Draft202012Validator.check_schema(schema)
    properties = schema["properties"]
    assert isinstance(properties, dict)
    assert set(properties) == WORKING_MEMORY_KEYS | {"long_term"}  # one memory entry: working and long-term
    assert schema["additionalProperties"] is False
    assert all(isinstance(p.get("description"), str) and p["description"] for p in properties.values())
    assert tuple(properties["working_summary_mode"]["enum"]) == MODES
    assert tuple(properties["token_counter"]["enum"]) == TOKEN_COUNTERS == tuple(COUNTERS_BY_NAME)
    defaults = WorkingMemoryConfig(max_total_tokens=1000)
    for key, spec in properties.items():
        if "default" in spec:
            assert spec["default"] == getattr(defaults, key), key
    dependent = schema["dependentRequired"]
    assert isinstance(dependent, dict)
    assert set(dependent) == WORKING_MEMORY_KEYS - {"max_total_tokens"}


@pytest.mark.parametrize(
    "raw",
    [
        {
            "max_total_tokens": 20000,
            "keep_recent_count": 10,
            "working_summary_mode": "auto",
            "summary_model": "main",
        },
        {"max_total_tokens": 256, "compact_ratio_threshold": 1, "max_tool_message_tokens": 64},
        {},  # a long_term-only entry has no working memory
    ],
)
def test_schema_accepts(schema: dict[str, object], raw: dict[str, object]) -> None:
    jsonschema.Draft202012Validator(schema).validate(raw)


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"max_total_tokens": 100}, ["max_total_tokens"]),
        ({"max_total_tokens": 1000, "working_summary_mode": "shrink"}, ["working_summary_mode"]),
        ({"max_total_tokens": 1000, "compact_ratio_threshold": 0}, ["compact_ratio_threshold"]),
        ({"max_total_tokens": 1000, "keep_recent": 3}, []),
        ({"keep_recent_count": 3}, []),
    ],
)
def test_schema_rejects(schema: dict[str, object], raw: dict[str, object], path: list[str]) -> None:
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(raw))
    assert [list(e.path) for e in errors] == [path]


# -- token counters


def test_approx_counts_text_rounding_up() -> None:
    counter = ApproxCounter()
    assert [counter.text("x" * n) for n in (0, 1, 4, 5, 8)] == [0, 1, 1, 2, 2]


def test_approx_counts_a_message_with_its_framing() -> None:
    counter = ApproxCounter()
    assert counter.message({"role": "user", "content": "x" * 8}) == 2 + 3
    assert counter.message({"role": "user", "content": "x" * 8, "name": "ann"}) == 3 + 3  # 11 chars
    assert counter.message({"role": "assistant", "content": None}) == 3


def test_approx_counts_tool_calls_and_results() -> None:
    counter = ApproxCounter()
    call = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "search", "arguments": '{"q":1}'}}],
    }
    assert counter.message(call) == 4 + 3  # "c1" + "search" + '{"q":1}' = 15 chars
    assert counter.message({"role": "tool", "tool_call_id": "c1", "content": "x" * 10}) == 3 + 3  # 12 chars


def test_approx_counts_list_content() -> None:
    counter = ApproxCounter()
    message = {
        "role": "user",
        "content": [
            {"type": "text", "text": "x" * 8},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 100_000}},
            {"type": "text", "text": "y" * 4},
        ],
    }
    assert counter.message(message) == 3 + IMAGE_PART_TOKENS + 3
    audio = {"type": "input_audio", "input_audio": {"data": "QUJD", "format": "wav"}}
    expected = -(-len(json.dumps(audio)) // 4) + 3
    assert counter.message({"role": "user", "content": [audio]}) == expected


def test_make_counter() -> None:
    assert make_counter("approx").name == "approx"
    with pytest.raises(TokenCounterError) as caught:
        make_counter("words")
    assert str(caught.value) == "token_counter must be one of approx, tiktoken, not 'words'"


def test_tiktoken_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tiktoken", None)  # makes `import tiktoken` fail
    with pytest.raises(TokenCounterError) as caught:
        make_counter("tiktoken")
    assert str(caught.value) == (
        "token_counter: tiktoken needs the tiktoken package; install it (pip install tiktoken) "
        "or use token_counter: approx"
    )
    assert isinstance(caught.value.__cause__, ImportError)


def test_settings_load_without_asyncio() -> None:
    # runner validate parses memory settings; it must not pay for the event loop machinery.
    import subprocess

    code = (
        "import sys; from runner.config.memory import parse_working_memory, WorkingMemoryConfig; "
        "print(','.join(m for m in ('asyncio', 'runner.memory.working') if m in sys.modules))"
    )
    root = ROOT
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


class _Encoding:
    """A stand-in tiktoken encoding: one token per whitespace-separated word; notes how it was called."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def encode(self, text: str, *, disallowed_special: object = "all") -> list[int]:
        self.calls.append((text, disallowed_special))
        return list(range(len(text.split())))


def _fake_tiktoken(monkeypatch: pytest.MonkeyPatch, get_encoding: Any) -> list[str]:
    """Install a `tiktoken` module whose get_encoding is given (the real one downloads its tables)."""
    asked: list[str] = []

    def get(name: str) -> Any:
        asked.append(name)
        return get_encoding(name)

    monkeypatch.setitem(sys.modules, "tiktoken", types.SimpleNamespace(get_encoding=get))
    return asked


def test_tiktoken_counts_with_the_o200k_encoding_and_treats_special_tokens_as_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    encoding = _Encoding()
    asked = _fake_tiktoken(monkeypatch, lambda name: encoding)
    counter = make_counter("tiktoken")
    assert asked == ["o200k_base"]
    assert counter.name == "tiktoken"
    assert counter.text("three short words") == 3
    # user text that looks like a special token is counted as text, never refused
    assert encoding.calls[-1] == ("three short words", ())
    message = {"role": "user", "content": [{"type": "text", "text": "a b"}, {"type": "image_url", "image_url": {}}]}
    assert counter.message(message) == 2 + IMAGE_PART_TOKENS + MESSAGE_OVERHEAD


def test_tiktoken_without_its_tables_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(name: str) -> Any:
        raise ConnectionError("could not reach openaipublic.blob.core.windows.net")

    _fake_tiktoken(monkeypatch, offline)
    with pytest.raises(TokenCounterError) as caught:
        make_counter("tiktoken")
    assert str(caught.value) == (
        "token_counter: tiktoken could not load the o200k_base encoding (could not reach "
        "openaipublic.blob.core.windows.net); it downloads its tables on first use, so run once online or use "
        "token_counter: approx"
    )
    assert isinstance(caught.value.__cause__, ConnectionError)
