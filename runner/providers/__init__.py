"""Provider registry: a provider's name maps to how its settings are parsed and how it is built.

The schema's ``provider`` enum must list exactly these names (a test pins it). Factories are named by
import path and imported only when a run needs them, so ``runner validate`` never imports httpx.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from runner.config import scripted as scripted_config
from runner.config.source import Loc, TemplateSrc

TemplateFactory = Callable[[tuple[str | int, ...]], TemplateSrc]
"""Given a key path relative to the model's mapping, the template found there, with its location."""


@dataclass(frozen=True)
class ProviderType:
    name: str
    parse: Callable[[Mapping[str, Any], TemplateFactory, Loc], Any]
    factory: str  # "module:callable"; callable(name, config) -> ChatProvider

    def load_factory(self) -> Callable[..., Any]:
        module, _, attr = self.factory.partition(":")
        factory: Callable[..., Any] = getattr(importlib.import_module(module), attr)
        return factory


def _parse_openai(raw: Mapping[str, Any], template: TemplateFactory, loc: Loc) -> Any:
    from runner.config.openai import parse_openai_model  # noqa: PLC0415

    return parse_openai_model(raw)


PROVIDERS: dict[str, ProviderType] = {
    "openai": ProviderType("openai", _parse_openai, "runner.providers.openai:OpenAIChatProvider"),
    "scripted": ProviderType("scripted", scripted_config.parse_scripted, "runner.providers.scripted:ScriptedProvider"),
}
