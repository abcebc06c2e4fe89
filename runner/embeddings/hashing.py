"""The built-in offline embedder: feature hashing of word and character n-grams (issue 6).

Each text is lower-cased and cut into words (``\\w+``). Its features are the words, the pairs of adjacent
words, and the character 3-, 4- and 5-grams of the words joined by single spaces and padded with a space
at both ends (so ``" ca"`` marks a word start). Every feature is hashed to 64 bits; the hash picks a
column and a sign (signed hashing keeps the inner product unbiased), the signed, weighted counts are
summed and each row is L2-normalised. A text without words embeds to the zero vector.

The hashes are defined here, not taken from Python's ``hash()`` (salted per process): the same text gives
the same vector in every process, on every platform, which is what lets a file cache and a long-term
store keep these vectors between runs. Any change to the features or hashes must bump
:data:`HASHING_VERSION`, which is part of the cache key, so stale vectors are never mixed with new ones.
"""

from __future__ import annotations

import asyncio
import re
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from runner.config.embeddings import EmbeddingConfig
from runner.embedder import Vectors, make_cache_key

HASHING_VERSION = "v1"
CHAR_NGRAMS = (3, 4, 5)
WORD_WEIGHT = 1.0
BIGRAM_WEIGHT = 1.0
CHAR_WEIGHT = 0.5

_WORD = re.compile(r"\w+")
# Batches with more characters than this are hashed in a worker thread: about 5 ms of numpy work, the
# most we let one call hold the event loop (measured in bench/embedding_cache.py).
_OFFLOAD_CHARS = 20_000
# Texts hashed per numpy pass; bounds the (texts x dimensions) float64 scratch matrix.
_CHUNK = 1024

_U64 = np.uint64
_MUL1 = _U64(0xBF58476D1CE4E5B9)
_MUL2 = _U64(0x94D049BB133111EB)
_PRIME = _U64(0x100000001B3)
_WORD_TAG = 1 << 40
_BIGRAM_TAG = 2 << 40


def _mix(z: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """The splitmix64 finaliser: spreads every input bit over the whole word (arrays wrap silently)."""
    z = z ^ (z >> _U64(30))
    z = z * _MUL1
    z = z ^ (z >> _U64(27))
    z = z * _MUL2
    return z ^ (z >> _U64(31))


def _crc(text: str) -> int:
    return zlib.crc32(text.encode("utf-8", "surrogatepass"))


class HashingEmbedder:
    """Deterministic, offline embeddings by feature hashing; numpy only. See the module docstring."""

    def __init__(self, dimensions: int) -> None:
        if isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1:
            raise ValueError(f"dimensions must be a positive integer, not {dimensions!r}")
        self._dimensions = dimensions
        self._cache_key = make_cache_key("hashing", HASHING_VERSION, dimensions)

    @property
    def dimensions(self) -> int:
        return self._dimensions

    @property
    def cache_key(self) -> str:
        return self._cache_key

    def __repr__(self) -> str:
        return f"HashingEmbedder(dimensions={self._dimensions})"

    async def embed(self, texts: Sequence[str]) -> Vectors:
        if sum(len(t) for t in texts) > _OFFLOAD_CHARS:
            return await asyncio.to_thread(self.embed_sync, texts)
        return self.embed_sync(texts)

    async def aclose(self) -> None:
        return None

    def embed_sync(self, texts: Sequence[str]) -> Vectors:
        """:meth:`embed` without the event loop, for threads and scripts."""
        out = np.empty((len(texts), self._dimensions), dtype=np.float32)
        for start in range(0, len(texts), _CHUNK):
            out[start : start + _CHUNK] = self._embed_chunk(texts[start : start + _CHUNK])
        return out

    def _embed_chunk(self, texts: Sequence[str]) -> npt.NDArray[np.float64]:
        d = self._dimensions
        joined = [" ".join(_WORD.findall(text.lower())) for text in texts]

        word_rows: list[int] = []
        word_keys: list[int] = []
        word_weights: list[float] = []
        for row, line in enumerate(joined):
            if not line:
                continue
            words = line.split(" ")
            for word in words:
                word_rows.append(row)
                word_keys.append(_crc(word) | _WORD_TAG)
                word_weights.append(WORD_WEIGHT)
            for left, right in zip(words, words[1:], strict=False):
                word_rows.append(row)
                word_keys.append(_crc(f"{left} {right}") | _BIGRAM_TAG)
                word_weights.append(BIGRAM_WEIGHT)

        # Character n-grams of all texts at once: the padded texts are concatenated and a window counts
        # only when its first and last characters belong to the same text.
        padded = [f" {line} " for line in joined]
        codes = np.frombuffer("".join(padded).encode("utf-32-le", "surrogatepass"), dtype="<u4").astype(_U64)
        owner = np.repeat(np.arange(len(texts), dtype=np.int64), [len(p) for p in padded])
        rows = [np.asarray(word_rows, dtype=np.int64)]
        keys = [np.asarray(word_keys, dtype=_U64)]
        weights = [np.asarray(word_weights, dtype=np.float64)]
        for n in CHAR_NGRAMS:
            count = len(codes) - n + 1
            if count <= 0:
                continue
            h = np.full(count, n, dtype=_U64)
            for j in range(n):
                h = h * _PRIME + codes[j : j + count]
            same = owner[:count] == owner[n - 1 :]
            rows.append(owner[:count][same])
            keys.append(h[same])
            weights.append(np.full(int(same.sum()), CHAR_WEIGHT))

        mixed = _mix(np.concatenate(keys))
        column = (mixed % _U64(d)).astype(np.int64)
        sign = np.where((mixed >> _U64(63)) == 0, 1.0, -1.0)
        flat = np.concatenate(rows) * d + column
        summed = np.bincount(flat, weights=np.concatenate(weights) * sign, minlength=len(texts) * d)
        matrix = np.asarray(summed, dtype=np.float64).reshape(len(texts), d)
        norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix))
        np.divide(matrix, norms[:, None], out=matrix, where=norms[:, None] > 0)
        return matrix


def open_embedder(name: str, config: EmbeddingConfig, settings: Any, *, transport: object = None) -> HashingEmbedder:
    """The ``hashing`` entry of :data:`runner.embeddings.EMBEDDERS`: all it needs is ``config.dimensions``
    (it has no settings of its own, and sends nothing through a transport)."""
    return HashingEmbedder(config.dimensions)
