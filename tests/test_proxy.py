"""Proxies from the environment (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY), as curl reads them.

The rules are checked on :func:`proxy_for` itself; runner's transport against loopback servers: the OpenAI
test server doubles as the proxy (a proxied request reaches it in absolute form, naming the remote host),
and a one-line server refuses CONNECT tunnels.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from oai_server import OAIServer, Plan

from runner.config.openai import parse_openai_model
from runner.errors import ProviderConfigError, ProviderConnectError, ProviderHTTPError
from runner.providers.openai import OpenAIChatProvider
from runner.providers.proxy import proxy_for
from tests.conftest import assert_valid_report, run_cli
from tests.test_openai_provider import KEY, KEY_ENV, chat, make, run

pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("secret_scan")]  # secrets: tests/secret_scan.py

REMOTE = "http://model.test/v1"  # never resolved: with a proxy set, only the proxy is connected to


@pytest.mark.parametrize(
    ("url", "env", "expected"),
    [
        ("https://api.example.com/v1", {"HTTPS_PROXY": "http://p:3128"}, "http://p:3128"),
        ("https://api.example.com/v1", {"https_proxy": "http://low:1", "HTTPS_PROXY": "http://up:2"}, "http://low:1"),
        ("https://api.example.com/v1", {"HTTP_PROXY": "http://p:3128"}, None),  # the other scheme's variable
        ("http://api.example.com/v1", {"HTTP_PROXY": "http://p:3128"}, "http://p:3128"),
        ("http://api.example.com/v1", {"ALL_PROXY": "http://all:1"}, "http://all:1"),
        ("https://api.example.com/v1", {"HTTPS_PROXY": "", "ALL_PROXY": "http://all:1"}, "http://all:1"),
        ("https://api.example.com/v1", {"HTTPS_PROXY": "p.corp:8080"}, "http://p.corp:8080"),  # curl's default
        ("https://api.example.com/v1", {"HTTPS_PROXY": "https://p:443"}, "https://p:443"),
        ("https://api.example.com/v1", {}, None),
        # NO_PROXY: names and their subdomains, a leading dot, ports, addresses, CIDR blocks, IPv6, *
        ("https://api.example.com/v1", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "example.com"}, None),
        ("https://api.example.com/v1", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": ".example.com"}, None),
        ("https://example.com/v1", {"HTTPS_PROXY": "http://p:1", "no_proxy": "other.org, example.com"}, None),
        ("https://notexample.com/v1", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "example.com"}, "http://p:1"),
        ("https://api.example.com/v1", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "example.com:8443"}, "http://p:1"),
        ("https://api.example.com:8443/v1", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "example.com:8443"}, None),
        ("http://10.1.2.3:8000/v1", {"HTTP_PROXY": "http://p:1", "NO_PROXY": "10.0.0.0/8"}, None),
        ("http://11.1.2.3:8000/v1", {"HTTP_PROXY": "http://p:1", "NO_PROXY": "10.0.0.0/8"}, "http://p:1"),
        ("http://192.168.1.5/v1", {"HTTP_PROXY": "http://p:1", "NO_PROXY": "192.168.1.5"}, None),
        ("http://[fd00::5]:8000/v1", {"HTTP_PROXY": "http://p:1", "NO_PROXY": "fd00::/8"}, None),
        ("http://[fd00::5]:8000/v1", {"HTTP_PROXY": "http://p:1", "NO_PROXY": "[fd00::5]:8000"}, None),
        ("https://api.example.com/v1", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "*"}, None),
        # loopback is always direct
        ("http://127.0.0.1:8000/v1", {"HTTP_PROXY": "http://p:1"}, None),
        ("http://127.9.9.9:8000/v1", {"ALL_PROXY": "http://p:1"}, None),
        ("http://localhost:8000/v1", {"HTTP_PROXY": "http://p:1"}, None),
        ("http://gpu.localhost:8000/v1", {"HTTP_PROXY": "http://p:1"}, None),
        ("http://[::1]:8000/v1", {"HTTP_PROXY": "http://p:1"}, None),
        ("http://[credentials]@host/v1", {"HTTP_PROXY": "http://p:1"}, None),  # not a URL: reported by the request
        # httpoxy: in a CGI environment HTTP_PROXY may come from a request header
        ("http://api.example.com/v1", {"HTTP_PROXY": "http://evil:1", "REQUEST_METHOD": "GET"}, None),
        ("http://api.example.com/v1", {"http_proxy": "http://p:1", "REQUEST_METHOD": "GET"}, "http://p:1"),
    ],
)
def test_proxy_rules(url: str, env: dict[str, str], expected: str | None) -> None:
    assert proxy_for(url, env) == expected


def test_a_socks_proxy_is_refused_by_name_without_its_credentials() -> None:
    with pytest.raises(ProviderConfigError) as info:
        proxy_for("https://api.example.com/v1", {"ALL_PROXY": "socks5://alice:hunter2@p:1080"})
    message = str(info.value)
    assert message == (
        "the proxy for https://api.example.com/v1 (ALL_PROXY=socks5://[credentials]@p:1080) is a socks5:// proxy; "
        "runner speaks to http:// and https:// proxies: set an HTTP proxy, or list the host in NO_PROXY"
    )
    assert "hunter2" not in message


@pytest.fixture
def proxy_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OAIServer]:
    monkeypatch.setenv(KEY_ENV, KEY)
    with OAIServer() as server:
        yield server


@pytest.mark.parametrize("stream", [False, True])
def test_requests_go_through_the_proxy_with_its_credentials(
    proxy_server: OAIServer, stream: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy_server.default = Plan(content="hello via proxy", tokens=["hello", " via", " proxy"])
    port = proxy_server.url.split(":")[2].split("/")[0]
    monkeypatch.setenv("HTTP_PROXY", f"http://alice:s3cret@127.0.0.1:{port}")
    provider = make(REMOTE, stream=stream)
    result = run(chat(provider))
    assert result.content == "hello via proxy"
    (request,) = proxy_server.requests
    assert request.path == "http://model.test/v1/chat/completions"  # absolute form: a proxied request
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert headers["proxy-authorization"] == "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert headers["authorization"] == f"Bearer {KEY}"
    assert headers["host"] == "model.test"


def test_a_loopback_server_is_reached_directly_even_with_a_proxy_set(
    proxy_server: OAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    result = run(chat(make(proxy_server.url, stream=False)))
    assert result.content
    (request,) = proxy_server.requests
    assert request.path == "/v1/chat/completions"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_proxy_that_is_down_is_named_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setenv("HTTP_PROXY", f"http://alice:s3cret@127.0.0.1:{_closed_port()}")
    provider = make(REMOTE, stream=False, retry={"max_attempts": 1})
    with pytest.raises(ProviderConnectError) as info:
        run(chat(provider))
    message = str(info.value)
    assert message.startswith(
        "model 'main' (test-model at http://model.test/v1) via proxy http://[credentials]@127.0.0.1:"
    )
    assert "s3cret" not in message and KEY not in message
    assert "Connection refused" in message


def test_a_refused_tunnel_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """An https endpoint goes through a CONNECT tunnel; a proxy that refuses it fails the call clearly."""
    monkeypatch.setenv(KEY_ENV, KEY)
    seen: list[bytes] = []

    async def scenario() -> None:
        async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            seen.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(refuse, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        monkeypatch.setenv("HTTPS_PROXY", f"http://dave:tunn3l@127.0.0.1:{port}")
        try:
            provider = make("https://model.test/v1", stream=False, retry={"max_attempts": 1})
            try:
                await chat(provider)
            finally:
                await provider.aclose()
        finally:
            server.close()
            await server.wait_closed()

    with pytest.raises(ProviderConnectError) as info:
        run(scenario())
    assert seen and seen[0].startswith(b"CONNECT model.test:443 HTTP/1.1\r\n")
    credentials = base64.b64encode(b"dave:tunn3l")
    assert b"proxy-authorization: basic " + credentials.lower() in seen[0].lower()  # the CONNECT carries them
    message = str(info.value)
    assert message.startswith(
        "model 'main' (test-model at https://model.test/v1) via proxy http://[credentials]@127.0.0.1:"
    )
    assert "tunn3l" not in message
    assert "the proxy did not connect us to https://model.test/v1" in message
    assert "403" in message
    assert message.endswith("check HTTPS_PROXY / HTTP_PROXY, or list the host in NO_PROXY")


def test_a_given_transport_routes_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment's proxy is runner's own transport's: a transport passed in is used as it is (as
    httpx.AsyncClient does), and messages do not name a proxy the request never went through."""
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setenv("HTTP_PROXY", f"http://alice:s3cret@127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("ALL_PROXY", "socks5://bob:pa55@127.0.0.1:1080")  # refused by name on runner's own
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(503, json={"error": {"message": "busy"}})

    raw = {"provider": "openai", "base_url": REMOTE, "model": "test-model", "api_key_env": KEY_ENV}
    config = parse_openai_model({**raw, "stream": False, "retry": {"max_attempts": 1}})
    provider = OpenAIChatProvider("main", config, transport=httpx.MockTransport(handler))
    with pytest.raises(ProviderHTTPError) as info:
        run(chat(provider))
    assert seen == ["http://model.test/v1/chat/completions"]
    assert str(info.value) == "model 'main' (test-model at http://model.test/v1): HTTP 503: busy"


def test_a_socks_proxy_fails_the_cli_run_with_a_clear_message(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(_workflow(REMOTE))
    proc = run_cli(
        "run", str(wf), "-q", "--report-dir", str(tmp_path / "r"),
        env_extra={"RUNNER_TEST_KEY": KEY, "HTTP_PROXY": "socks5://bob:pa55@127.0.0.1:1080"},
    )  # fmt: skip
    assert proc.returncode == 1
    assert "is a socks5:// proxy" in proc.stderr and "HTTP_PROXY=socks5://[credentials]@127.0.0.1:1080" in proc.stderr
    assert "pa55" not in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr


def test_cli_run_through_a_proxy(tmp_path: Path) -> None:
    with OAIServer(api_key=KEY) as server:
        server.default = Plan(content="proxied answer", tokens=["proxied", " answer"])
        port = server.url.split(":")[2].split("/")[0]
        wf = tmp_path / "wf.yaml"
        wf.write_text(_workflow(REMOTE))
        proc = run_cli(
            "run", str(wf), "--report-dir", str(tmp_path / "r"),
            env_extra={"RUNNER_TEST_KEY": KEY, "HTTP_PROXY": f"http://carol:pr0xy@127.0.0.1:{port}"},
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.splitlines()) == [f"[fan[{i}] a] proxied answer" for i in range(2)]
    assert all(r.path == "http://model.test/v1/chat/completions" for r in server.requests)
    assert len(server.requests) == 2
    (path,) = (tmp_path / "r").glob("*.json")
    text = path.read_text()
    assert_valid_report(json.loads(text))
    assert "pr0xy" not in text + proc.stdout + proc.stderr and KEY not in text + proc.stderr


def _workflow(url: str) -> str:
    return f"""\
version: 1
name: proxied
models:
  main:
    provider: openai
    base_url: "{url}"
    model: test-model
    api_key_env: RUNNER_TEST_KEY
    retry: {{max_attempts: 1}}
agents:
  a: {{model: main, sys_prompt: "You look at {{{{ vars.item }}}}."}}
stages:
  - id: fan
    input: "Look at {{{{ vars.item }}}}."
    fanout: {{for_each: "{{{{ range(2) | list }}}}", agent: a}}
"""
