"""The model and embedder registries (issue 15): each pinned to the schema's choices on both of its sides (the
settings parsers at the config layer, the factories that run them), the model-settings contract that every
reader of a model's settings goes through, and the seams the registries give a program's tests."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from runner.config.embeddings import EMBEDDER_SETTINGS, parse_embedding_config
from runner.config.models import MODEL_SETTINGS, ModelSettings
from runner.config.openai import PoolConfig, RateLimitConfig
from runner.config.pricing import Pricing
from runner.config.source import Loc, TemplateSrc
from runner.embeddings import EMBEDDERS, EmbedderType
from runner.engine.resources import open_resources
from runner.logs import secret_env_names
from runner.plan.compile import compile_workflow
from runner.providers import PROVIDERS
from runner.report.layout import describe_workflow
from runner.retry import RetryPolicy
from runner.validate.check import check_workflow, load_workflow
from tests.conftest import ROOT

pytestmark = pytest.mark.timeout(20)

SCHEMA = json.loads((ROOT / "schemas" / "workflow.schema.json").read_text())


def choices(section: str) -> tuple[list[str], list[str]]:
    """The section's ``provider`` enum, and the providers its ``if``/``then`` branches describe."""
    entry = SCHEMA["properties"][section]["additionalProperties"]
    branches = [rule["if"]["properties"]["provider"]["const"] for rule in entry["allOf"]]
    return entry["properties"]["provider"]["enum"], branches


# -- pinned to the schema ------------------------------------------------------------------------------------
def test_the_model_registries_are_the_schemas_choices() -> None:
    enum, branches = choices("models")
    assert list(MODEL_SETTINGS) == list(PROVIDERS) == enum == branches
    assert all(kind.name == name for name, kind in MODEL_SETTINGS.items())
    assert all(kind.name == name for name, kind in PROVIDERS.items())


def test_the_embedder_registries_are_the_schemas_choices() -> None:
    enum, branches = choices("embeddings")
    assert list(EMBEDDER_SETTINGS) == list(EMBEDDERS) == enum == branches
    assert SCHEMA["$defs"]["hashingEmbedding"]["properties"]["provider"]["enum"] == enum
    assert all(kind.name == name for name, kind in EMBEDDER_SETTINGS.items())
    assert all(kind.name == name for name, kind in EMBEDDERS.items())


def test_an_embedders_own_keys_are_the_keys_its_schema_definition_adds() -> None:
    common = set(SCHEMA["$defs"]["hashingEmbedding"]["properties"]) - {"model", "base_url", "api_key_env"}
    assert set(EMBEDDER_SETTINGS["openai"].own_keys) <= set(SCHEMA["$defs"]["openaiEmbedding"]["properties"])
    assert not set(EMBEDDER_SETTINGS["openai"].own_keys) & common
    assert EMBEDDER_SETTINGS["hashing"].own_keys == ()


@pytest.mark.parametrize("name", list(PROVIDERS))
def test_every_provider_factory_takes_the_declared_arguments(name: str) -> None:
    factory = PROVIDERS[name].load_factory()
    inspect.signature(factory).bind("m", object(), transport=None)  # runner.providers.base.ProviderFactory


@pytest.mark.parametrize("name", list(EMBEDDERS))
def test_every_embedder_factory_takes_the_declared_arguments(name: str) -> None:
    factory = EMBEDDERS[name].load_factory()
    inspect.signature(factory).bind("e", object(), object(), transport=None)  # runner.embeddings.EmbedderFactory


MINIMAL = {
    "openai": {"provider": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m"},
    "scripted": {"provider": "scripted"},
}


@pytest.mark.parametrize("name", list(MODEL_SETTINGS))
def test_every_settings_record_keeps_the_model_settings_contract(name: str) -> None:
    assert set(MINIMAL) == set(MODEL_SETTINGS)
    kind = MODEL_SETTINGS[name]
    record = kind.parse(MINIMAL[name], lambda path: TemplateSrc("t", Loc("f", 1, 1)), Loc("f", 1, 1))
    assert type(record) is kind.record
    assert isinstance(record, ModelSettings)
    members = [m for m in vars(ModelSettings) if not m.startswith("_")]
    assert all(hasattr(kind.record, m) or m in {f.name for f in dataclasses.fields(kind.record)} for m in members)
    assert isinstance(record.templates(), tuple) and isinstance(record.turns, tuple)


# -- the contract is what the readers use ----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class GatewaySettings:
    """A settings record of a provider the house has never seen: only the ModelSettings contract."""

    api_key_env: str | None = "GATEWAY_KEY"
    remote_model: str | None = "big-model-2"
    context_window: int | None = 3000
    pool: PoolConfig | None = PoolConfig(max_connections=2)
    rate_limit: RateLimitConfig | None = RateLimitConfig(requests_per_minute=60)
    retry: RetryPolicy | None = RetryPolicy(max_attempts=3)
    pricing: Pricing | None = Pricing(input=3.0, output=15.0)
    turns: tuple[Any, ...] = ()

    def templates(self) -> tuple[TemplateSrc, ...]:
        return ()


WORKFLOW = """\
version: 1
name: registries
models:
  main: {provider: scripted}
embeddings:
  e: {provider: openai, base_url: "http://embed.invalid/v1", model: emb-1, dimensions: 3, api_key_env: EMBED_KEY}
memory:
  brief:
    max_total_tokens: 300
    long_term: {embedding: e, store: store}
agents:
  a: {model: main, memory: brief}
stages:
  - id: fan
    input: "hello"
    fanout: {for_each: [1, 2, 3], agent: a, max_concurrency: 8}
"""


def with_gateway(tmp_path: Path) -> Any:
    path = tmp_path / "wf.yaml"
    path.write_text(WORKFLOW)
    wf = load_workflow(path)
    models = {"main": dataclasses.replace(wf.models["main"], provider="gateway", config=GatewaySettings())}
    return dataclasses.replace(wf, models=models)


def test_the_report_reads_a_models_settings_through_the_contract(tmp_path: Path) -> None:
    layout = describe_workflow(with_gateway(tmp_path))
    shape = layout.models["main"]
    assert (shape.model, shape.max_connections, shape.requests_per_minute, shape.max_attempts) == (
        "big-model-2",
        2,
        60,
        3,
    )
    assert shape.pricing == Pricing(input=3.0, output=15.0)
    assert layout.secrets_env == ("GATEWAY_KEY",)


def test_the_secrets_are_found_through_the_contract(tmp_path: Path) -> None:
    assert secret_env_names(with_gateway(tmp_path)) == ["EMBED_KEY", "GATEWAY_KEY"]


def test_validate_reads_the_pool_and_the_context_window_through_the_contract(tmp_path: Path) -> None:
    problems = check_workflow(with_gateway(tmp_path))
    assert [(p.rule, p.message) for p in problems] == [
        (
            "concurrency-above-pool",
            "fan-out 'fan' runs up to 8 calls at once, but model 'main' has a pool of 2 connections",
        ),
        (
            "memory-budget",
            "memory 'brief' keeps 300 tokens, 10% of the 3000-token context window of model 'main' (agent 'a')",
        ),
    ]


# -- the registries are the seams ------------------------------------------------------------------------------
def test_a_run_opens_its_embedders_through_the_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The openai entry is replaced by a factory a test owns: the run builds what the registry says, passing
    the embedder's name, common record and own settings (issue 15: this was an if-chain on the name)."""
    opened: list[tuple[str, Any, Any]] = []
    monkeypatch.setitem(EMBEDDERS, "openai", EmbedderType("openai", f"{__name__}:recording_embedder"))
    monkeypatch.setattr(f"{__name__}.OPENED", opened)
    plan = compile_workflow(with_gateway(tmp_path))
    resources = open_resources(plan, tmp_path / "run")
    assert [(name, config.dimensions, settings.model) for name, config, settings in opened] == [("e", 3, "emb-1")]
    asyncio.run(resources.aclose())


OPENED: list[tuple[str, Any, Any]] = []


def recording_embedder(name: str, config: Any, settings: Any, *, transport: Any = None) -> Any:
    from runner.embeddings.hashing import HashingEmbedder

    OPENED.append((name, config, settings))
    return HashingEmbedder(config.dimensions)


def test_an_embedder_sends_through_a_given_transport(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``open_resources(..., transport=)``: the seam a program's tests use for embedders, as for models."""
    monkeypatch.setenv("EMBED_KEY", "embed-key-0123456789")
    seen: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append((str(request.url), body["input"]))
        data = [{"index": i, "embedding": [1.0, 0.0, float(i)]} for i in range(len(body["input"]))]
        return httpx.Response(200, json={"data": data})

    plan = compile_workflow(with_gateway(tmp_path))
    resources = open_resources(plan, tmp_path / "run", transport=httpx.MockTransport(handler))

    async def embed() -> Any:
        try:
            return await resources.embedders["e"].embed(["one", "two"])
        finally:
            await resources.aclose()

    vectors = asyncio.run(embed())
    assert seen == [("http://embed.invalid/v1/embeddings", ["one", "two"])]
    assert np.array_equal(vectors, np.array([[1, 0, 0], [1, 0, 1]], dtype=np.float32))


def test_the_embedding_settings_messages_come_from_the_registry() -> None:
    with pytest.raises(ValueError) as info:
        parse_embedding_config({"provider": "hashing", "base_url": "http://h/v1"})
    assert str(info.value) == "base_url applies only to provider openai, not hashing"
    with pytest.raises(ValueError) as info:
        parse_embedding_config({"provider": "openai"})
    assert str(info.value) == "model is required for provider openai (e.g. text-embedding-3-small)"
    with pytest.raises(ValueError) as info:
        parse_embedding_config({"provider": ["openai"]})
    assert str(info.value) == "provider must be one of hashing, openai, not ['openai']"
