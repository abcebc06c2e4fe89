"""Embeddings: the offline hashing embedder, the file cache and long-term vector memory (issue 6).

The names are loaded on first use (PEP 562) so that importing :mod:`runner.embeddings.config`, which
``runner validate`` does, does not import numpy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.embeddings.base import Embedder, Vectors, make_cache_key
    from runner.embeddings.cache import CachedEmbedder, EmbeddingCache, EmbeddingStats, parse_size
    from runner.embeddings.config import (
        CacheConfig,
        EmbeddingConfig,
        LongTermConfig,
        parse_embedding_config,
        parse_long_term,
    )
    from runner.embeddings.hashing import HashingEmbedder
    from runner.embeddings.store import Hit, VectorStore, format_hits, recall_tool_spec

__all__ = [
    "CacheConfig",
    "CachedEmbedder",
    "Embedder",
    "EmbeddingCache",
    "EmbeddingConfig",
    "EmbeddingStats",
    "HashingEmbedder",
    "Hit",
    "LongTermConfig",
    "VectorStore",
    "Vectors",
    "format_hits",
    "make_cache_key",
    "parse_embedding_config",
    "parse_long_term",
    "parse_size",
    "recall_tool_spec",
]

_MODULE_OF = {
    "Embedder": "base",
    "Vectors": "base",
    "make_cache_key": "base",
    "CachedEmbedder": "cache",
    "EmbeddingCache": "cache",
    "EmbeddingStats": "cache",
    "parse_size": "config",
    "CacheConfig": "config",
    "EmbeddingConfig": "config",
    "LongTermConfig": "config",
    "parse_embedding_config": "config",
    "parse_long_term": "config",
    "HashingEmbedder": "hashing",
    "Hit": "store",
    "VectorStore": "store",
    "format_hits": "store",
    "recall_tool_spec": "store",
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
