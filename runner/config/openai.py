"""Settings of an OpenAI-compatible model (``models.<name>`` with ``provider: openai``) and of an
OpenAI-compatible embedder (``embeddings.<name>`` with ``provider: openai``), as frozen records with
defaults applied.

Kept free of heavy imports (no httpx, no numpy): ``runner validate`` imports this module and its cold
start matters. The raw mappings have passed ``$defs/openaiModel`` of ``schemas/workflow.schema.json`` (or
``$defs/openaiEmbedding``); the parsers still check what they convert and raise
:class:`~runner.errors.ConfigError` with the key's path and a hint, which ``runner validate`` reports at that
key; a caller that skips the schema gets the same message, never a wrong record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from runner.config.pricing import Pricing, parse_pricing
from runner.errors import ConfigError
from runner.retry import JITTER_MODES, MODEL_RETRY, RETRY_KINDS, RetryPolicy

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _path(where: str, key: str) -> tuple[str, ...]:
    """``("retry", "max_delay")`` for ``where="retry."`` and ``key="max_delay"``."""
    return (*(part for part in where.split(".") if part), key)


@dataclass(frozen=True, slots=True)
class TimeoutConfig:
    """Seconds. ``connect``, ``read``, ``write`` and ``pool`` are per HTTP request (``read`` is the longest
    wait for any bytes). ``first_token`` bounds the wait from sending a streamed request to its first token;
    ``idle`` the gap between chunks of a stream after that. ``total`` bounds one whole call, retries and
    back-off included. ``None`` means no limit (allowed for ``first_token``, ``idle`` and ``total``)."""

    connect: float = 10.0
    read: float = 120.0
    write: float = 30.0
    pool: float = 60.0
    first_token: float | None = 60.0
    idle: float | None = 60.0
    total: float | None = None


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """The connection pool of the model's one shared client: at most ``max_connections`` requests in
    flight (more wait for a free connection, up to ``timeout.pool``), idle connections closed after
    ``keepalive_expiry`` seconds."""

    max_connections: int = 100
    max_keepalive_connections: int = 100
    keepalive_expiry: float = 30.0


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """Client-side limits shared by every caller of the model, fan-outs included. ``None`` is no limit."""

    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None


@dataclass(frozen=True, slots=True)
class ResponseCacheConfig:
    """``models.<name>.cache.responses``: a file cache of the model's answers for development, keyed as a
    cassette's requests are (:mod:`runner.cassette.cache`). ``dir`` is relative to the workflow's folder unless
    absolute; ``ttl`` seconds since an entry was written (None: no expiry); ``max_size`` bytes of entries kept
    (None: no limit), least recently used removed first. Parsed by :mod:`runner.config.responses`."""

    dir: str
    ttl: float | None = None
    max_size: int | None = None


@dataclass(frozen=True, slots=True)
class OpenAIModelConfig:
    """One ``models.<name>`` entry with ``provider: openai``. ``api_key_env`` names the environment
    variable holding the key (``None``: send no ``Authorization`` header, as local servers such as
    Ollama or llama.cpp need none). ``params`` go into the request body as given (temperature,
    max_tokens, ...)."""

    base_url: str
    model: str
    api_key_env: str | None = None
    headers: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    stream: bool = True
    params: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    timeout: TimeoutConfig = TimeoutConfig()
    pool: PoolConfig = PoolConfig()
    retry: RetryPolicy = MODEL_RETRY
    rate_limit: RateLimitConfig = RateLimitConfig()
    context_window: int | None = None  # tokens; only for the memory-budget check of runner validate
    # how a structured output is asked for (issue 16): json_schema, json_object or prompt (see STRUCTURED_MODES)
    structured_output: str = "json_schema"
    cache: ResponseCacheConfig | None = None  # cache.responses (runner.config.responses parses it)
    pricing: Pricing | None = None  # US dollars per million tokens, for the reports' costs

    # the rest of runner.config.models.ModelSettings: what every model's record answers
    @property
    def remote_model(self) -> str:
        return self.model

    @property
    def turns(self) -> tuple[()]:
        return ()

    def templates(self) -> tuple[()]:
        return ()  # a real model renders nothing: its messages come rendered from the agent


@dataclass(frozen=True, slots=True)
class OpenAIEmbeddingConfig:
    """One ``embeddings.<name>`` entry with ``provider: openai``: ``dimensions`` is the length of the
    vectors the model returns (checked on every answer); ``send_dimensions`` passes it in the request
    (OpenAI's text-embedding-3 models shorten their vectors to it; most other servers reject the field).
    ``batch_size`` texts go in one request, at most ``max_concurrency`` requests at once."""

    base_url: str
    model: str
    dimensions: int
    api_key_env: str | None = None
    headers: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    send_dimensions: bool = False
    batch_size: int = 64
    max_concurrency: int = 4
    timeout: TimeoutConfig = TimeoutConfig()
    pool: PoolConfig = PoolConfig()
    retry: RetryPolicy = MODEL_RETRY
    rate_limit: RateLimitConfig = RateLimitConfig()


def _number(
    raw: Mapping[str, Any],
    key: str,
    where: str,
    default: float | None,
    *,
    nullable: bool = False,
    minimum: float = 0.0,
    strict: bool = True,
) -> float | None:
    if key not in raw:
        return default
    value = raw[key]
    if value is None and nullable:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or value < minimum
        or (strict and value == minimum)
    ):
        bound = f"greater than {minimum:g}" if strict else f"at least {minimum:g}"
        null = " or null" if nullable else ""
        raise ConfigError(
            f"{where}{key} must be a number {bound}{null}, not {value!r}",
            _path(where, key),
            f"write a number {bound}" + (", or null for no limit" if nullable else ""),
        )
    return float(value)


def _int(raw: Mapping[str, Any], key: str, where: str, default: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"{where}{key} must be a positive integer, not {value!r}", _path(where, key), "write a whole number >= 1"
        )
    return value


def _str(raw: Mapping[str, Any], key: str, *, required: bool) -> str | None:
    value = raw.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key} must be a non-empty string, not {value!r}", (key,), f"write the {key}")
    return value


def _section(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key)
    if value is None:
        return _EMPTY
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key} must be a mapping, not {value!r}", (key,), f"write {key}: {{name: value, ...}}")
    return value


def parse_timeout(raw: Mapping[str, Any]) -> TimeoutConfig:
    d = TimeoutConfig()
    w = "timeout."

    def req(key: str, default: float) -> float:
        value = _number(raw, key, w, default)
        assert value is not None
        return value

    return TimeoutConfig(
        connect=req("connect", d.connect),
        read=req("read", d.read),
        write=req("write", d.write),
        pool=req("pool", d.pool),
        first_token=_number(raw, "first_token", w, d.first_token, nullable=True),
        idle=_number(raw, "idle", w, d.idle, nullable=True),
        total=_number(raw, "total", w, d.total, nullable=True),
    )


def parse_pool(raw: Mapping[str, Any]) -> PoolConfig:
    d = PoolConfig()
    max_connections = _int(raw, "max_connections", "pool.", d.max_connections)
    default_keepalive = min(max_connections, d.max_keepalive_connections)
    keepalive = _int(raw, "max_keepalive_connections", "pool.", default_keepalive)
    expiry = _number(raw, "keepalive_expiry", "pool.", d.keepalive_expiry, strict=False)
    assert expiry is not None
    return PoolConfig(max_connections, min(keepalive, max_connections), expiry)


def parse_retry(raw: Mapping[str, Any]) -> RetryPolicy:
    d = MODEL_RETRY
    jitter = raw.get("jitter", d.jitter)
    if jitter not in JITTER_MODES:
        raise ConfigError(
            f"retry.jitter must be one of {', '.join(JITTER_MODES)}, not {jitter!r}",
            ("retry", "jitter"),
            f"use one of: {', '.join(JITTER_MODES)}",
        )
    retry_on = raw.get("retry_on", d.retry_on)
    if isinstance(retry_on, str | bytes) or not isinstance(retry_on, list | tuple):
        raise ConfigError(
            f"retry.retry_on must be a list, not {retry_on!r}",
            ("retry", "retry_on"),
            "write a list such as [429, 503, timeout]",
        )
    for entry in retry_on:
        is_status = isinstance(entry, int) and not isinstance(entry, bool) and 100 <= entry <= 599
        if not is_status and entry not in RETRY_KINDS:
            raise ConfigError(
                f"retry.retry_on entries are HTTP statuses or one of {', '.join(RETRY_KINDS)}, not {entry!r}",
                ("retry", "retry_on", retry_on.index(entry)),
                f"use a status from 100 to 599, or one of: {', '.join(RETRY_KINDS)}",
            )
    initial = _number(raw, "initial_delay", "retry.", d.initial_delay, strict=False)
    max_delay = _number(raw, "max_delay", "retry.", d.max_delay, strict=False)
    assert initial is not None and max_delay is not None
    return RetryPolicy(
        max_attempts=_int(raw, "max_attempts", "retry.", d.max_attempts),
        initial_delay=initial,
        max_delay=max(max_delay, initial),
        jitter=jitter,
        retry_on=tuple(retry_on),
    )


def parse_rate_limit(raw: Mapping[str, Any]) -> RateLimitConfig:
    return RateLimitConfig(
        requests_per_minute=_number(raw, "requests_per_minute", "rate_limit.", None, nullable=True),
        tokens_per_minute=_number(raw, "tokens_per_minute", "rate_limit.", None, nullable=True),
    )


def _headers(raw: Mapping[str, Any]) -> Mapping[str, str]:
    headers = _section(raw, "headers")
    for key, value in headers.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ConfigError(
                f"headers must map names to strings, not {key!r}: {value!r}",
                ("headers", key) if isinstance(key, str) else ("headers",),
                "quote the value",
            )
        if key.lower() == "authorization":
            raise ConfigError(
                "headers must not set Authorization: name the key's variable in api_key_env",
                ("headers", key),
                "remove the header and set api_key_env to the name of the variable that holds the key",
            )
    return MappingProxyType(dict(headers))


STRUCTURED_MODES = ("json_schema", "json_object", "prompt")
"""How an ``openai`` model is asked for a structured output: ``response_format: {type: json_schema}`` with the
schema; JSON mode (``{type: json_object}``) with the schema in the system prompt, for servers without
json_schema; or the schema in the system prompt only. The reply is parsed and checked in every mode."""

RUNNER_OWNED = ("model", "messages", "stream", "stream_options", "tools")
"""Request body fields the runner sets: neither ``params`` nor ``params.extra_body`` may set them."""


def _params(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    params = _section(raw, "params")
    for reserved in RUNNER_OWNED:
        if reserved in params:
            raise ConfigError(
                f"params must not set {reserved!r}: the runner sets it",
                ("params", reserved),
                f"remove {reserved} from params" + (": set stream on the model itself" if reserved == "stream" else ""),
            )
    extra = params.get("extra_body")
    if extra is not None:
        if not isinstance(extra, Mapping):
            raise ConfigError(
                f"params.extra_body must be a mapping, not {extra!r}",
                ("params", "extra_body"),
                "write extra_body: {field: value, ...}",
            )
        for reserved in RUNNER_OWNED:
            if reserved in extra:
                raise ConfigError(
                    f"params.extra_body must not set {reserved!r}: the runner sets it",
                    ("params", "extra_body", reserved),
                    f"remove {reserved} from extra_body",
                )
    n = params.get("n", 1)
    if n != 1 or isinstance(n, bool):
        raise ConfigError(
            f"params.n must be 1, not {n!r}: runner reads one choice of each reply",
            ("params", "n"),
            "remove n: for several samples, fan out over the same agent (parallel voting)",
        )
    return params


def parse_openai_model(raw: Mapping[str, Any]) -> OpenAIModelConfig:
    """The record for one schema-validated ``models.<name>`` mapping with ``provider: openai``."""
    base_url = _str(raw, "base_url", required=True)
    model = _str(raw, "model", required=True)
    assert base_url is not None and model is not None
    stream = raw.get("stream", True)
    if not isinstance(stream, bool):
        raise ConfigError(f"stream must be true or false, not {stream!r}", ("stream",), "write true or false")
    params = _params(raw)
    mode = raw.get("structured_output", "json_schema")
    if mode not in STRUCTURED_MODES:
        raise ConfigError(
            f"structured_output must be one of {', '.join(STRUCTURED_MODES)}, not {mode!r}",
            ("structured_output",),
            f"use one of: {', '.join(STRUCTURED_MODES)}",
        )
    return OpenAIModelConfig(
        base_url=base_url.rstrip("/"),
        model=model,
        api_key_env=_str(raw, "api_key_env", required=False),
        headers=_headers(raw),
        stream=stream,
        params=MappingProxyType(dict(params)),
        timeout=parse_timeout(_section(raw, "timeout")),
        pool=parse_pool(_section(raw, "pool")),
        retry=parse_retry(_section(raw, "retry")),
        rate_limit=parse_rate_limit(_section(raw, "rate_limit")),
        context_window=raw.get("context_window"),
        structured_output=mode,
        pricing=parse_pricing(_section(raw, "pricing") or None),
    )


def parse_openai_embedding(raw: Mapping[str, Any]) -> OpenAIEmbeddingConfig:
    """The record for one schema-validated ``embeddings.<name>`` mapping with ``provider: openai``
    (keys this provider does not read, such as ``cache``, are left to their owners)."""
    base_url = _str(raw, "base_url", required=True)
    model = _str(raw, "model", required=True)
    assert base_url is not None and model is not None
    send_dimensions = raw.get("send_dimensions", False)
    if not isinstance(send_dimensions, bool):
        raise ConfigError(
            f"send_dimensions must be true or false, not {send_dimensions!r}",
            ("send_dimensions",),
            "write true or false",
        )
    if "dimensions" not in raw:
        raise ConfigError(
            "dimensions is required: the length of the vectors the model returns",
            (),
            "add dimensions: the length of the model's vectors (1536 for text-embedding-3-small)",
        )
    return OpenAIEmbeddingConfig(
        base_url=base_url.rstrip("/"),
        model=model,
        dimensions=_int(raw, "dimensions", "", 1),
        api_key_env=_str(raw, "api_key_env", required=False),
        headers=_headers(raw),
        send_dimensions=send_dimensions,
        batch_size=_int(raw, "batch_size", "", 64),
        max_concurrency=_int(raw, "max_concurrency", "", 4),
        timeout=parse_timeout(_section(raw, "timeout")),
        pool=parse_pool(_section(raw, "pool")),
        retry=parse_retry(_section(raw, "retry")),
        rate_limit=parse_rate_limit(_section(raw, "rate_limit")),
    )
