"""The OpenAI-compatible embedder (``POST {base_url}/embeddings``): batches of texts in, a float32 matrix out,
over the same endpoint machinery (pool, timeouts, retries, rate limit) as a chat model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from runner.config.embeddings import EmbeddingConfig
from runner.config.openai import OpenAIEmbeddingConfig
from runner.dispatch import run_all
from runner.embedder import Vectors, make_cache_key
from runner.events import Recorder
from runner.providers.endpoint import Endpoint
from runner.providers.openai_wire import dumps
from runner.providers.proxy import display_url
from runner.providers.transport import Body

if TYPE_CHECKING:
    import httpx


class OpenAIEmbedder:
    """An embedding model behind an OpenAI-compatible ``/embeddings`` endpoint (implements the
    embedder protocol: ``embed``, ``dimensions``, ``cache_key``, ``aclose``).

    ``embed(texts)`` sends ``config.batch_size`` texts per request, at most ``config.max_concurrency``
    requests at once, with the same pool, timeouts, retries and rate limits as a chat model, and returns a
    C-contiguous float32 array of shape ``(len(texts), config.dimensions)``, rows in input order. Events
    (``retry``, ``rate_wait``, ``pool_wait``) go to ``recorder`` under the node id ``embeddings.<name>``.
    """

    def __init__(
        self,
        name: str,
        config: OpenAIEmbeddingConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        recorder: Recorder | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.recorder = recorder
        self._node_id = f"embeddings.{name}"
        self._endpoint = Endpoint.of(f"embeddings {name!r}", config, transport, source=("embeddings", name))

    def __repr__(self) -> str:
        c = self.config
        return f"OpenAIEmbedder({self.name!r}, model={c.model!r}, base_url={display_url(c.base_url)!r})"

    @property
    def dimensions(self) -> int:
        return self.config.dimensions

    @property
    def cache_key(self) -> str:
        return make_cache_key("openai", self.config.model, self.config.dimensions)

    async def aclose(self) -> None:
        await self._endpoint.aclose()

    async def embed(self, texts: Sequence[str]) -> Vectors:
        dim = self.config.dimensions
        out = np.empty((len(texts), dim), dtype=np.float32)
        if not texts:
            return out
        size = self.config.batch_size

        async def one(k: int) -> None:
            batch = list(texts[k * size : (k + 1) * size])
            out[k * size : k * size + len(batch)] = await self._batch(batch)

        # At most max_concurrency batches at once; after a failure (a 400 on one batch) no further batch is
        # sent, and the first error is raised as itself (callers expect one ProviderError, not a group).
        await run_all(-(-len(texts) // size), one, limit=self.config.max_concurrency)
        return out

    async def _batch(self, batch: list[str]) -> Vectors:
        body: dict[str, Any] = {"model": self.config.model, "input": batch, "encoding_format": "float"}
        if self.config.send_dimensions:
            body["dimensions"] = self.config.dimensions
        ep = self._endpoint
        request = ep.request("/embeddings", body, dumps(body))

        async def once(attempt: int) -> Vectors:
            content = await ep.post_json(request, self.recorder, self._node_id)
            return self._parse(content, len(batch))

        estimate = sum(len(t) for t in batch) / 4
        # counted at the estimate: an embedding request's tokens are its input, which the estimate covers
        free = ep.answered(request)  # a replayed answer: no rate-limit budget
        vectors, _ = await ep.run(once, node_id=self._node_id, recorder=self.recorder, tokens=estimate, free=free)
        return vectors

    def _parse(self, content: Body, count: int) -> Vectors:
        dim = self.config.dimensions
        try:
            data = content.json()["data"]
            rows = sorted(data, key=lambda item: item["index"])
            matrix = np.asarray([row["embedding"] for row in rows], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as exc:
            snippet = content.content[:200].decode("utf-8", errors="replace")
            raise self._endpoint.errors.protocol_error(
                f"the answer is not an embedding list ({type(exc).__name__}: {exc}): {snippet!r}"
            ) from exc
        if matrix.shape != (count, dim):
            got = matrix.shape[1] if matrix.ndim == 2 else "?"
            if matrix.ndim == 2 and matrix.shape[0] == count:
                raise self._endpoint.errors.protocol_error(
                    f"the server returned vectors of {got} dimensions, but dimensions is {dim}: set "
                    f"dimensions to {got}"
                    + (
                        ""
                        if self.config.send_dimensions
                        else " (or send_dimensions: true if the model can shorten them)"
                    )
                )
            found = matrix.shape[0] if matrix.ndim else 0
            raise self._endpoint.errors.protocol_error(f"the server returned {found} vectors for {count} texts")
        return matrix


def open_embedder(
    name: str,
    config: EmbeddingConfig,
    settings: OpenAIEmbeddingConfig,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> OpenAIEmbedder:
    """The ``openai`` entry of :data:`runner.embeddings.EMBEDDERS`: the endpoint's settings are its own record
    (``config``, the common one, holds nothing it reads besides what ``settings`` repeats)."""
    return OpenAIEmbedder(name, settings, transport=transport)
