"""``models.<name>.cache: {responses: {dir, ttl, max_size}}``: the response cache's settings (issue 19).

Parsed apart from :func:`runner.config.openai.parse_openai_model` because sizes are read by
:func:`runner.config.embeddings.parse_size`, and the embeddings' settings already import the model's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner.config.openai import ResponseCacheConfig
from runner.errors import ConfigError

_WHERE = ("cache", "responses")


def parse_response_cache(raw: Mapping[str, Any]) -> ResponseCacheConfig | None:
    """The response cache of one schema-validated model mapping, or None when it has none."""
    cache = raw.get("cache")
    if cache is None:
        return None
    if not isinstance(cache, Mapping):
        raise ConfigError(f"cache must be a mapping, not {cache!r}", ("cache",), "write cache: {responses: {dir: ...}}")
    responses = cache.get("responses")
    if responses is None:
        return None
    if not isinstance(responses, Mapping):
        raise ConfigError(
            f"cache.responses must be a mapping, not {responses!r}",
            _WHERE,
            "write responses: {dir: .runner/cache/responses}",
        )
    folder = responses.get("dir")
    if not isinstance(folder, str) or not folder.strip():
        raise ConfigError(
            "cache.responses.dir is required: the folder of the cached answers",
            (*_WHERE, "dir"),
            "write dir: .runner/cache/responses",
        )
    ttl = responses.get("ttl")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl <= 0):
        raise ConfigError(
            f"cache.responses.ttl must be a positive number of seconds, not {ttl!r}",
            (*_WHERE, "ttl"),
            "write a number of seconds, e.g. 86400 for a day, or leave ttl out for no expiry",
        )
    size = responses.get("max_size")
    try:
        from runner.config.embeddings import parse_size  # noqa: PLC0415 - with decimal: only for a cache's size

        max_size = None if size is None else parse_size(size)
    except ConfigError as exc:
        raise ConfigError(f"cache.responses.max_size: {exc}", (*_WHERE, "max_size"), exc.hint) from exc
    return ResponseCacheConfig(folder, None if ttl is None else float(ttl), max_size)
