"""Issue 21, secrets: every secret runner holds, in every form it can travel in, is kept out of everything runner
prints or writes, by one registry and redactor (runner/secrets.py).

The echoing server (tests/oai_server.py, ``echo=``) quotes the request's headers in its error messages, as some
servers and proxies do; it is also the proxy (a proxied request reaches it in absolute form), so the
``Proxy-Authorization: Basic <base64 of user:password>`` header is among what it echoes. The ``secret_scan``
fixture (tests/conftest.py, tests/secret_scan.py) then looks for every marker in every form in every file the
test wrote and everything printed.
"""

from __future__ import annotations

import base64
import json
import logging
import traceback
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from oai_server import OAIServer, Plan

from runner import cli
from runner.config.openai import parse_openai_embedding, parse_openai_model
from runner.errors import ProviderError, RunnerError
from runner.events import Recorder
from runner.logs import configure_logging
from runner.providers.base import CallContext
from runner.providers.openai import OpenAIChatProvider
from runner.providers.openai_embeddings import OpenAIEmbedder
from runner.report.document import report_json
from runner.secrets import API_KEY, PROXY_CREDENTIALS, REDACTED, SecretRegistry, base64_cores, one_line
from tests import secret_scan as markers
from tests.conftest import assert_valid_report, run_cli
from tests.secret_scan import SecretScan, forms
from tests.test_openai_provider import run

pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("secret_scan")]

REMOTE = "http://model.test/v1"  # never resolved: requests go to the proxy
USER_PASSWORD = f"{markers.PROXY_USER}:{markers.PROXY_PASSWORD}"
TOKEN = base64.b64encode(USER_PASSWORD.encode()).decode()


@pytest.fixture
def registry() -> SecretRegistry:
    """A registry of its own, with the markers: an API key and a proxy's credentials."""
    secrets = SecretRegistry()
    secrets.add(markers.API_KEY, API_KEY)
    secrets.add_url_credentials(markers.proxy_url(3128))
    return secrets


def leaks(text: str, *secrets: str) -> list[str]:
    """The forms of the secrets found in ``text`` (see tests/secret_scan.py)."""
    scan = SecretScan()
    scan.add_secret(*secrets)
    scan.add_text("text", text)
    return [leak.form for leak in scan.leaks()]


# -- the redactor ------------------------------------------------------------------------------------------------
def _forms_of(secret: str) -> list[str]:
    return sorted(forms(secret))


@pytest.mark.parametrize(
    "secret", [markers.API_KEY, markers.PROXY_USER, markers.PROXY_PASSWORD, USER_PASSWORD], ids=lambda s: s[:12]
)
def test_every_form_of_every_secret_is_redacted(registry: SecretRegistry, secret: str) -> None:
    for form in _forms_of(secret):
        for text in (f"before {form} after", f'{{"message": "{form}"}}', form):
            redacted = registry.redact(text)
            assert leaks(redacted, secret) == [], (form, redacted)
            assert registry.redact(redacted) == redacted  # twice is once


@pytest.mark.parametrize("offset", [0, 1, 2])
def test_a_secret_inside_a_longer_base64_text_is_redacted_at_each_alignment(
    registry: SecretRegistry, offset: int
) -> None:
    blob = base64.b64encode(b"x" * offset + USER_PASSWORD.encode() + b"tail").decode()
    assert leaks(registry.redact(f"blob={blob}"), USER_PASSWORD) == []
    assert base64_cores(USER_PASSWORD)[offset] in blob  # the scan's alignments are the redactor's


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"Proxy-Authorization: Basic {TOKEN}", f"Proxy-Authorization: Basic {PROXY_CREDENTIALS}"),
        (
            json.dumps({"proxy-authorization": f"Basic {TOKEN}"}),
            f'{{"proxy-authorization": "Basic {PROXY_CREDENTIALS}"}}',
        ),
        (f"{{'authorization': 'Bearer {markers.API_KEY}'}}", f"{{'authorization': 'Bearer {API_KEY}'}}"),
        (f"Authorization: Bearer {markers.API_KEY}", f"Authorization: Bearer {API_KEY}"),
        ("Authorization: Bearer sk-someone-elses-key", f"Authorization: Bearer {REDACTED}"),
        ("x-api-key: 0123456789abcdef", f"x-api-key: {REDACTED}"),
        ("Basic dXNlcjpwYXNzd29yZA==", f"Basic {REDACTED}"),  # anyone's user:password
        ("basic checks passed", "basic checks passed"),  # a word, not a credential
        (f"the key {markers.API_KEY[:3]} is short", f"the key {markers.API_KEY[:3]} is short"),
        (f"key {urllib.parse.quote(markers.API_KEY, safe='')}!", f"key {API_KEY}!"),
        (f"user {markers.PROXY_USER[:8]}\r\n {markers.PROXY_USER[8:]} denied", f"user {PROXY_CREDENTIALS} denied"),
    ],
)
def test_redacted_text(registry: SecretRegistry, text: str, expected: str) -> None:
    assert registry.redact(text) == expected


def test_the_credential_token_is_redacted_whole() -> None:
    # a credential registered after the token was built: the token goes whole, not its middle only
    secrets = SecretRegistry()
    secrets.add_url_credentials(markers.proxy_url(1))
    redacted = secrets.redact(f"echo: Proxy-Authorization: Basic {TOKEN}\r\nnext: line")
    assert redacted == f"echo: Proxy-Authorization: Basic {PROXY_CREDENTIALS}\r\nnext: line"


def test_values_too_short_to_be_secrets_are_not_registered() -> None:
    secrets = SecretRegistry()
    secrets.add("short")
    secrets.add_url_credentials("http://bob:pw@proxy:3128")  # credentials from 4 characters: only the pair is
    assert secrets.values == ("bob:pw",)
    assert secrets.redact("a short word by bob") == "a short word by bob"


def test_one_line_folds_a_multi_line_message() -> None:
    assert one_line("Connection error.\nReceived Model Group=x\r\n  Fallbacks=None") == (
        "Connection error. Received Model Group=x; Fallbacks=None"
    )
    assert one_line("one line") == "one line"


def test_the_scan_finds_every_form(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The fixture's scan is not vacuous: each form it looks for, written to a file, is found (in a folder of
    its own: this test's tmp_path is scanned by the fixture, which would rightly fail it)."""
    tmp_path = tmp_path_factory.mktemp("scan-self-test")
    for secret in (markers.API_KEY, USER_PASSWORD, markers.PROXY_PASSWORD):
        for index, form in enumerate(_forms_of(secret)):
            folder = tmp_path / f"{len(secret)}-{index}"
            folder.mkdir()
            (folder / "out.txt").write_text(f"x{form[: len(form) // 2]}\r\n {form[len(form) // 2 :]}x")
            scan = SecretScan()
            scan.add_folder(folder)
            scan.add_secret(secret)
            assert scan.leaks(), form


# -- a provider against the echoing server, through the proxy --------------------------------------------------
@pytest.fixture
def echo_proxy(secret_scan: SecretScan, monkeypatch: pytest.MonkeyPatch) -> Iterator[OAIServer]:
    """The echoing server, as the proxy of every request to REMOTE, with the marker credentials."""
    with OAIServer() as server:
        monkeypatch.setenv("HTTP_PROXY", secret_scan.proxy_url(server.port))
        yield server


def marker_model(url: str, **settings: Any) -> OpenAIChatProvider:
    raw = {"base_url": url, "model": "test-model", "api_key_env": markers.API_KEY_ENV, **settings}
    return OpenAIChatProvider("main", parse_openai_model(raw))


def seen_by_user(err: BaseException, recorder: Recorder) -> str:
    return "\n".join([str(err), repr(err), "".join(traceback.format_exception(err)), repr(recorder.events)])


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("echo", ["lines", "folded", "json", "escaped", "query"])
def test_an_echoing_server_behind_a_proxy_gets_no_secret_out(
    echo_proxy: OAIServer, secret_scan: SecretScan, echo: str, stream: bool
) -> None:
    echo_proxy.plan(Plan(status=500, echo=echo), Plan(status=500, echo=echo))
    recorder = Recorder()
    provider = marker_model(REMOTE, stream=stream, retry={"max_attempts": 2, "initial_delay": 0})

    async def call() -> None:
        try:
            await provider.chat([{"role": "user", "content": "hi"}], CallContext("n1", "a", recorder=recorder))
        finally:
            await provider.aclose()

    with pytest.raises(ProviderError) as info:
        run(call())
    text = seen_by_user(info.value, recorder)
    secret_scan.add_text(f"error ({echo})", text)  # scanned for every form when the test ends
    headers = echo_proxy.requests[0].headers
    assert headers["proxy-authorization"] == f"Basic {TOKEN}"  # sent, and echoed back...
    assert leaks(text, markers.API_KEY, USER_PASSWORD) == []  # ...but never shown
    assert "[proxy credentials]" in text or "Basic [redacted]" in text or echo == "query"
    assert str(info.value).startswith(
        f"model 'main' (test-model at {REMOTE}) via proxy http://[credentials]@127.0.0.1:{echo_proxy.port}: HTTP 500: "
        "scripted error 500; "
    )


def test_an_error_event_mid_stream_that_echoes_the_headers(echo_proxy: OAIServer, secret_scan: SecretScan) -> None:
    error = {"message": "upstream rejected the request", "code": "500"}
    echo_proxy.plan(*[Plan(stream_error=error, error_after=1, echo="folded")] * 2)
    recorder = Recorder()
    provider = marker_model(REMOTE, retry={"max_attempts": 2, "initial_delay": 0})

    async def call() -> None:
        try:
            await provider.chat([{"role": "user", "content": "hi"}], CallContext("n1", "a", recorder=recorder))
        finally:
            await provider.aclose()

    with pytest.raises(ProviderError) as info:
        run(call())
    text = seen_by_user(info.value, recorder)
    assert leaks(text, markers.API_KEY, USER_PASSWORD) == []
    assert "proxy-authorization: Basic " in text  # the header was echoed (its value folded onto two lines)


def test_an_embedders_key_is_redacted(echo_proxy: OAIServer) -> None:
    echo_proxy.plan(Plan(status=400, echo="json"))
    raw = {"base_url": REMOTE, "model": "e", "dimensions": 8, "api_key_env": markers.API_KEY_ENV}
    embedder = OpenAIEmbedder("vectors", parse_openai_embedding(raw))

    async def call() -> None:
        try:
            await embedder.embed(["hello"])
        finally:
            await embedder.aclose()

    with pytest.raises(ProviderError) as info:
        run(call())
    assert echo_proxy.requests[0].headers["authorization"] == f"Bearer {markers.API_KEY}"
    assert leaks(str(info.value), markers.API_KEY, USER_PASSWORD) == []
    assert f'"authorization": "Bearer {API_KEY}"' in str(info.value)


# -- everything a run writes and prints ------------------------------------------------------------------------
def workflow(url: str) -> str:
    return f"""\
version: 1
name: leaky
models:
  main:
    provider: openai
    base_url: "{url}"
    model: test-model
    api_key_env: {markers.API_KEY_ENV}
    retry: {{max_attempts: 2, initial_delay: 0}}
agents:
  a: {{model: main}}
stages:
  - id: fan
    input: "Look at {{{{ vars.item }}}}."
    fanout: {{for_each: "{{{{ range(2) | list }}}}", agent: a, on_error: collect}}
logging: {{level: debug}}
report: {{formats: [json, markdown, trace]}}
"""


@pytest.mark.parametrize("echo", ["lines", "json", "folded"])
def test_a_failing_cli_run_through_an_echoing_proxy_writes_and_prints_no_secret(
    tmp_path: Path, secret_scan: SecretScan, echo: str
) -> None:
    with OAIServer() as server:
        server.default = Plan(status=503, echo=echo)
        wf = tmp_path / "wf.yaml"
        wf.write_text(workflow(REMOTE))
        proxy = {"HTTP_PROXY": secret_scan.proxy_url(server.port)}
        reports = tmp_path / "r"
        proc = run_cli("run", str(wf), "--report-dir", str(reports), env_extra=proxy)  # the log on stderr
        logged = run_cli("run", str(wf), "-q", "--report-dir", str(reports), "--log-file", str(tmp_path / "run.log"),
                         env_extra=proxy)  # fmt: skip
    assert proc.returncode == logged.returncode == 0  # on_error: collect
    assert len(server.requests) == 8
    report_file = sorted(reports.glob("*.json"))[0]
    for fmt in ("markdown", "text"):
        shown = run_cli("report", "--format", fmt, str(report_file))
        assert shown.returncode == 0, shown.stderr
    report = json.loads(report_file.read_text())
    assert_valid_report(report)
    errors = [n["error"] for n in report["nodes"] if n.get("error")]
    assert len(errors) == 2 and all(PROXY_CREDENTIALS in e for e in errors)  # echoed, and redacted
    assert "retrying" in proc.stderr and (tmp_path / "run.log").read_text()
    # the fixture then scans tmp_path (reports, trace, Markdown, log) and both runs' output


def test_a_report_written_with_a_credential_is_printed_without_it(tmp_path: Path) -> None:
    """A report from before this fix (or edited by hand) with a Basic token in it: ``runner report`` redacts."""
    with OAIServer() as server:
        server.default = Plan(status=503)
        wf = tmp_path / "wf.yaml"
        wf.write_text(workflow(f"{server.url}"))
        assert run_cli("run", str(wf), "-q", "--report-dir", str(tmp_path / "r")).returncode == 0
    path = sorted((tmp_path / "r").glob("*.json"))[0]
    report = json.loads(path.read_text())
    report["run"]["error"] = f"echoed: Proxy-Authorization: Basic {TOKEN}"
    old = tmp_path / "old" / path.name
    old.parent.mkdir()
    raw = report_json(report)
    assert TOKEN in raw
    old.write_text(raw)
    shown = run_cli("report", "--format", "markdown", str(old))
    assert shown.returncode == 0, shown.stderr
    assert "echoed: Proxy-Authorization: Basic [redacted]" in shown.stdout
    old.unlink()  # the planted file is the test's input, not runner's output


def test_an_error_raised_to_the_cli_is_redacted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from runner.secrets import SECRETS

    SECRETS.add(markers.API_KEY, API_KEY)

    def fail(args: object) -> int:
        raise RunnerError(f"the server said: Authorization: Bearer {markers.API_KEY}")

    monkeypatch.setattr(cli, "dispatch", fail)
    assert cli.main(["schema"]) == 1
    assert capsys.readouterr().err == f"runner: error: the server said: Authorization: Bearer {API_KEY}\n"


def test_log_lines_are_redacted_in_both_formats(tmp_path: Path) -> None:
    for fmt in ("text", "json"):
        log = tmp_path / f"run-{fmt}.log"
        with configure_logging(level="info", fmt=fmt, file=str(log), secrets=[markers.API_KEY]):
            logger = logging.getLogger("runner")
            for form in _forms_of(markers.API_KEY):
                logger.warning(f"echo: {form}")
            logger.warning(f"echo: Proxy-Authorization: Basic {TOKEN}")
        text = log.read_text()
        assert text.count("\n") == len(_forms_of(markers.API_KEY)) + 1  # one line a record
        assert leaks(text, markers.API_KEY, USER_PASSWORD) == []
