"""Settings of ``embeddings.<name>`` and ``memory.<name>.long_term``, as frozen records with defaults applied.

Kept free of heavy imports (no numpy): ``runner validate`` reads this module and its cold start matters.
The raw mappings come from YAML that already passed ``$defs/hashingEmbedding`` of ``schemas/workflow.schema.json`` and
``long_term.schema.json``; the parsers still check what they convert and raise
:class:`~runner.errors.ConfigError` with the key's path and a hint, which ``runner validate`` reports at that
key; a caller that skips the schema gets the same message, never a wrong record.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from runner.config.openai import parse_openai_embedding
from runner.errors import ConfigError


@dataclass(frozen=True)
class EmbedderSettingsType:
    """One embedding provider's settings. Every ``embeddings.<name>`` has the common record
    (:class:`EmbeddingConfig`: dimensions, batch size, cache); ``own_keys`` are the further keys only this
    provider takes, ``model_example`` (when the provider needs a ``model``) names one in the message that
    asks for it, and ``parse`` makes the provider's own record from the mapping (None when the common record
    says all). The factories that run them are :data:`runner.embeddings.EMBEDDERS`, under the same names."""

    name: str
    own_keys: tuple[str, ...] = ()
    model_example: str | None = None
    parse: Callable[[Mapping[str, Any]], Any] | None = None


EMBEDDER_SETTINGS: dict[str, EmbedderSettingsType] = {
    "hashing": EmbedderSettingsType("hashing"),
    "openai": EmbedderSettingsType(
        "openai",
        own_keys=("model", "base_url", "api_key_env"),
        model_example="text-embedding-3-small",
        parse=parse_openai_embedding,
    ),
}
PROVIDERS = tuple(EMBEDDER_SETTINGS)  # the schema's choices, in its order (a test pins them)
_OWN_KEYS = tuple(dict.fromkeys(key for kind in EMBEDDER_SETTINGS.values() for key in kind.own_keys))
RETRIEVAL_MODES = ("auto", "tool")
DEFAULT_DIMENSIONS = 256
DEFAULT_BATCH_SIZE = 64
DEFAULT_TOP_K = 5

# Decimal units are powers of 1000, binary units (KiB, ...) powers of 1024, as in IEC 80000-13.
_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
# The same pattern is in $defs/size of schemas/workflow.schema.json; a test keeps the two in step.
SIZE_PATTERN = r"^\s*[0-9]+(\.[0-9]+)?\s*(([KkMmGgTt][Ii]?)?[Bb])?\s*$"
_SIZE = re.compile(SIZE_PATTERN)
_SIZE_HINT = "bytes (4096) or a number with a unit, such as '256MB' or '1.5GiB'"


def _path(where: str, key: str) -> tuple[str, ...]:
    """``("cache", "ttl")`` for ``where="cache."`` and ``key="ttl"``."""
    return (*(part for part in where.split(".") if part), key)


def parse_size(value: int | str) -> int:
    """Bytes in ``value``: a plain integer (bytes) or a string such as ``"256MB"``, ``"1.5GiB"``, ``"4096"``.

    Fractions of a byte are dropped. Raises :class:`~runner.errors.ConfigError` (a ValueError) for anything
    else, negative numbers and zero included (a cache of at most zero bytes can hold nothing).
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(f"a size must be an integer or a string such as '256MB', not {value!r}", (), _SIZE_HINT)
    if isinstance(value, int):
        size = value
    else:
        if not _SIZE.match(value):
            raise ConfigError(
                f"{value!r} is not a size: use bytes (4096) or a number with a unit "
                "(B, KB, MB, GB, TB, KiB, MiB, GiB, TiB), such as '256MB' or '1.5GiB'",
                (),
                _SIZE_HINT,
            )
        text = value.strip()
        split = len(text.rstrip("BbIiKkMmGgTt"))
        number, unit = text[:split].strip(), text[split:].lower()
        size = int(Decimal(number) * _UNITS[unit])
    if size < 1:
        raise ConfigError(f"a size must be at least 1 byte, not {value!r}", (), _SIZE_HINT)
    return size


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """The file cache of one embedder. ``None`` limits are unlimited; ``ttl`` is seconds since an entry was
    written (hits do not extend it: a stale vector stays stale however often it is read)."""

    dir: str
    max_file_number: int | None = None
    max_cache_size: int | None = None
    ttl: float | None = None


@dataclass(frozen=True, slots=True)
class EmbeddingConfig:
    """One ``embeddings.<name>`` entry. ``model`` is empty for ``hashing``; ``base_url`` and ``api_key_env``
    are ``None`` unless the provider is ``openai``."""

    provider: str
    dimensions: int = DEFAULT_DIMENSIONS
    batch_size: int = DEFAULT_BATCH_SIZE
    model: str = ""
    cache: CacheConfig | None = None
    base_url: str | None = None
    api_key_env: str | None = None


@dataclass(frozen=True, slots=True)
class LongTermConfig:
    """``memory.<name>.long_term``: which embedder, how many hits to retrieve, where the store lives, and
    whether retrieval runs before each reply (``auto``) or when the agent calls the recall tool (``tool``)."""

    embedding: str
    store: str
    top_k: int = DEFAULT_TOP_K
    retrieval: str = "auto"


def _positive_int(raw: Mapping[str, Any], key: str, where: str, default: int | None) -> int | None:
    value = raw.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"{where}{key} must be a positive integer, not {value!r}", _path(where, key), "write a whole number >= 1"
        )
    return value


def _optional_str(raw: Mapping[str, Any], key: str, where: str) -> str | None:
    value = raw.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError(f"{where}{key} must be a non-empty string, not {value!r}", _path(where, key), "write a name")
    return value


def parse_cache_config(raw: Mapping[str, Any]) -> CacheConfig:
    directory = raw.get("dir")
    if not isinstance(directory, str) or not directory:
        raise ConfigError(
            f"cache.dir must be a non-empty string, not {directory!r}",
            ("cache", "dir"),
            "name the cache's folder, e.g. dir: .runner/cache/embeddings",
        )
    size = raw.get("max_cache_size")
    try:
        max_size = None if size is None else parse_size(size)
    except ValueError as exc:
        raise ConfigError(f"cache.max_cache_size: {exc}", ("cache", "max_cache_size"), _SIZE_HINT) from exc
    ttl = raw.get("ttl")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl <= 0):
        raise ConfigError(
            f"cache.ttl must be a positive number of seconds, not {ttl!r}",
            ("cache", "ttl"),
            "seconds an entry stays fresh, e.g. 86400 for a day; leave it out for no limit",
        )
    return CacheConfig(
        dir=directory,
        max_file_number=_positive_int(raw, "max_file_number", "cache.", None),
        max_cache_size=max_size,
        ttl=None if ttl is None else float(ttl),
    )


def parse_embedding_config(raw: Mapping[str, Any]) -> EmbeddingConfig:
    """The record for one ``embeddings.<name>`` mapping, defaults applied."""
    provider = raw.get("provider", "hashing")
    kind = EMBEDDER_SETTINGS.get(provider) if isinstance(provider, str) else None
    if kind is None:
        raise ConfigError(
            f"provider must be one of {', '.join(PROVIDERS)}, not {provider!r}",
            ("provider",),
            f"use one of: {', '.join(PROVIDERS)}",
        )
    model = _optional_str(raw, "model", "")
    if kind.model_example is not None and model is None:
        raise ConfigError(
            f"model is required for provider {provider} (e.g. {kind.model_example})",
            (),
            "add model: the name the endpoint knows the embedding model by",
        )
    for key in _OWN_KEYS:
        if key in raw and key not in kind.own_keys:
            takers = [name for name, other in EMBEDDER_SETTINGS.items() if key in other.own_keys]
            raise ConfigError(
                f"{key} applies only to provider {' or '.join(takers)}, not {provider}",
                (key,),
                f"remove {key}, or set provider: {takers[0]}",
            )
    dimensions = _positive_int(raw, "dimensions", "", DEFAULT_DIMENSIONS)
    batch_size = _positive_int(raw, "batch_size", "", DEFAULT_BATCH_SIZE)
    assert dimensions is not None and batch_size is not None  # defaults are given
    cache_raw = raw.get("cache")
    if cache_raw is not None and not isinstance(cache_raw, Mapping):
        raise ConfigError(
            f"cache must be a mapping with at least 'dir', not {cache_raw!r}",
            ("cache",),
            "write cache: {dir: .runner/cache/embeddings}",
        )
    return EmbeddingConfig(
        provider=provider,
        dimensions=dimensions,
        batch_size=batch_size,
        model=model or "",
        cache=None if cache_raw is None else parse_cache_config(cache_raw),
        base_url=_optional_str(raw, "base_url", ""),
        api_key_env=_optional_str(raw, "api_key_env", ""),
    )


def parse_long_term(raw: Mapping[str, Any]) -> LongTermConfig:
    """The record for one ``memory.<name>.long_term`` mapping, defaults applied."""
    embedding = _optional_str(raw, "embedding", "")
    store = _optional_str(raw, "store", "")
    if embedding is None:
        raise ConfigError("embedding is required: the name of an entry under embeddings:", (), "add embedding: <name>")
    if store is None:
        raise ConfigError(
            "store is required: the folder that keeps the memory between runs",
            (),
            "add store: .runner/memory/<name>",
        )
    retrieval = raw.get("retrieval", "auto")
    if retrieval not in RETRIEVAL_MODES:
        raise ConfigError(
            f"retrieval must be one of {', '.join(RETRIEVAL_MODES)}, not {retrieval!r}",
            ("retrieval",),
            f"use one of: {', '.join(RETRIEVAL_MODES)}",
        )
    top_k = _positive_int(raw, "top_k", "", DEFAULT_TOP_K)
    assert top_k is not None
    return LongTermConfig(embedding=embedding, store=store, top_k=top_k, retrieval=retrieval)
