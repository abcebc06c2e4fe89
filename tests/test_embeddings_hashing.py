"""The offline hashing embedder, and the embeddings settings: config records and schema definitions."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from runner.config.embeddings import (
    SIZE_PATTERN,
    CacheConfig,
    EmbeddingConfig,
    LongTermConfig,
    parse_embedding_config,
    parse_long_term,
)
from runner.embedder import make_cache_key
from runner.embeddings.hashing import HashingEmbedder
from tests.conftest import schema_def

ROOT = Path(__file__).resolve().parent.parent


# -- the hashing embedder ---------------------------------------------------------------------------


def test_shape_dtype_and_unit_rows() -> None:
    vectors = asyncio.run(HashingEmbedder(96).embed(["The cat sat on the mat.", "x", "Ünïcödé straße 東京"]))
    assert vectors.shape == (3, 96) and vectors.dtype == np.float32 and vectors.flags.c_contiguous
    assert np.linalg.norm(vectors, axis=1).tolist() == pytest.approx([1.0, 1.0, 1.0], abs=1e-6)
    assert asyncio.run(HashingEmbedder(8).embed([])).shape == (0, 8)


def test_texts_without_words_embed_to_zero() -> None:
    vectors = HashingEmbedder(32).embed_sync(["", "   ", "?!-- ..."])
    assert not vectors.any()


def test_the_features_are_pinned() -> None:
    # "ab" has the word "ab" (weight 1) and the character n-grams " ab", "ab " and " ab " (weight 0.5
    # each), so its unit vector is (-2, -1, -1, -1) / sqrt(7) spread over four hashed columns.
    # If this fails the hashing changed: bump HASHING_VERSION so cached vectors are not mixed up.
    [vector] = HashingEmbedder(64).embed_sync(["ab"])
    columns = np.nonzero(vector)[0]
    assert columns.tolist() == [0, 27, 38, 63]
    assert vector[columns].tolist() == pytest.approx([-1 / 7**0.5] * 3 + [-2 / 7**0.5], abs=1e-6)
    [longer] = HashingEmbedder(64).embed_sync(["Hello, world! Feature hashing of n-grams."])
    assert longer[:8].tolist() == pytest.approx(
        [-0.250873, -0.083624, -0.083624, -0.167248, 0.083624, -0.083624, 0.0, -0.167248], abs=1e-6
    )


def test_case_and_punctuation_do_not_matter() -> None:
    a, b = HashingEmbedder(64).embed_sync(["Hello, World!", "hello world"])
    assert a.tobytes() == b.tobytes()


def test_the_same_vector_in_every_process() -> None:
    code = (
        "import sys; from runner.embeddings.hashing import HashingEmbedder; "
        "sys.stdout.write(HashingEmbedder(48).embed_sync(['same text, any process']).tobytes().hex())"
    )
    outputs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        outputs.add(done.stdout)
    assert outputs == {HashingEmbedder(48).embed_sync(["same text, any process"]).tobytes().hex()}


def test_a_text_embeds_alike_alone_and_in_any_batch() -> None:
    embedder = HashingEmbedder(40)
    texts = [f"fact {i}: {'word ' * (i % 7)}end" for i in range(1100)]  # more than one internal chunk
    batch = embedder.embed_sync(texts)
    for i in (0, 1, 1023, 1024, 1099):
        assert batch[i].tobytes() == embedder.embed_sync([texts[i]]).tobytes()
    # Large batches are hashed in a worker thread; the result is the same.
    assert asyncio.run(embedder.embed(texts)).tobytes() == batch.tobytes()


def test_similar_texts_are_closer_than_unrelated_ones() -> None:
    vectors = HashingEmbedder(256).embed_sync(
        ["the cat sat on the mat", "a cat sat on a mat", "quarterly revenue rose by four percent"]
    )
    similar, unrelated = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert similar > 0.4 and abs(unrelated) < 0.15


def test_identity_and_bad_dimensions() -> None:
    embedder = HashingEmbedder(256)
    assert (embedder.dimensions, embedder.cache_key) == (256, "hashing/v1/256")
    assert make_cache_key("openai", "text-embedding-3-small", 512) == "openai/text-embedding-3-small/512"
    assert repr(embedder) == "HashingEmbedder(dimensions=256)"
    for bad in (0, -3, True, 2.0):
        with pytest.raises(ValueError) as info:
            HashingEmbedder(bad)  # type: ignore[arg-type]
        assert str(info.value) == f"dimensions must be a positive integer, not {bad!r}"
    asyncio.run(embedder.aclose())


# -- config records ---------------------------------------------------------------------------------


def test_hashing_defaults() -> None:
    assert parse_embedding_config({"provider": "hashing"}) == EmbeddingConfig(
        provider="hashing", dimensions=256, batch_size=64, model="", cache=None
    )


def test_a_full_entry() -> None:
    raw = {
        "provider": "openai",
        "model": "text-embedding-3-small",
        "dimensions": 512,
        "batch_size": 16,
        "base_url": "http://127.0.0.1:8080/v1",
        "api_key_env": "EMBED_KEY",
        "cache": {"dir": ".runner/cache", "max_file_number": 100, "max_cache_size": "1.5GiB", "ttl": 3600},
    }
    assert parse_embedding_config(raw) == EmbeddingConfig(
        provider="openai",
        dimensions=512,
        batch_size=16,
        model="text-embedding-3-small",
        cache=CacheConfig(dir=".runner/cache", max_file_number=100, max_cache_size=1_610_612_736, ttl=3600.0),
        base_url="http://127.0.0.1:8080/v1",
        api_key_env="EMBED_KEY",
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"provider": "word2vec"}, "provider must be one of hashing, openai, not 'word2vec'"),
        ({"provider": "openai"}, "model is required for provider openai (e.g. text-embedding-3-small)"),
        ({"provider": "hashing", "model": "x"}, "model applies only to provider openai, not hashing"),
        ({"provider": "hashing", "dimensions": 0}, "dimensions must be a positive integer, not 0"),
        ({"provider": "hashing", "batch_size": "8"}, "batch_size must be a positive integer, not '8'"),
        ({"provider": "hashing", "cache": "dir"}, "cache must be a mapping with at least 'dir', not 'dir'"),
        ({"provider": "hashing", "cache": {}}, "cache.dir must be a non-empty string, not None"),
        (
            {"provider": "hashing", "cache": {"dir": "c", "max_cache_size": "lots"}},
            "cache.max_cache_size: 'lots' is not a size: use bytes (4096) or a number with a unit "
            "(B, KB, MB, GB, TB, KiB, MiB, GiB, TiB), such as '256MB' or '1.5GiB'",
        ),
        (
            {"provider": "hashing", "cache": {"dir": "c", "max_file_number": 0}},
            "cache.max_file_number must be a positive integer, not 0",
        ),
        (
            {"provider": "hashing", "cache": {"dir": "c", "ttl": -1}},
            "cache.ttl must be a positive number of seconds, not -1",
        ),
    ],
)
def test_bad_entries(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_embedding_config(raw)
    assert str(info.value) == message


def test_long_term() -> None:
    assert parse_long_term({"embedding": "default", "store": ".runner/memory"}) == LongTermConfig(
        embedding="default", store=".runner/memory", top_k=5, retrieval="auto"
    )
    raw = {"embedding": "e", "store": "s", "top_k": 2, "retrieval": "tool"}
    assert parse_long_term(raw) == LongTermConfig("e", "s", 2, "tool")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"store": "s"}, "embedding is required: the name of an entry under embeddings:"),
        ({"embedding": "e"}, "store is required: the folder that keeps the memory between runs"),
        ({"embedding": "e", "store": "s", "retrieval": "always"}, "retrieval must be one of auto, tool, not 'always'"),
        ({"embedding": "e", "store": "s", "top_k": 0}, "top_k must be a positive integer, not 0"),
    ]
    for bad, message in cases:
        with pytest.raises(ValueError) as info:
            parse_long_term(bad)
        assert str(info.value) == message


def test_the_config_module_does_not_import_numpy() -> None:
    code = "import sys, runner.config.embeddings; print('numpy' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout) == (0, "False\n"), done.stderr


# -- schema definitions -----------------------------------------------------------------------------


def load(name: str) -> dict[str, Any]:
    return schema_def({"embeddings.schema.json": "hashingEmbedding", "long_term.schema.json": "longTerm"}[name])


def described(node: Any, where: str = "$") -> list[str]:
    """Paths of properties without a description."""
    missing: list[str] = []
    if isinstance(node, dict):
        for name, sub in node.get("properties", {}).items():
            if isinstance(sub, dict) and "description" not in sub and "$ref" not in sub:
                missing.append(f"{where}.{name}")
        for key, sub in node.items():
            if key != "if":  # conditions name properties without describing them
                missing += described(sub, f"{where}.{key}")
    elif isinstance(node, list):
        for i, sub in enumerate(node):
            missing += described(sub, f"{where}[{i}]")
    return missing


@pytest.mark.parametrize("name", ["embeddings.schema.json", "long_term.schema.json"])
def test_definitions_are_valid_and_described(name: str) -> None:
    schema = load(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert described(schema) == []


def errors(schema: dict[str, Any], instance: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema)
    return sorted(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(instance))


def test_the_embeddings_definition_accepts_and_rejects() -> None:
    schema = load("embeddings.schema.json")
    assert schema["$defs"]["size"]["oneOf"][1]["pattern"] == SIZE_PATTERN
    good_cache = {"dir": "c", "max_file_number": 10, "max_cache_size": "256MB", "ttl": 60}
    assert errors(schema, {"provider": "hashing", "dimensions": 128, "cache": good_cache}) == []
    assert errors(schema, {"provider": "hashing", "cache": {"dir": "c", "max_cache_size": 4096}}) == []
    openai = {"provider": "openai", "model": "m", "base_url": "http://127.0.0.1/v1", "dimensions": 8}
    assert errors(schema, openai) == []
    assert errors(schema, {"provider": "openai"}) == [
        ": 'base_url' is a required property",
        ": 'dimensions' is a required property",
        ": 'model' is a required property",
    ]
    assert errors(schema, {"provider": "hashing", "model": "m"}) == ["model: 'm' should not be valid under {}"]
    assert errors(schema, {"provider": "hashing", "cache": {"dir": "c", "max_cache_size": "12 parsecs"}}) == [
        "cache/max_cache_size: '12 parsecs' is not valid under any of the given schemas"
    ]
    assert errors(schema, {"provider": "hashing", "colour": "red"}) == [
        ": Additional properties are not allowed ('colour' was unexpected)"
    ]


def test_the_size_pattern_agrees_with_the_parser() -> None:
    pattern = load("embeddings.schema.json")["$defs"]["size"]["oneOf"][1]
    for text in ("256MB", "1.5GiB", "4096", "10 kb", "2B", "3 TiB"):
        assert errors(pattern, text) == [], text
    for text in ("256 M", "MB", "1,5GB", "12 parsecs", "-1MB", ""):
        assert errors(pattern, text) != [], text


def test_the_long_term_definition() -> None:
    schema = load("long_term.schema.json")
    assert errors(schema, {"embedding": "default", "store": "s", "top_k": 3, "retrieval": "tool"}) == []
    assert errors(schema, {"embedding": "default"}) == [": 'store' is a required property"]
    assert errors(schema, {"embedding": "d", "store": "s", "retrieval": "sometimes"}) == [
        "retrieval: 'sometimes' is not one of ['auto', 'tool']"
    ]


def test_the_schema_enums_come_from_the_config_module() -> None:
    from runner.config.embeddings import PROVIDERS, RETRIEVAL_MODES

    assert load("embeddings.schema.json")["properties"]["provider"]["enum"] == list(PROVIDERS)
    assert load("long_term.schema.json")["properties"]["retrieval"]["enum"] == list(RETRIEVAL_MODES)
