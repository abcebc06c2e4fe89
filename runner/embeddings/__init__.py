"""Embeddings: the offline hashing embedder, the file cache and long-term vector memory.

Their settings are records of :mod:`runner.config.embeddings`; numpy is imported by these modules only, so
a workflow without embeddings or memory never pays for it. :data:`EMBEDDERS` maps an embedding provider's
name (the schema's ``provider`` under ``embeddings:``) to the factory that builds it; its settings are parsed
by :data:`runner.config.embeddings.EMBEDDER_SETTINGS` under the same names (``tests/test_registries.py``
pins both to the schema). Factories are named by import path, imported when a run opens an embedder.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:
    import httpx

    from runner.config.embeddings import EmbeddingConfig
    from runner.embedder import Embedder


class EmbedderFactory(Protocol):
    """The embedder of ``embeddings.<name>`` from its common record and its provider's own (``settings``,
    None for a provider without one). ``transport`` is the httpx transport an HTTP embedder sends through
    instead of its own; an embedder that sends nothing ignores it."""

    def __call__(
        self,
        name: str,
        config: EmbeddingConfig,
        settings: Any,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> Embedder: ...


@dataclass(frozen=True)
class EmbedderType:
    """One embedding provider: ``factory`` is ``"module:callable"``, an :class:`EmbedderFactory`."""

    name: str
    factory: str

    def load_factory(self) -> EmbedderFactory:
        module, _, attr = self.factory.partition(":")
        return cast(EmbedderFactory, getattr(importlib.import_module(module), attr))

    def open(
        self, name: str, config: EmbeddingConfig, settings: Any, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> Embedder:
        return self.load_factory()(name, config, settings, transport=transport)


EMBEDDERS: dict[str, EmbedderType] = {
    "hashing": EmbedderType("hashing", "runner.embeddings.hashing:open_embedder"),
    "openai": EmbedderType("openai", "runner.providers.openai_embeddings:open_embedder"),
}
