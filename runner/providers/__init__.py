"""Chat model providers: a provider's name (the schema's ``provider`` under ``models:``) maps to the class
that runs it.

Its settings are parsed one layer down, by :data:`runner.config.models.MODEL_SETTINGS` under the same names;
``tests/test_registries.py`` pins both registries to the schema's choices. Factories are named by import
path and imported only when a run needs them, so ``runner validate`` never imports httpx.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from runner.providers.base import ChatProvider, ProviderFactory

if TYPE_CHECKING:
    import httpx


@dataclass(frozen=True)
class ProviderType:
    """One chat provider: ``factory`` is ``"module:callable"``, a :class:`~runner.providers.base.ProviderFactory`."""

    name: str
    factory: str

    def load_factory(self) -> ProviderFactory:
        module, _, attr = self.factory.partition(":")
        return cast(ProviderFactory, getattr(importlib.import_module(module), attr))

    def open(self, name: str, settings: Any, *, transport: httpx.AsyncBaseTransport | None = None) -> ChatProvider:
        """The provider of model ``name``, from its settings record; an HTTP provider sends through
        ``transport`` when one is given (``httpx.MockTransport`` in tests), else through its own."""
        return self.load_factory()(name, settings, transport=transport)


PROVIDERS: dict[str, ProviderType] = {  # in the schema's order
    "scripted": ProviderType("scripted", "runner.providers.scripted:ScriptedProvider"),
    "openai": ProviderType("openai", "runner.providers.openai:OpenAIChatProvider"),
}
