"""One retry record and one back-off for stage and provider retries (runner/retry.py, issue 15), and the
delays a server asks for: honoured when they are a delay, ignored when they are not (an infinite one hung
the call)."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest
from oai_server import OAIServer, Plan

from runner.config.openai import parse_openai_model
from runner.events import Recorder
from runner.retry import MODEL_RETRY, RetryPolicy, parse_retry_after
from runner.workflow.records import RetryPolicy as StageRetry
from runner.workflow.records import StagePolicy
from tests.conftest import ROOT
from tests.test_openai_provider import KEY, KEY_ENV, chat, events, make, run

pytestmark = [pytest.mark.timeout(20), pytest.mark.usefixtures("secret_scan")]


def test_stages_and_models_share_the_record() -> None:
    assert StageRetry is RetryPolicy
    assert StagePolicy().retry == RetryPolicy(max_attempts=1, initial_delay=0.5, max_delay=8.0)
    config = parse_openai_model({"provider": "openai", "base_url": "http://h/v1", "model": "m"})
    assert type(config.retry) is RetryPolicy and config.retry == MODEL_RETRY
    assert (MODEL_RETRY.max_attempts, MODEL_RETRY.initial_delay, MODEL_RETRY.max_delay) == (4, 0.5, 8.0)


def test_the_stage_schema_has_the_records_fields() -> None:
    schema = json.loads((ROOT / "schemas" / "workflow.schema.json").read_text())
    stage_retry = schema["$defs"]["stage"]["properties"]["retry"]["properties"]
    assert set(stage_retry) <= {f.name for f in fields(RetryPolicy)}
    defaults = RetryPolicy()
    for name, spec in stage_retry.items():
        assert spec["description"].endswith(f"(default {getattr(defaults, name):g}).")


@pytest.mark.parametrize("attempt", range(1, 8))
def test_full_jitter_draws_below_the_doubling_cap(attempt: int) -> None:
    policy = RetryPolicy(max_attempts=10, initial_delay=1, max_delay=8)
    cap = min(8, 2 ** (attempt - 1))
    draws = [policy.backoff(attempt) for _ in range(200)]
    assert 0 <= min(draws) and max(draws) <= cap
    assert max(draws) > cap / 2  # drawn over the whole range, not a constant
    assert RetryPolicy(initial_delay=1, max_delay=8, jitter="none").backoff(attempt) == cap


def test_a_retry_after_replaces_the_backoff() -> None:
    assert RetryPolicy(initial_delay=1).backoff(3, retry_after=0.25) == 0.25
    assert RetryPolicy(initial_delay=1).backoff(3, retry_after=0.0) == 0.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("2", 2.0), (" 1.5 ", 1.5), ("-3", 0.0), ("inf", None), ("Infinity", None), ("nan", None), ("soon", None)],
)
def test_retry_after_is_a_finite_delay_or_nothing(header: str, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> OAIServer:
    monkeypatch.setenv(KEY_ENV, KEY)
    with OAIServer() as server:
        yield server


def test_an_infinite_retry_after_header_falls_back_to_the_backoff(server: OAIServer) -> None:
    server.plan(Plan(status=429, headers={"Retry-After": "inf"}))
    recorder = Recorder()
    result = run(chat(make(server.url, retry={"initial_delay": 0.01, "jitter": "none"}), recorder=recorder))
    assert result.content == "Hello, world!" and result.attempts == 2
    assert [e["delay"] for e in events(recorder, "retry")] == [0.01]


def test_an_infinite_retry_after_in_an_error_event_falls_back_to_the_backoff(server: OAIServer) -> None:
    # json.loads reads the JavaScript literal Infinity, as a gateway's serializer may write it
    error = b'data: {"error": {"message": "slow down", "code": 429, "retry_after": Infinity}}\n\n'
    server.plan(Plan(events=[error]))
    recorder = Recorder()
    result = run(chat(make(server.url, retry={"initial_delay": 0.01, "jitter": "none"}), recorder=recorder))
    assert result.content == "Hello, world!" and result.attempts == 2
    assert [e["delay"] for e in events(recorder, "retry")] == [0.01]
