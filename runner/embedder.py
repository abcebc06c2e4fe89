"""What every embedder offers: a batch of texts in, a float32 matrix out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]


def make_cache_key(provider: str, model: str, dimensions: int) -> str:
    """The identity of an embedder's output space: two embedders with the same key give the same vector for
    the same text, so they may share cache files and long-term stores."""
    return f"{provider}/{model}/{dimensions}"


class Embedder(Protocol):
    """An embedding model. One instance per ``embeddings.<name>`` entry, shared by every user, closed
    (``aclose``) on every exit path.

    ``embed`` returns a C-contiguous float32 array of shape ``(len(texts), dimensions)``, one row per text in
    order; an empty batch gives shape ``(0, dimensions)``. Rows need not be normalised (users that need unit
    vectors normalise). ``cache_key`` is :func:`make_cache_key` of provider, model and dimensions: the file
    cache and the long-term store use it to keep vectors of different spaces apart.
    """

    @property
    def dimensions(self) -> int: ...

    @property
    def cache_key(self) -> str: ...

    async def embed(self, texts: Sequence[str]) -> Vectors: ...

    async def aclose(self) -> None: ...
