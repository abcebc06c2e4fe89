"""The built-in ``scripted`` provider: no network, a reply template, simulated latency and streaming.

It is how examples, tests and CI run without a key, and how the engine's own overhead is measured:
its only cost besides the simulated wait is one template render per call.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from runner.providers.base import CallContext, ChatResult, Message, Usage
from runner.providers.scripted_config import ScriptedConfig
from runner.templates import Template

_TOKEN = re.compile(r"\s*\S+|\s+")


def approx_tokens(text: str) -> int:
    """About four characters a token, as OpenAI's rule of thumb; at least 1 for non-empty text."""
    return (len(text) + 3) // 4


def _message_text(messages: Sequence[Message]) -> str:
    parts = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "".join(parts)


class ScriptedProvider:
    """Replies with its rendered ``reply`` template after ``first_token_ms``, then streams it word by word
    at ``tokens_per_second`` (all at once when 0)."""

    def __init__(self, name: str, config: ScriptedConfig) -> None:
        self.name = name
        self.config = config
        self._reply = Template(config.reply)
        self._first_token_s = config.first_token_ms / 1000.0
        self._token_interval = 1.0 / config.tokens_per_second if config.tokens_per_second > 0 else 0.0

    async def chat(
        self,
        messages: Sequence[Message],
        ctx: CallContext,
        *,
        tools: Sequence[Mapping[str, Any]] = (),
    ) -> ChatResult:
        text = self._reply.render(ctx.template_vars)
        usage = Usage(approx_tokens(_message_text(messages)), approx_tokens(text))
        if self._first_token_s:
            await asyncio.sleep(self._first_token_s)
        first = time.perf_counter()
        on_token = ctx.on_token if self.config.stream else None
        if self._token_interval and text:
            tokens = _TOKEN.findall(text)
            if on_token is not None:
                on_token(tokens[0])
            # Sleep to each token's due time, sending every token already due at once: one timer per
            # wake-up rather than per token keeps thousands of concurrent streams cheap.
            start, sent = first, 1
            while sent < len(tokens):
                due = start + sent * self._token_interval
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                now = time.perf_counter()
                upto = min(len(tokens), int((now - start) / self._token_interval) + 1)
                upto = max(upto, sent + 1)
                if on_token is not None:
                    on_token("".join(tokens[sent:upto]))
                sent = upto
        elif on_token is not None and text:
            on_token(text)
        return ChatResult(content=text, usage=usage, first_token_at=first if self.config.stream else None)

    async def aclose(self) -> None:
        return None
