"""The pure decisions of working memory and the text they produce: where a cut may fall, how a transcript is
grouped and rendered, what stands in for a stored result, what the system message says about what left the context.

Functions on data, no state: :class:`runner.memory.context.Context` applies them to the context, and the tests
check them on their own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from runner.providers.base import Message

READ_TOOL_NAME = "read_stored_result"
# The preview kept in place of a stored tool result: enough to see what it is, a small fraction of it.
PREVIEW_MAX_CHARS = 800


def content_text(content: Any) -> str:
    """The text of a message's content; a non-text part is named, not shown (``[image_url part]``)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        pieces = []
        for part in content:
            if isinstance(part, Mapping) and part.get("type") == "text":
                pieces.append(str(part.get("text", "")))
            elif isinstance(part, Mapping):
                pieces.append(f"[{part.get('type', 'unknown')} part]")
            else:
                pieces.append(str(part))
        return "\n".join(pieces)
    return str(content)


def render_message(message: Mapping[str, Any], number: int, max_chars: int | None = None) -> str:
    """One message as transcript text for a summary call or a history read-back.

    ``number`` is the message's line in the history file; a body longer than ``max_chars`` is cut with a
    note of how much was left out (a summary call must fit its model's context).
    """
    role = str(message.get("role", "unknown"))
    head = f"[#{number}] {role}"
    if message.get("name"):
        head += f" {message['name']}"
    if role == "tool":
        head += f" (result of call {message.get('tool_call_id', '?')})"
    body = content_text(message.get("content"))
    if max_chars is not None and len(body) > max_chars:
        body = f"{body[:max_chars]} ... [{len(body) - max_chars} more characters not shown]"
    lines = [f"{head}: {body}" if body else head]
    for call in message.get("tool_calls") or ():
        if not isinstance(call, Mapping):
            continue
        function = call.get("function") or {}
        name, arguments = function.get("name", "?"), function.get("arguments", "")
        lines.append(f"  -> calls {name}({arguments}) [id {call.get('id', '?')}]")
    return "\n".join(lines)


def exchange_start(message: Mapping[str, Any], own: int, previous: int | None, calls: dict[str, int]) -> int:
    """Where the tool-call exchange of the message at position ``own`` starts, and note the calls it makes.

    A tool result belongs to the message that made its call (``calls`` maps call ids to positions); a
    result whose call is unknown stays with the exchange of the message before it (``previous``). Any
    other message starts its own exchange. A cut must not fall inside an exchange: the model would see
    a result without its call, which most endpoints reject.
    """
    start = own
    if message.get("role") == "tool":
        call_id = message.get("tool_call_id")
        if isinstance(call_id, str) and call_id in calls:
            start = calls[call_id]
        elif previous is not None:
            start = previous
    for call in message.get("tool_calls") or ():
        if isinstance(call, Mapping) and isinstance(call.get("id"), str):
            calls[call["id"]] = own
    return start


def safe_cuts(messages: Sequence[Mapping[str, Any]]) -> list[bool]:
    """``safe[k]`` tells whether ``messages[:k]`` can leave the context while ``messages[k:]`` stays:
    no message at or after ``k`` belongs to an exchange that starts before ``k``."""
    calls: dict[str, int] = {}
    starts: list[int] = []
    for i, message in enumerate(messages):
        starts.append(exchange_start(message, i, starts[-1] if starts else None, calls))
    safe = [True] * (len(messages) + 1)
    lowest = len(messages)
    for k in range(len(messages) - 1, -1, -1):
        lowest = min(lowest, starts[k])
        safe[k] = lowest >= k
    return safe


def tail_start(messages: Sequence[Mapping[str, Any]], keep_recent: int) -> int:
    """Where the kept tail begins: at most ``len - keep_recent``, moved earlier to keep tool pairs whole."""
    cut = max(0, len(messages) - keep_recent)
    if cut == 0:
        return 0
    safe = safe_cuts(messages)
    while not safe[cut]:
        cut -= 1
    return cut


def split_groups(items: Sequence[tuple[str, int, bool]], limit: int, min_items: int = 1) -> list[list[str]]:
    """Consecutive groups of ``(text, tokens, is_tool_result)`` items of at most ``limit`` tokens each.

    A group does not end just before a tool result if it can end before the call instead, so a call and
    its results are summarised together. An item larger than ``limit`` makes a group of its own;
    ``min_items`` (2 when merging snapshots) makes every group hold at least that many items, so merging
    always makes progress.
    """
    groups: list[list[str]] = []
    current: list[tuple[str, int, bool]] = []
    tokens = 0
    boundary = 0  # index in current before which the group may end
    for item in items:
        text, size, is_tool = item
        if len(current) >= min_items and tokens + size > limit:
            end = boundary if is_tool and boundary >= min_items else len(current)
            groups.append([t for t, _, _ in current[:end]])
            current = current[end:]
            tokens = sum(s for _, s, _ in current)
            boundary = 0
        if not is_tool:
            boundary = len(current)
        current.append(item)
        tokens += size
    if current:
        if groups and len(current) < min_items:
            groups[-1].extend(t for t, _, _ in current)
        else:
            groups.append([t for t, _, _ in current])
    return groups


def stand_in(content: str, ref: str, tokens: int, preview_chars: int) -> str:
    """What replaces a stored tool result in context: its beginning and how to read the rest."""
    preview = content[:preview_chars]
    return (
        f"{preview}\n[... {len(content) - len(preview)} more characters not shown: the full result "
        f'({tokens} tokens) is stored as {ref}; read it with {READ_TOOL_NAME}(ref="{ref}")]'
    )


def memory_notes(removed: tuple[int, int] | None, snapshot: str | None) -> str:
    """The section appended to the system message once messages have left the context."""
    if removed is None:
        return ""
    first, last = removed
    ref = f"history:{first}-{last}"
    if snapshot is None:
        return (
            f"## Working memory\nEarlier messages #{first}-#{last} of this conversation are not shown; "
            f'their full text is kept: read it with {READ_TOOL_NAME}(ref="{ref}").'
        )
    return (
        f"## Working memory\nEarlier messages #{first}-#{last} of this conversation are summarised in the "
        f'state snapshot below; their full text is kept: read it with {READ_TOOL_NAME}(ref="{ref}").\n\n'
        f"{snapshot}"
    )


def with_notes(system: Message | None, notes: str) -> Message | None:
    """The system message as sent: the original, with the memory notes appended when there are any."""
    if not notes:
        return system
    if system is None:
        return {"role": "system", "content": notes}
    content = system.get("content")
    if isinstance(content, list):
        return {**system, "content": [*content, {"type": "text", "text": notes}]}
    text = content_text(content)
    return {**system, "content": f"{text}\n\n{notes}" if text else notes}


def page(text: str, ref: str, offset: int, size: int) -> str:
    """A page of ``text`` from ``offset``, with the offset of the next page when there is more."""
    if offset and offset >= len(text):
        return f"[{ref} has {len(text)} characters; offset {offset} is past the end]"
    chunk = text[offset : offset + size]
    end = offset + len(chunk)
    if end < len(text):
        chunk += (
            f"\n[... characters {offset}-{end} of {len(text)}; read on with "
            f'{READ_TOOL_NAME}(ref="{ref}", offset={end})]'
        )
    return chunk
