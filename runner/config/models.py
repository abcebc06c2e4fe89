"""Model settings: the contract every ``models.<name>`` record keeps, and the registry of their parsers.

:class:`ModelSettings` is what the rest of the house reads from a model's settings whatever its provider:
``runner validate``'s rules (the context window, the pool, the templates a scripted model renders), the
report's model table (remote name, pool, rate limit, retries) and secret redaction (the key's variable).
Each provider's record implements it, answering ``None`` or ``()`` for what it does not have.

:data:`MODEL_SETTINGS` maps a provider's name (the schema's ``provider`` under ``models:``) to its record
type and parser; :data:`runner.providers.PROVIDERS` maps the same names to the classes that run them.
``tests/test_registries.py`` pins both to the schema's choices. Light on imports: ``runner validate`` reads
this module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from runner.config.openai import OpenAIModelConfig, PoolConfig, RateLimitConfig, parse_openai_model
from runner.config.pricing import Pricing
from runner.config.responses import parse_response_cache
from runner.config.scripted import ScriptedConfig, ScriptedTurn, parse_scripted
from runner.config.source import Loc, TemplateSrc
from runner.retry import RetryPolicy

TemplateFactory = Callable[[tuple[str | int, ...]], TemplateSrc]
"""Given a key path relative to the model's mapping, the template found there, with its location."""


@runtime_checkable
class ModelSettings(Protocol):
    """The settings record of one ``models.<name>`` entry, as every reader other than its provider sees it."""

    @property
    def api_key_env(self) -> str | None:
        """The environment variable holding the model's key (None: it needs none)."""
        ...

    @property
    def remote_model(self) -> str | None:
        """The name the endpoint knows the model by (None: a model runner simulates)."""
        ...

    @property
    def context_window(self) -> int | None:
        """Tokens, when the file declares them (for ``runner validate``'s memory-budget check)."""
        ...

    @property
    def pool(self) -> PoolConfig | None:
        """The connection pool of the model's client (None: it makes no connections)."""
        ...

    @property
    def rate_limit(self) -> RateLimitConfig | None:
        """The client-side rate limit (None: the provider has none)."""
        ...

    @property
    def pricing(self) -> Pricing | None:
        """US dollars per million tokens, when the file declares them (None: its calls are unpriced)."""
        ...

    @property
    def retry(self) -> RetryPolicy | None:
        """How the provider retries a failed call (None: it never does)."""
        ...

    @property
    def turns(self) -> tuple[ScriptedTurn, ...]:
        """What a scripted model does call by call within an agent's turn (``()`` for any other model)."""
        ...

    def templates(self) -> tuple[TemplateSrc, ...]:
        """The reply and failure templates the model renders with its callers' context (tool-call
        arguments, located per argument, are in :attr:`turns`)."""
        ...


@dataclass(frozen=True)
class ModelSettingsType:
    """One provider's settings: the record type it parses to, and the parser. ``parse(raw, template, loc)``
    takes the schema-valid mapping, a factory of the templates in it and the mapping's location; it raises
    :class:`~runner.errors.ConfigError` at the key it refuses."""

    name: str
    record: type[ModelSettings]
    parse: Callable[[Mapping[str, Any], TemplateFactory, Loc], ModelSettings]


def _parse_openai(raw: Mapping[str, Any], template: TemplateFactory, loc: Loc) -> OpenAIModelConfig:
    config = parse_openai_model(raw)  # templates are not sent: a real model's messages are rendered by the agent
    cache = parse_response_cache(raw)
    return config if cache is None else dataclasses.replace(config, cache=cache)


MODEL_SETTINGS: dict[str, ModelSettingsType] = {  # in the schema's order
    "scripted": ModelSettingsType("scripted", ScriptedConfig, parse_scripted),
    "openai": ModelSettingsType("openai", OpenAIModelConfig, _parse_openai),
}
