"""Token counters for the working memory: how many tokens a message costs in a chat request.

``approx`` needs nothing: characters / 4, rounded up, the usual rule of thumb for English text and
code. ``tiktoken`` gives exact counts for OpenAI's models when that package (an optional extra) is
installed. Both count the same parts of a message (see :func:`message_text`) and add the same framing,
so switching counters changes only how text becomes tokens.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from runner.errors import TokenCounterError

# Each message costs a few tokens of framing (role, separators) besides its text; OpenAI's cookbook
# counts 3 per message for its current chat models.
MESSAGE_OVERHEAD = 3
# What one image part costs: a 1024x1024 image in OpenAI's "high" detail (4 tiles x 170 + 85). Counting
# the characters of an image's URL would be meaningless (a data: URL is megabytes of base64).
IMAGE_PART_TOKENS = 765
_IMAGE_PARTS = frozenset({"image_url", "input_image", "image"})


class TokenCounter(Protocol):
    """Counts tokens of text and of whole chat messages."""

    name: str

    def text(self, text: str) -> int: ...

    def message(self, message: Mapping[str, Any]) -> int: ...


def message_text(message: Mapping[str, Any]) -> tuple[list[str], int]:
    """The text a message puts in front of the model, and how many image parts it has.

    Counted: the content (a string, or the text of each ``text`` part of a list), the ``name``, and each
    tool call's id, function name and arguments. A part that is neither text nor an image (audio, a file)
    is counted by its JSON form, which over- rather than under-counts.
    """
    texts: list[str] = []
    images = 0
    content = message.get("content")
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for part in content:
            if not isinstance(part, Mapping):
                texts.append(str(part))
            elif part.get("type") == "text":
                texts.append(str(part.get("text", "")))
            elif part.get("type") in _IMAGE_PARTS:
                images += 1
            else:
                texts.append(json.dumps(part, ensure_ascii=False, default=str))
    name = message.get("name")
    if name:
        texts.append(str(name))
    for call in message.get("tool_calls") or ():
        if isinstance(call, Mapping):
            texts.append(str(call.get("id", "")))
            function = call.get("function")
            if isinstance(function, Mapping):
                texts.append(str(function.get("name", "")))
                texts.append(str(function.get("arguments", "")))
    tool_call_id = message.get("tool_call_id")
    if tool_call_id:
        texts.append(str(tool_call_id))
    return texts, images


class ApproxCounter:
    """Characters / 4, rounded up; no dependency and about 50 ns a message of text."""

    name = "approx"

    def text(self, text: str) -> int:
        return -(-len(text) // 4)

    def message(self, message: Mapping[str, Any]) -> int:
        texts, images = message_text(message)
        chars = sum(len(t) for t in texts)
        return -(-chars // 4) + images * IMAGE_PART_TOKENS + MESSAGE_OVERHEAD


class TiktokenCounter:
    """Exact counts with a tiktoken encoding (``o200k_base``: GPT-4o and later)."""

    name = "tiktoken"

    def __init__(self, encoding: str = "o200k_base") -> None:
        try:
            # Imported by name: an optional extra, without type stubs, loaded only when chosen.
            tiktoken = importlib.import_module("tiktoken")
        except ImportError as exc:
            raise TokenCounterError(
                "token_counter: tiktoken needs the tiktoken package; install it "
                "(pip install tiktoken) or use token_counter: approx"
            ) from exc
        try:
            self._encoding = tiktoken.get_encoding(encoding)
        except Exception as exc:  # tiktoken fetches its tables on first use; offline that fails
            raise TokenCounterError(
                f"token_counter: tiktoken could not load the {encoding} encoding ({exc}); "
                "it downloads its tables on first use, so run once online or use token_counter: approx"
            ) from exc

    def text(self, text: str) -> int:
        return len(self._encoding.encode(text, disallowed_special=()))

    def message(self, message: Mapping[str, Any]) -> int:
        texts, images = message_text(message)
        return sum(self.text(t) for t in texts) + images * IMAGE_PART_TOKENS + MESSAGE_OVERHEAD


COUNTERS_BY_NAME: dict[str, Callable[[], TokenCounter]] = {
    "approx": ApproxCounter,
    "tiktoken": TiktokenCounter,
}


def make_counter(name: str) -> TokenCounter:
    """The counter named in ``token_counter``; raises :class:`TokenCounterError` if it cannot work here."""
    try:
        factory = COUNTERS_BY_NAME[name]
    except KeyError:
        raise TokenCounterError(f"token_counter must be one of {', '.join(COUNTERS_BY_NAME)}, not {name!r}") from None
    return factory()
