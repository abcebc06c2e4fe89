"""What went wrong, in words a user can act on: the runner error for every way an endpoint can fail.

An error status with the server's own message, an error object a server reported inside a 200 answer
(mid-stream included) read as the status it stands for, an httpx exception (from any transport) named by the
timeout that fired with its value, and answers runner cannot read. Every message opens with the endpoint's
label (``model 'main' (gpt-4o-mini at https://api.openai.com/v1)``) and passes through
:data:`runner.secrets.SECRETS` before it is cut, so no key, header or proxy credential is ever shown.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from runner.config.openai import PoolConfig, TimeoutConfig
from runner.errors import (
    ProviderConfigError,
    ProviderConnectError,
    ProviderError,
    ProviderHTTPError,
    ProviderProtocolError,
    ProviderTimeout,
)
from runner.retry import parse_retry_after
from runner.secrets import SECRETS

if TYPE_CHECKING:
    import httpx

NEVER_RETRIED = frozenset({400, 401, 403, 404, 422})
"""Statuses that mean the request itself is wrong: retrying cannot help, whatever ``retry_on`` says."""

DECODABLE = frozenset(
    {"identity", "gzip", "x-gzip", "deflate"}
    | ({"br"} if importlib.util.find_spec("brotli") or importlib.util.find_spec("brotlicffi") else set())
    | ({"zstd"} if importlib.util.find_spec("zstandard") else set())
)
"""Content-Encodings httpx decodes here. httpx passes any other through undecoded, which would then read as
garbage: such an answer is refused by name (:meth:`Failures.check_encoding`)."""


def _server_message(body: bytes) -> str:
    """The error message in an error answer: OpenAI's ``{"error": {"message"}}`` and the shapes other
    compatible servers use, else the body (its start: see :func:`clip`, applied after redaction so that a
    credential is never cut in two and half of it shown)."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        for candidate in (error, data.get("message"), data.get("detail")):
            if isinstance(candidate, str) and candidate:
                return candidate
    text = body[:_CLIP_BYTES].decode("utf-8", errors="replace").strip()
    return text or "(empty answer)"


_CLIP_BYTES = 16384


def _error_code(body: bytes) -> str | None:
    """OpenAI's ``{"error": {"code": "context_length_exceeded"}}``: what a fallback's ``context_length`` reads."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


def clip(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def snippet(data: bytes | str, limit: int = 200) -> str:
    """The start of an answer for a message, quoted: redacted before it is cut (a credential cut in two
    would no longer be recognised)."""
    text = data[:_CLIP_BYTES].decode("utf-8", errors="replace") if isinstance(data, bytes) else data[:_CLIP_BYTES]
    return repr(SECRETS.redact(text)[:limit])


# The error types that servers and gateways put in an error object instead of (or beside) a numeric code,
# normalised (lower case, no "_"), and the HTTP status each stands for: OpenAI's types, the exception names
# vLLM and LiteLLM report, Anthropic's types (some gateways pass them through).
_ERROR_TYPE_STATUS = {
    "invalidrequesterror": 400,
    "badrequesterror": 400,
    "contextwindowexceedederror": 400,
    "authenticationerror": 401,
    "permissionerror": 403,
    "permissiondeniederror": 403,
    "notfounderror": 404,
    "requesttimeout": 408,
    "timeout": 408,
    "timeouterror": 408,
    "apitimeouterror": 408,
    "unprocessableentityerror": 422,
    "ratelimiterror": 429,
    "ratelimitexceeded": 429,
    "servererror": 500,
    "internalservererror": 500,
    "apierror": 500,
    "apiconnectionerror": 502,
    "badgatewayerror": 502,
    "serviceunavailableerror": 503,
    "serviceunavailable": 503,
    "overloadederror": 503,
}


def _status_of(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    return value if isinstance(value, int) and 100 <= value <= 599 else None


def reported_status(error: Any) -> int | None:
    """The HTTP status an error object reported in a body stands for: a numeric ``code`` or ``status`` (as a
    number or as text: LiteLLM sends ``"code": "500"``), else a known error ``type`` or ``code`` name; None
    when it names none."""
    if not isinstance(error, Mapping):
        return None
    for key in ("code", "status", "status_code", "http_status"):
        status = _status_of(error.get(key))
        if status is not None:
            return status
    for key in ("type", "code"):
        name = error.get(key)
        if isinstance(name, str):
            status = _ERROR_TYPE_STATUS.get(name.lower().replace("_", "").replace(" ", ""))
            if status is not None:
                return status
    return None


def reported_message(error: Any) -> str:
    if isinstance(error, Mapping) and error.get("message"):
        return str(error["message"])
    return str(error)


def _os_reason(exc: BaseException) -> str:
    """'Connection refused' rather than a transport's wording: the first errno in the cause chain."""
    seen: BaseException | None = exc
    while seen is not None:
        errno = getattr(seen, "errno", None)
        if isinstance(errno, int) and errno > 0:
            return os.strerror(errno)
        seen = seen.__cause__ or seen.__context__
    return str(exc) or type(exc).__name__


class Failures:
    """The runner errors of one endpoint. ``label`` opens every message; ``base_url`` (credentials masked),
    ``timeout`` and ``pool`` are what the messages name when a timeout fires or a connection fails."""

    def __init__(self, label: str, base_url: str, timeout: TimeoutConfig, pool: PoolConfig) -> None:
        self.label = label
        self.base_url = base_url
        self.timeout = timeout
        self.pool = pool

    @staticmethod
    def redact(text: str) -> str:
        """``text`` without any secret (:mod:`runner.secrets`): servers and proxies echo keys and headers."""
        return SECRETS.redact(text)

    def http_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> ProviderHTTPError:
        message = clip(self.redact(_server_message(body)))
        return ProviderHTTPError(
            f"{self.label}: HTTP {status}: {message}",
            status,
            parse_retry_after(headers.get("retry-after")),
            _error_code(body),
        )

    def translate(self, exc: httpx.HTTPError, *, during: str = "") -> ProviderError:
        """The runner error for an httpx exception; ``during`` says what was going on (a stream's
        progress) for a connection that broke while reading."""
        import httpx  # noqa: PLC0415 - imported already by whoever raised exc; a replay never comes here

        t = self.timeout
        if isinstance(exc, httpx.ConnectTimeout):
            return ProviderTimeout(
                f"{self.label}: timeout.connect ({t.connect:g} s) fired: could not connect to {self.base_url}"
            )
        if isinstance(exc, httpx.ReadTimeout):
            return ProviderTimeout(
                f"{self.label}: timeout.read ({t.read:g} s) fired: the server sent nothing for {t.read:g} s{during}"
            )
        if isinstance(exc, httpx.WriteTimeout):
            return ProviderTimeout(f"{self.label}: timeout.write ({t.write:g} s) fired: could not send the request")
        if isinstance(exc, httpx.PoolTimeout):
            return ProviderTimeout(
                f"{self.label}: timeout.pool ({t.pool:g} s) fired: no free connection, "
                f"all pool.max_connections ({self.pool.max_connections}) were busy"
            )
        if isinstance(exc, httpx.ProxyError):
            return ProviderConnectError(
                f"{self.label}: the proxy did not connect us to {self.base_url}: {self.redact(_os_reason(exc))}; "
                "check HTTPS_PROXY / HTTP_PROXY, or list the host in NO_PROXY"
            )
        if isinstance(exc, httpx.ConnectError):
            return ProviderConnectError(
                f"{self.label}: cannot connect to {self.base_url}: {self.redact(_os_reason(exc))}"
            )
        if isinstance(exc, httpx.DecodingError):
            return ProviderProtocolError(
                f"{self.label}: the answer could not be decoded: its body does not match its Content-Encoding "
                f"({self.redact(str(exc))})"
            )
        if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
            return ProviderConfigError(
                f"{self.label}: base_url {self.base_url!r} is not a usable URL: {self.redact(str(exc))}"
            )
        broken = ProviderProtocolError(f"{self.label}: the connection broke while reading the answer{during}")
        broken.kind = "read"
        return broken

    def reported_error(self, error: Any, where: str, headers: Mapping[str, str] | None = None) -> ProviderError:
        """The error for an error object a server put in a body it answered with status 200 (``where`` says
        where: mid-stream, or in the JSON answer). Gateways and servers (LiteLLM, vLLM, OpenAI) report an
        upstream failure this way once the stream has begun: its code makes it the error its HTTP status would
        be, retried (or not) as that status would be, honouring a ``retry_after`` it gives (in seconds) or the
        response's Retry-After header. Without a code it is a protocol error."""
        message = clip(self.redact(reported_message(error)))
        status = reported_status(error)
        if status is None:
            return ProviderProtocolError(f"{self.label}: the server reported an error {where}: {message}")
        retry_after = parse_retry_after(headers.get("retry-after")) if headers is not None else None
        if retry_after is None and isinstance(error, Mapping):
            given = error.get("retry_after")
            # json.loads reads Infinity and NaN: neither is a delay (an infinite one would hang the call)
            if isinstance(given, int | float) and not isinstance(given, bool) and 0 <= given < math.inf:
                retry_after = float(given)
        code = error.get("code") if isinstance(error, Mapping) else None
        return ProviderHTTPError(
            f"{self.label}: the server reported error {status} {where}: {message}",
            status,
            retry_after,
            code if isinstance(code, str) else None,
        )

    def protocol_error(self, what: str) -> ProviderProtocolError:
        return ProviderProtocolError(f"{self.label}: {self.redact(what)}")

    def check_encoding(self, headers: Mapping[str, str]) -> None:
        """Refuse an answer compressed in a way httpx cannot decode here (see :data:`DECODABLE`)."""
        for encoding in headers.get("content-encoding", "").split(","):
            name = encoding.strip().lower()
            if name and name not in DECODABLE:
                raise ProviderProtocolError(
                    f"{self.label}: the server encoded its answer with Content-Encoding {name!r}, which runner "
                    f"cannot decode (it accepts {', '.join(sorted(DECODABLE))})"
                )


def with_reason(err: ProviderError, why: str) -> ProviderError:
    """``err`` with ``why`` added to its message (the retry loop's reason for not trying again), its kind,
    status and cause kept."""
    new: ProviderError
    if isinstance(err, ProviderHTTPError):
        new = ProviderHTTPError(f"{err} ({why})", err.status, err.retry_after, err.code)
    else:
        new = type(err)(f"{err} ({why})")
        new.kind = err.kind
    new.__cause__ = err.__cause__
    return new
