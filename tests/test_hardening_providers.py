"""Issues 14 and 21, provider faults: errors a gateway reports mid-stream, the default retries, answers that
are not what was asked for, answers with no choice, a retry that answers differently, and warnings on the
terminal.

Real parts: the loopback server (tests/oai_server.py) emulates the wire behaviour of LiteLLM's proxy (its
error event after partial text, with "code" as a string and a three-line message; its 408 on a timeout), of
vLLM (a top-level {"object": "error"} event) and of OpenAI (an error object with a type and no code, an SSE
``event: error``). LiteLLM itself is not installed for these tests: its proxy pulls in a web framework and
dozens of packages, too heavy for the suite's time budget.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import pty
import re
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from oai_server import OAIServer, Plan

from runner.errors import ProviderHTTPError, ProviderProtocolError
from runner.events import Recorder
from runner.logs import configure_logging
from runner.providers.failures import DECODABLE
from runner.terminal import RESTART_NOTE, TerminalSink
from tests.conftest import ROOT, assert_valid_report, run_cli
from tests.test_openai_provider import KEY, KEY_ENV, Sink, chat, events, failure, label, make, run

pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("secret_scan")]

LITELLM_MESSAGE = (
    "litellm.APIConnectionError: APIConnectionError: OpenAIException - Connection error.\n"
    "Received Model Group=gpt-4o-mini\nAvailable Model Group Fallbacks=None"
)
LITELLM_FOLDED = (
    "litellm.APIConnectionError: APIConnectionError: OpenAIException - Connection error. "
    "Received Model Group=gpt-4o-mini; Available Model Group Fallbacks=None"
)
ALPHA: dict[str, Any] = {"content": "Alpha beta gamma", "tokens": ["Alpha", " beta", " gamma"]}
FAST = {"initial_delay": 0, "jitter": "none"}


@pytest.fixture(scope="module")
def shared_server() -> Iterator[OAIServer]:
    with OAIServer() as server:
        yield server


@pytest.fixture
def server(shared_server: OAIServer, monkeypatch: pytest.MonkeyPatch) -> OAIServer:
    shared_server.reset()
    monkeypatch.setenv(KEY_ENV, KEY)
    return shared_server


def sse(*objects: Any) -> list[bytes]:
    return [b"data: " + (o if isinstance(o, bytes) else json.dumps(o).encode()) + b"\n\n" for o in objects]


def delta(text: str, finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}


# -- item 2: an error reported mid-stream is the error its code stands for -------------------------------------
@pytest.mark.parametrize(
    ("error", "event", "cause"),
    [
        ({"message": LITELLM_MESSAGE, "type": None, "param": None, "code": "500"}, False, "500"),  # LiteLLM
        ({"message": "upstream broke", "code": 502}, False, "502"),
        ({"type": "overloaded_error", "status": 503, "message": "Overloaded"}, False, "503"),
        ({"message": "The server had an error", "type": "server_error", "param": None, "code": None}, False, "500"),
        ({"message": "upstream broke", "code": 500}, True, "500"),  # an SSE "event: error"
    ],
    ids=["litellm-code-string", "code-number", "type-and-status", "openai-type-only", "event-error"],
)
def test_an_error_event_mid_stream_is_retried_as_its_status(
    server: OAIServer, error: dict[str, Any], event: bool, cause: str
) -> None:
    server.plan(Plan(**ALPHA, stream_error=error, error_after=2, error_event=event), Plan(**ALPHA))
    sink, recorder = Sink(), Recorder()
    result = run(chat(make(server.url, retry=FAST), sink=sink, recorder=recorder))
    assert (result.content, result.attempts, sink.text) == ("Alpha beta gamma", 2, "Alpha beta gamma")
    [retry] = events(recorder, "retry")
    assert retry["cause"] == cause and retry["discarded_chars"] == len("Alpha beta")
    assert retry["error"].startswith(f"{label(server.url)}: the server reported error {cause} mid-stream after 3 ")


def test_vllm_top_level_error_object(server: OAIServer) -> None:
    body = {"object": "error", "message": "CUDA out of memory", "type": "InternalServerError", "code": 500}
    server.plan(Plan(events=sse(delta("Hi"), body)), Plan())
    recorder = Recorder()
    assert run(chat(make(server.url, retry=FAST), recorder=recorder)).attempts == 2
    assert [e["cause"] for e in events(recorder, "retry")] == ["500"]


def test_a_429_mid_stream_honours_its_retry_after(server: OAIServer) -> None:
    error = {"message": "Rate limit reached", "type": "rate_limit_error", "code": "429", "retry_after": 0.05}
    server.plan(Plan(**ALPHA, stream_error=error, error_after=1), Plan(**ALPHA))
    recorder = Recorder()
    result = run(chat(make(server.url, retry={"initial_delay": 5, "jitter": "none"}), recorder=recorder))
    assert result.attempts == 2
    assert [(e["cause"], e["delay"]) for e in events(recorder, "retry")] == [("429", 0.05)]


def test_a_4xx_mid_stream_fails_at_once_with_the_message(server: OAIServer) -> None:
    error = {"message": "This model's maximum context length is 8192 tokens", "code": "400"}
    server.plan(Plan(**ALPHA, stream_error=error, error_after=1))
    err = failure(make(server.url))
    assert isinstance(err, ProviderHTTPError) and err.status == 400
    assert str(err) == (
        f"{label(server.url)}: the server reported error 400 mid-stream after 2 events of the stream: "
        "This model's maximum context length is 8192 tokens"
    )
    assert len(server.requests) == 1


def test_an_error_event_without_a_code_is_a_protocol_error(server: OAIServer) -> None:
    server.plan(Plan(**ALPHA, stream_error={"message": "something odd"}, error_after=1))
    err = failure(make(server.url))
    assert isinstance(err, ProviderProtocolError) and err.kind == "protocol"
    assert str(err) == (
        f"{label(server.url)}: the server reported an error mid-stream after 2 events of the stream: something odd"
    )
    assert len(server.requests) == 1


def test_a_5xx_mid_stream_gives_up_like_an_http_5xx(server: OAIServer) -> None:
    error = {"message": LITELLM_MESSAGE, "type": None, "param": None, "code": "500"}
    server.plan(*[Plan(**ALPHA, stream_error=error, error_after=1)] * 2)
    err = failure(make(server.url, retry={"max_attempts": 2, **FAST}))
    assert isinstance(err, ProviderHTTPError) and err.status == 500
    assert str(err) == (
        f"{label(server.url)}: the server reported error 500 mid-stream after 2 events of the stream: "
        f"{LITELLM_MESSAGE} (gave up after 2 attempts)"
    )  # the whole text; what is printed folds it (see the terminal tests below)


# -- item 3: 408 and 409 are retried by default ----------------------------------------------------------------
@pytest.mark.parametrize("status", [408, 409])
def test_408_and_409_are_retried_by_default(server: OAIServer, status: int) -> None:
    litellm_timeout = {
        "error": {
            "message": "litellm.Timeout: APITimeoutError - Request timed out.\nReceived Model Group=gpt-4o-mini",
            "type": None,
            "param": None,
            "code": str(status),
        }
    }
    server.plan(Plan(status=status, body=json.dumps(litellm_timeout).encode()), Plan())
    recorder = Recorder()
    assert run(chat(make(server.url, retry=FAST), recorder=recorder)).attempts == 2
    assert [e["cause"] for e in events(recorder, "retry")] == [str(status)]


def test_501_is_not_retried_by_default(server: OAIServer) -> None:
    server.plan(Plan(status=501))
    err = failure(make(server.url, retry=FAST))
    assert isinstance(err, ProviderHTTPError) and err.status == 501 and len(server.requests) == 1


# -- item 4: an answer that is not a stream is named at once -----------------------------------------------------
PAGE = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>Proxy login</body></html>"


@pytest.mark.parametrize("content_type", ["text/html; charset=utf-8", "text/event-stream", ""])
def test_an_html_page_in_stream_mode_fails_at_once(server: OAIServer, content_type: str) -> None:
    server.plan(Plan(events=[PAGE], content_type=content_type))
    err = failure(make(server.url))
    assert isinstance(err, ProviderProtocolError) and err.kind == "protocol"
    declared = f"Content-Type: {content_type}" if content_type else "no Content-Type"
    assert str(err) == (
        f"{label(server.url)}: the server answered with an HTML page ({declared}), not a stream of events: "
        f"{PAGE.decode()!r}"
    )
    assert len(server.requests) == 1  # not retried in vain


def test_an_html_page_in_json_mode_is_named(server: OAIServer) -> None:
    server.plan(Plan(body=PAGE, content_type="text/html"))
    err = failure(make(server.url, stream=False))
    assert str(err) == (
        f"{label(server.url)}: the server answered with an HTML page, not a chat completion: {PAGE.decode()!r}"
    )
    assert len(server.requests) == 1


def test_an_empty_200_in_stream_mode_fails_at_once(server: OAIServer) -> None:
    server.plan(Plan(events=[]))
    err = failure(make(server.url))
    assert isinstance(err, ProviderProtocolError)
    assert str(err) == (
        f"{label(server.url)}: the server answered 200 with an empty body (Content-Type: text/event-stream), "
        "not a stream of events"
    )
    assert len(server.requests) == 1


@pytest.mark.parametrize("content_type", ["text/event-stream", "", "text/plain"])
def test_json_where_a_stream_was_expected_is_read_as_json(server: OAIServer, content_type: str) -> None:
    completion = {"choices": [{"index": 0, "message": {"content": "plain JSON"}, "finish_reason": "stop"}]}
    server.plan(Plan(events=[json.dumps(completion).encode()], content_type=content_type))
    sink = Sink()
    assert run(chat(make(server.url), sink=sink)).content == "plain JSON" == sink.text


def test_text_that_is_not_a_stream_is_named(server: OAIServer) -> None:
    server.plan(Plan(events=[b"upstream unavailable"], content_type="text/plain"))
    err = failure(make(server.url))
    assert str(err) == (
        f"{label(server.url)}: the server answered with something else (Content-Type: text/plain), not a stream "
        "of events: 'upstream unavailable'"
    )


def test_a_gzipped_stream_is_decoded(server: OAIServer) -> None:
    body = b"".join(sse(delta("zipped", "stop"))) + b"data: [DONE]\n\n"
    server.plan(Plan(events=[gzip.compress(body)], headers={"Content-Encoding": "gzip"}))
    assert run(chat(make(server.url))).content == "zipped"


@pytest.mark.parametrize("stream", [True, False])
def test_a_body_that_does_not_match_its_encoding_fails_at_once(server: OAIServer, stream: bool) -> None:
    if stream:
        server.plan(Plan(events=[b"data: not gzip at all\n\n"], headers={"Content-Encoding": "gzip"}))
    else:
        server.plan(Plan(body=b'{"choices": []}', headers={"Content-Encoding": "gzip"}))
    err = failure(make(server.url, stream=stream))
    assert isinstance(err, ProviderProtocolError) and err.kind == "protocol"
    assert str(err).startswith(
        f"{label(server.url)}: the answer could not be decoded: its body does not match its Content-Encoding ("
    )
    assert len(server.requests) == 1


@pytest.mark.skipif("zstd" in DECODABLE, reason="zstandard is installed: httpx decodes zstd")
@pytest.mark.parametrize("stream", [True, False])
def test_an_encoding_runner_cannot_decode_is_named(server: OAIServer, stream: bool) -> None:
    server.plan(Plan(events=[b"\x28\xb5\x2f\xfd"], body=None if stream else b"\x28\xb5\x2f\xfd",
                     headers={"Content-Encoding": "zstd"}))  # fmt: skip
    err = failure(make(server.url, stream=stream))
    assert str(err) == (
        f"{label(server.url)}: the server encoded its answer with Content-Encoding 'zstd', which runner cannot "
        f"decode (it accepts {', '.join(sorted(DECODABLE))})"
    )


# -- item 6: an answer with no choice is an error, streamed or not -----------------------------------------------
@pytest.mark.parametrize(
    "chunks",
    [
        [{"id": "c1", "object": "chat.completion.chunk"}, {"id": "c1", "object": "chat.completion.chunk"}],
        [{"id": "c1", "choices": []}, {"id": "c1", "choices": [], "usage": {"prompt_tokens": 3}}],
    ],
    ids=["no-choices", "empty-choices"],
)
def test_a_stream_without_a_choice_fails(server: OAIServer, chunks: list[dict[str, Any]]) -> None:
    server.plan(Plan(events=[*sse(*chunks), b"data: [DONE]\n\n"]))
    err = failure(make(server.url))
    assert isinstance(err, ProviderProtocolError)
    assert str(err) == (
        f'{label(server.url)}: the answer has no choice: none of the 2 events of the stream had one in its "choices"'
    )


@pytest.mark.parametrize(("body", "what"), [({"id": "c1", "choices": []}, "is empty"), ({"id": "c1"}, "is missing")])
def test_a_json_answer_without_a_choice_fails_the_same_way(server: OAIServer, body: dict[str, Any], what: str) -> None:
    server.plan(Plan(body=json.dumps(body).encode()))
    err = failure(make(server.url, stream=False))
    assert isinstance(err, ProviderProtocolError)
    assert str(err) == f'{label(server.url)}: the answer has no choice: its "choices" {what}: {json.dumps(body)!r}'


def test_a_usage_only_last_chunk_is_normal(server: OAIServer) -> None:
    # OpenAI's include_usage: the last chunk has "choices": [] and the usage
    usage = {"id": "c1", "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}}
    server.plan(Plan(events=[*sse(delta("ok"), delta("", "stop"), usage), b"data: [DONE]\n\n"]))
    result = run(chat(make(server.url)))
    assert (result.content, result.usage.prompt_tokens, result.usage.completion_tokens) == ("ok", 7, 2)


# -- item 7: a retry that answers differently says that the text shown is void -----------------------------------
def terminal_chat(server: OAIServer, *plans: Plan, recorder: Recorder | None = None) -> str:
    server.plan(*plans)
    out = io.StringIO()
    sink = TerminalSink(out)
    on_token = sink.for_node("s", "a")
    run(chat(make(server.url, retry=FAST), sink=on_token, recorder=recorder))
    on_token("")
    sink.close()
    return out.getvalue()


BROKEN = {"stream_error": {"message": "upstream broke", "code": "500"}, "error_after": 3}


def test_a_retry_that_answers_differently_marks_the_shown_text_void(server: OAIServer) -> None:
    recorder = Recorder()
    shown = terminal_chat(
        server, Plan(**ALPHA, **BROKEN), Plan(content="Delta epsilon", tokens=["Delta", " epsilon"]), recorder=recorder
    )
    assert shown == f"[s a] Alpha beta gamma\n[s a] {RESTART_NOTE}\n[s a] Delta epsilon\n"
    assert events(recorder, "stream_diverged") == [{"shown_chars": 16}]


def test_a_retry_that_departs_half_way_shows_its_whole_answer_after_the_note(server: OAIServer) -> None:
    shown = terminal_chat(
        server, Plan(**ALPHA, **BROKEN), Plan(content="Alpha beta delta", tokens=["Alpha", " beta", " delta"])
    )
    assert shown == f"[s a] Alpha beta gamma\n[s a] {RESTART_NOTE}\n[s a] Alpha beta delta\n"


def test_a_retry_shorter_than_what_was_shown_is_marked_too(server: OAIServer) -> None:
    shown = terminal_chat(server, Plan(**ALPHA, **BROKEN), Plan(content="Alpha", tokens=["Alpha"]))
    assert shown == f"[s a] Alpha beta gamma\n[s a] {RESTART_NOTE}\n[s a] Alpha\n"


def test_a_retry_that_repeats_what_was_shown_continues_it(server: OAIServer) -> None:
    recorder = Recorder()
    shown = terminal_chat(
        server,
        Plan(**ALPHA, **BROKEN),
        Plan(content="Alpha beta gamma delta", tokens=["Alpha", " beta", " gamma", " delta"]),
        recorder=recorder,
    )
    assert shown == "[s a] Alpha beta gamma delta\n"
    assert events(recorder, "stream_diverged") == []


def test_the_restart_is_in_the_log_and_the_report(tmp_path: Path) -> None:
    with OAIServer() as loopback:
        loopback.plan(Plan(**ALPHA, **BROKEN), Plan(content="Delta epsilon", tokens=["Delta", " epsilon"]))
        wf = tmp_path / "wf.yaml"
        wf.write_text(one_call_workflow(loopback.url))
        log = tmp_path / "run.log"
        proc = run_cli("run", str(wf), "--report-dir", str(tmp_path / "r"), "--log-file", str(log))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"[s a] Alpha beta gamma\n[s a] {RESTART_NOTE}\n[s a] Delta epsilon\n"
    assert re.search(
        r"WARNING runner: \[s\] the answer restarted: the retry's answer differs from the 16 characters already "
        r"streamed, which are void\n",
        log.read_text(),
    )
    (path,) = (tmp_path / "r").glob("*.json")
    report = json.loads(path.read_text())
    assert_valid_report(report)
    [node] = report["nodes"]
    [retry] = node["retry_events"]
    assert (retry["cause"], retry["void_chars"]) == ("500", 16)


# -- item 5: warnings start on a fresh line; a server's message is one line where it is printed --------------------
def one_call_workflow(url: str, attempts: int = 2) -> str:
    return f"""\
version: 1
name: glued
models:
  main: {{provider: openai, base_url: "{url}", model: test-model,
         retry: {{max_attempts: {attempts}, initial_delay: 0, jitter: none}}}}
agents:
  a: {{model: main}}
stages:
  - {{id: s, agent: a, input: hi}}
"""


def test_a_log_line_ends_the_open_streamed_line_first() -> None:
    screen = io.StringIO()  # stdout and stderr on one terminal
    sink = TerminalSink(screen)
    on_token = sink.for_node("s", "a")
    with configure_logging(level="warning", stream=sink.guard(screen)):
        on_token("Alpha beta")
        logging.getLogger("runner").warning("attempt 1 failed", extra={"node_id": "s"})
    on_token(" gamma")
    on_token("")
    lines = screen.getvalue().splitlines()
    assert lines[0] == "[s a] Alpha beta"
    assert re.fullmatch(r"\S+ \S+ WARNING runner: \[s\] attempt 1 failed", lines[1])
    assert lines[2:] == ["[s a]  gamma"]


def test_a_multi_line_message_is_one_log_line_and_whole_in_the_report(tmp_path: Path) -> None:
    error = {"message": LITELLM_MESSAGE, "type": None, "param": None, "code": "500"}
    with OAIServer() as loopback:
        loopback.plan(*[Plan(**ALPHA, stream_error=error, error_after=1)] * 2)
        wf = tmp_path / "wf.yaml"
        wf.write_text(one_call_workflow(loopback.url))
        proc = run_cli("run", str(wf), "-q", "--report-dir", str(tmp_path / "r"))
    assert proc.returncode == 1
    whole = (
        f"model 'main' (test-model at {loopback.url}): the server reported error 500 mid-stream after 2 events of "
        f"the stream: {{}} (gave up after 2 attempts)"
    )
    lines = proc.stderr.splitlines()
    assert lines[-1] == "runner: error: " + whole.format(LITELLM_FOLDED)
    warnings = [line for line in lines if " WARNING " in line]
    assert len(warnings) == 2 and all(LITELLM_FOLDED in line for line in warnings)
    assert warnings[0].endswith("(500); retrying in 0.00 s: " + whole.format(LITELLM_FOLDED).rsplit(" (gave", 1)[0])
    (path,) = (tmp_path / "r").glob("*.json")
    report = json.loads(path.read_text())
    assert report["run"]["error"] == whole.format(LITELLM_MESSAGE)  # the whole text stays in the report


def read_until(fd: int, seen: bytearray, pattern: bytes, deadline: float) -> bool:
    """Read the pty into ``seen`` until ``pattern`` is in it (True) or its end or the deadline (False)."""
    while pattern not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            continue
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the other side closed
            return pattern in seen
        if not data:
            return pattern in seen
        seen += data
    return pattern in seen


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a pseudo-terminal as Linux has it")
def test_on_a_terminal_a_retry_warning_is_not_glued_to_streamed_text(tmp_path: Path) -> None:
    """``runner run`` on a terminal (a pseudo-terminal for stdout and stderr): the warning of a retry that
    comes while a line of streamed text is open starts on a line of its own, and the text resumes under its
    label. The retry's answer is held by the server until the warning has been seen: bounded by events."""
    error = {"message": LITELLM_MESSAGE, "type": None, "param": None, "code": "500"}
    release = threading.Event()
    with OAIServer() as loopback:
        loopback.plan(
            Plan(**ALPHA, stream_error=error, error_after=3),
            Plan(content="Alpha beta gamma delta", tokens=["Alpha", " beta", " gamma", " delta"], wait=release),
        )
        wf = tmp_path / "wf.yaml"
        wf.write_text(one_call_workflow(loopback.url))
        master, slave = pty.openpty()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "runner", "run", str(wf), "--report-dir", str(tmp_path / "r")],
            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, cwd=ROOT, env=env,
        )  # fmt: skip
        os.close(slave)
        seen = bytearray()
        try:
            deadline = time.monotonic() + 20
            assert read_until(master, seen, b"WARNING", deadline), bytes(seen)
            release.set()
            read_until(master, seen, b"report: ", deadline)
            read_until(master, seen, b"\n", deadline)  # the rest of the last line
            assert proc.wait(timeout=10) == 0
        finally:
            release.set()
            proc.kill()
            os.close(master)
    # the progress line is drawn and erased on the same terminal: take its frames out
    text = re.sub(r"\r\x1b\[2K(?:runner: [^\r\n\x1b]*)?", "", seen.decode()).replace("\r\n", "\n")
    lines = text.splitlines()
    assert lines.pop(0).startswith("run folder: ")  # named as the run starts (issue 23)
    assert lines[0] == "[s a] Alpha beta gamma"
    assert re.fullmatch(
        r"\S+ \S+ WARNING runner: \[s\] attempt 1 failed \(500\); retrying in 0\.00 s: .* " + re.escape(LITELLM_FOLDED),
        lines[1],
    )
    assert lines[2] == "[s a]  delta"
