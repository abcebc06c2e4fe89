"""What every chat model provider offers the engine, and what the engine hands to each call.

Messages use the OpenAI chat wire shape (``{"role", "content", "name", "tool_calls", "tool_call_id"}``)
because nearly every endpoint speaks it; providers that do not convert at their edge.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from runner.calls import ChatResult
from runner.config.output import OutputSpec
from runner.events import Recorder

if TYPE_CHECKING:
    import httpx

Message = dict[str, Any]


@dataclass(slots=True)
class CallContext:
    """Who is calling, and where streamed text and events go.

    ``template_vars`` is the calling stage's template context (``inputs``, ``vars``, ``agent``, ``input``,
    ...); the scripted provider renders its reply with it. ``output``: the structured output asked for.
    ``on_token`` receives streamed text as it arrives; it is called with the text of one delta and must not
    block.
    """

    node_id: str
    agent: str
    template_vars: Mapping[str, Any] = field(default_factory=dict)
    on_token: Callable[[str], None] | None = None
    recorder: Recorder | None = None
    iteration: int = 0  # which model call of the agent's turn this is (0: the first), set by the agent loop
    # the structured output the reply must be (issue 16), or None: a provider asks for it as its server can
    # (the openai one natively, in JSON mode or in the prompt; the scripted one builds a value); the engine
    # parses and checks the reply whatever the provider did
    output: OutputSpec | None = None


class ChatProvider(Protocol):
    """A chat model endpoint. One instance per model in the workflow, shared by every agent using it,
    created before the run and closed (``aclose``) on every exit path."""

    def chat(
        self,
        messages: Sequence[Message],
        ctx: CallContext,
        *,
        tools: Sequence[Mapping[str, Any]] = (),
    ) -> Awaitable[ChatResult]:
        """The model's reply: an ``async def`` method, or a plain one returning a future (cheaper when the
        reply needs no coroutine of its own, as the scripted provider's usually does)."""
        ...

    async def aclose(self) -> None: ...


class ProviderFactory(Protocol):
    """What :data:`runner.providers.PROVIDERS` names: the provider of model ``name`` from its settings record
    (:class:`runner.config.models.ModelSettings`). ``transport`` is the httpx transport an HTTP provider
    sends through instead of its own (a program's tests pass ``httpx.MockTransport``); a provider that sends
    nothing ignores it."""

    def __call__(
        self, name: str, settings: Any, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> ChatProvider: ...
