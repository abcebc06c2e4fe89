"""An agent's working memory: the full conversation on disk, a context within a token budget for the model.

Every message added is appended to ``<run_dir>/memory/<agent>.jsonl`` (one JSON line each, never
rewritten); :meth:`WorkingMemory.context` returns what to send on the next call, at most
``max_total_tokens`` where the settings allow it:

* **compact**: a tool result longer than ``max_tool_message_tokens`` is stored to
  ``<run_dir>/memory/<agent>/result-<n>.txt`` and replaced by a preview and a reference that the agent
  can read back with the built-in ``read_stored_result`` tool. If that is not enough, the oldest
  messages are left out, and the system message says which lines of the history they are (the same
  tool reads them back). Nothing is lost and nothing costs a model call.
* **compress**: messages older than the ``keep_recent_count`` newest are summarised into a state
  snapshot (goals, facts, decisions, open questions) that replaces them; a long stretch is cut into
  groups of at most ``summary_group_tokens`` that are summarised concurrently and then merged.
* **auto**: compact first; compress only if the context still exceeds ``compact_ratio_threshold`` of
  the budget (compacting is free, summarising costs a call and loses detail).

In compress and auto modes the next snapshot is started in the background as soon as the context
passes ``compact_ratio_threshold`` of the budget, so it is made while the agent's model call runs and
the turn that goes over budget usually finds it ready (``summary_wait_seconds`` in the stats is what
turns still waited). The memory owns that one task: :meth:`WorkingMemory.aclose` cancels it.

Nothing happens while the context is within budget: exactly at the budget is within it. The system
message (the first message, if its role is ``system``) is always sent; the snapshot and the note on
what was left out are appended to it, because many chat templates accept only one system message and
only at the start. A tool call and its results are never separated: a cut that would fall between them
moves earlier, keeping the pair. Messages are never edited except that a compacted tool result's
``content`` is replaced in the copy sent; list-shaped content (text parts, images) is never compacted,
so a message is either sent whole or summarised/left out whole.

The decisions (where to cut, how to group, what the stand-ins say) are pure functions at the top of
this module; :class:`WorkingMemory` holds the state and does the file writes and summary calls.
Messages are treated as immutable once added.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
import json
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.config.memory import WorkingMemoryConfig
from runner.errors import RunError, ToolError
from runner.events import Recorder
from runner.fsutil import WriteError, append_whole, atomic_write_text, sync_files
from runner.memory.tokens import TokenCounter, make_counter
from runner.providers.base import CallContext, ChatProvider, Message

Summarize = Callable[[list[Message]], Awaitable[str]]

READ_TOOL_NAME = "read_stored_result"
# The preview kept in place of a stored tool result: enough to see what it is, a small fraction of it.
PREVIEW_MAX_CHARS = 800
# Summary calls of one compression in flight at once; the provider's own limits apply on top.
SUMMARY_CONCURRENCY = 8
# add() buffers history lines; past this many bytes it writes at once instead of waiting for context().
FLUSH_BYTES = 1 << 20

SUMMARY_INSTRUCTIONS = (
    "You keep the working memory of an AI agent. Summarise the conversation excerpt you are given into "
    "a state snapshot with exactly these four sections:\n"
    "Goals: what the user and the agent are trying to achieve.\n"
    "Facts: what has been learned, including results of tool calls.\n"
    "Decisions: what has been decided or done, and why.\n"
    "Open questions: what is still unknown or pending.\n"
    "Keep names, numbers, identifiers, file names and references such as result:12 exact. If the excerpt "
    "starts with a previous snapshot, merge it in: keep what still holds, update what changed. Reply with "
    "the snapshot only."
)
MERGE_INSTRUCTIONS = (
    "You keep the working memory of an AI agent. Merge the partial state snapshots you are given, which "
    "cover consecutive parts of one conversation (oldest first), into one snapshot with the same four "
    "sections: Goals, Facts, Decisions, Open questions. Where they disagree, the later part wins. Keep "
    "names, numbers, identifiers and references exact. Reply with the snapshot only."
)

READ_STORED_RESULT_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": READ_TOOL_NAME,
        "description": (
            "Read back a tool result or earlier messages that working memory stored out of the context. "
            "Use the ref given in the context (result:<n> or history:<first>-<last>). Long texts come in "
            "pages; pass the offset given at the end of a page to read on."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "ref": {"type": "string", "description": "result:<n> or history:<first>-<last>"},
                "offset": {"type": "integer", "minimum": 0, "description": "character offset, 0 first"},
            },
            "required": ["ref"],
            "additionalProperties": False,
        },
    },
}

_REF = re.compile(r"result:([1-9][0-9]*)|history:([1-9][0-9]*)-([1-9][0-9]*)")
# An agent's name becomes file names; keep it to one safe path component.
_AGENT = re.compile(r"[\w\-\[\]][\w.\-\[\]]*")


# ---------------------------------------------------------------------------------------------- pure core


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


def summary_prompt(parts: Sequence[str]) -> list[Message]:
    return [
        {"role": "system", "content": SUMMARY_INSTRUCTIONS},
        {"role": "user", "content": "\n\n".join(parts)},
    ]


def merge_prompt(snapshots: Sequence[str]) -> list[Message]:
    body = "\n\n".join(f"### Part {i}\n{text}" for i, text in enumerate(snapshots, 1))
    return [{"role": "system", "content": MERGE_INSTRUCTIONS}, {"role": "user", "content": body}]


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


def provider_summarizer(
    provider: ChatProvider,
    *,
    node_id: str,
    agent: str,
    recorder: Recorder | None = None,
    template_vars: Mapping[str, Any] | None = None,
) -> Summarize:
    """The ``summarize`` callable for a memory whose ``summary_model`` is ``provider``.

    The prompt already holds the instructions and the transcript; the transcript is also passed as the
    template variable ``input``, so an offline ``scripted`` model can stand in for the summary model.
    Provider errors propagate unchanged (a failed compression fails the turn; one made ahead is reported
    and made again when needed).
    """
    base = dict(template_vars or {})

    async def summarize(prompt: list[Message]) -> str:
        context = CallContext(
            node_id=node_id,
            agent=agent,
            template_vars={**base, "input": prompt[-1]["content"]},
            recorder=recorder,
        )
        result = await provider.chat(prompt, context)
        return result.content

    return summarize


# ------------------------------------------------------------------------------------------------ records


@dataclass(slots=True)
class MemoryStats:
    """One agent's memory figures for the report.

    ``tokens_before`` is the full history, ``tokens_after`` what was sent, both at the last turn (a turn is
    a :meth:`WorkingMemory.context` call); the ``_total`` fields add them up over all turns, so their
    difference is what the memory saved. ``summary_seconds`` is the wall time of making snapshots and
    ``summary_wait_seconds`` the part of it that turns waited for: the time on the critical path (a snapshot
    made ahead, in the background, overlaps the agent's model calls). ``summaries_ahead`` counts those.
    ``summary_call_seconds`` adds up the summary calls, more than the wall time when groups ran
    concurrently. ``manage_seconds`` is all time spent in ``context()``, waits for snapshots included.
    """

    agent: str
    mode: str
    budget: int
    messages: int = 0
    turns: int = 0
    tokens_before: int = 0
    tokens_after: int = 0
    max_tokens_after: int = 0
    tokens_before_total: int = 0
    tokens_after_total: int = 0
    over_budget_turns: int = 0
    compactions: int = 0
    elisions: int = 0
    elided_messages: int = 0
    summaries: int = 0
    summaries_ahead: int = 0
    summary_calls: int = 0
    summarised_messages: int = 0
    summary_seconds: float = 0.0
    summary_wait_seconds: float = 0.0
    summary_call_seconds: float = 0.0
    manage_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(slots=True)
class _Entry:
    message: Message  # as sent: the original, or a copy whose content is a stored result's stand-in
    tokens: int
    number: int  # the message's line in the history file, 1-based
    start: int  # the number of the message that starts its tool-call exchange (see exchange_start)
    reach: int  # the number of the last message of the exchange this one starts (itself if none)


@dataclass(slots=True)
class _Job:
    """A snapshot to make of the history up to message ``last``, from a transcript rendered at
    ``started``; ``task`` is set when it runs in the background (``ahead``)."""

    items: list[tuple[str, int, bool]]
    last: int
    messages: int
    based_on: tuple[int, int] | None  # the left-out range whose snapshot the transcript folds in
    started: float
    tokens: int
    ahead: bool
    task: asyncio.Task[tuple[str, int, int]] | None = None
    seconds: float = 0.0


# ------------------------------------------------------------------------------------------------ effects


class _History:
    """The full history as JSONL, appended in whole lines; remembers where each line starts."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offsets: list[int] = []  # line n (1-based) starts at byte offsets[n - 1]
        self._buffer: list[bytes] = []
        self._buffered = 0
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:  # a file in the run folder's place, a read-only or full disk
            raise WriteError(path, exc) from exc
        self._size = os.fstat(self._fd).st_size
        if self._size:
            # A second memory under the same name in one run: go on numbering after its lines.
            position = 0
            last = b""
            with path.open("rb") as existing:
                for line in existing:
                    self.offsets.append(position)
                    position += len(line)
                    last = line
            if not last.endswith(b"\n"):  # a line cut short by a crash: end it so ours start whole
                self._write(b"\n")

    @property
    def count(self) -> int:
        return len(self.offsets)

    @property
    def written(self) -> int:
        """Lines on disk (the rest are buffered)."""
        return len(self.offsets) - len(self._buffer)

    def append(self, message: Message) -> int:
        try:
            text = json.dumps(message, ensure_ascii=False, separators=(",", ":"), default=str)
            line = (text + "\n").encode()
        except UnicodeEncodeError:  # a lone surrogate; escaped JSON stays valid UTF-8
            line = (json.dumps(message, separators=(",", ":"), default=str) + "\n").encode()
        self.offsets.append(self._size + self._buffered)
        self._buffer.append(line)
        self._buffered += len(line)
        if self._buffered >= FLUSH_BYTES:
            self.flush()
        return len(self.offsets)

    def flush(self) -> None:
        if not self._buffer:
            return
        data = b"".join(self._buffer)
        self._write(data)
        self._buffer.clear()
        self._buffered = 0

    def _write(self, data: bytes) -> None:
        if self._fd is None:
            raise RunError(f"memory history {self.path} is closed")
        # Whole lines or nothing: a failed append is cut back, so the file never ends in half a line.
        self._size = append_whole(self._fd, data, self._size, self.path)

    def read(self, first: int, last: int) -> list[Message]:
        """Written lines ``first`` to ``last`` (1-based, inclusive), as messages; a line that is not JSON
        (cut short by a crash of an earlier run under the same name) reads as a note saying so.

        Never writes, so a tool running in a worker thread can call it while the loop appends.
        """
        start = self.offsets[first - 1]
        end = self.offsets[last] if last < len(self.offsets) else self._size
        with self.path.open("rb") as file:
            file.seek(start)
            data = file.read(end - start)
        messages: list[Message] = []
        for line in data.splitlines():
            try:
                messages.append(json.loads(line))
            except ValueError:
                messages.append({"role": "unknown", "content": "(this line of the history is damaged)"})
        return messages

    def close(self) -> None:
        if self._fd is None:
            return
        try:
            self.flush()
            os.fsync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = None


class WorkingMemory:
    """One agent's conversation: the full history on disk and a context within the token budget.

    ``summarize`` receives a ready prompt (a system and a user message) and returns the model's reply;
    it is required in ``compress`` and ``auto`` modes. ``recorder`` receives a ``memory`` event, under
    ``node_id`` (default: the agent's name), for each compaction, left-out stretch, summary and turn over
    budget. ``agent`` names the files, so it must be unique in the run (one memory per fan-out branch).
    ``summarize_ahead`` (default on) makes snapshots in the background, see the module's docstring.
    Call :meth:`aclose` (or :meth:`close`, outside the loop) when the agent is done; the history is also
    written at every :meth:`context` call, so a crash loses at most the messages of the current turn.
    """

    def __init__(
        self,
        config: WorkingMemoryConfig,
        *,
        run_dir: Path,
        agent: str,
        summarize: Summarize | None = None,
        recorder: Recorder | None = None,
        node_id: str | None = None,
        counter: TokenCounter | None = None,
        summarize_ahead: bool = True,
    ) -> None:
        if not _AGENT.fullmatch(agent):
            raise ValueError(f"agent name {agent!r} cannot name a file: use letters, digits, _ - . [ ]")
        if config.summarises and summarize is None:
            raise ValueError(f"working_summary_mode {config.working_summary_mode} needs a summary model to call")
        self.config = config
        self.agent = agent
        self._summarize = summarize
        self._recorder = recorder
        self._node_id = node_id or agent
        self._counter = counter or make_counter(config.token_counter)
        self._results = Path(run_dir) / "memory" / agent
        self._history = _History(Path(run_dir) / "memory" / f"{agent}.jsonl")
        self._system: Message | None = None
        self._system_sent: Message | None = None
        self._system_tokens = 0
        self._view: list[_Entry] = []
        self._view_tokens = 0
        self._removed: tuple[int, int] | None = None
        self._snapshot: str | None = None
        self._snapshots_written = 0
        self._compacted_below = 0  # tool results on lines below this one have been looked at
        self._preview_chars = min(PREVIEW_MAX_CHARS, config.max_tool_message_tokens)
        self._page_chars = max(256, config.max_tool_message_tokens * 4 - 400)
        self._lock = asyncio.Lock()
        self._stats = MemoryStats(agent=agent, mode=config.working_summary_mode, budget=config.max_total_tokens)
        self._history_tokens = 0
        self._calls: dict[str, int] = {}  # tool call id -> number of the message that made the call
        self._summarize_ahead = summarize_ahead and config.summarises
        self._ahead: _Job | None = None  # the one background task this memory owns; see aclose()
        self._unsynced: list[Path] = []  # stored results and snapshots, synced at close

    # -- the agent loop's side

    @property
    def history_path(self) -> Path:
        return self._history.path

    @property
    def tokens(self) -> int:
        """Tokens of the context as it stands (what the next ``context()`` starts from)."""
        return self._system_tokens + self._view_tokens

    def add(self, message: Message) -> None:
        """Append a message to the history (and to the context). Cheap: counts and buffers one line."""
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise TypeError(f"a message is a mapping with a role, not {message!r}")
        number = self._history.append(message)
        tokens = self._counter.message(message)
        self._history_tokens += tokens
        self._stats.messages += 1
        if message["role"] == "system" and self._system is None and not self._view and self._removed is None:
            self._system = message
            self._refresh_system()
        else:
            # Exchanges are tracked as messages arrive, so finding a safe cut needs no scan of the history.
            view = self._view
            start = exchange_start(message, number, view[-1].start if view else None, self._calls)
            if start != number and view:
                opener = start - view[0].number  # the view holds consecutive numbers
                if 0 <= opener < len(view):
                    view[opener].reach = number
            view.append(_Entry(message, tokens, number, start, number))
            self._view_tokens += tokens

    def extend(self, messages: Sequence[Message]) -> None:
        for message in messages:
            self.add(message)

    async def context(self) -> list[Message]:
        """The messages to send on the next call, brought within budget first if they are over it."""
        async with self._lock:
            self._history.flush()
            started = time.perf_counter()
            config = self.config
            budget = config.max_total_tokens
            mode = config.working_summary_mode
            if self.tokens > budget:
                if mode != "compress":
                    self._compact()
                if mode == "compact" and self.tokens > budget:
                    self._elide()
                if self._needs_compress():
                    await self._compress()
            if self._ahead is None and self._summarize_ahead:
                self._start_ahead()
            sent = self.tokens
            stats = self._stats
            if sent > budget:
                stats.over_budget_turns += 1
                self._emit({"action": "over_budget", "tokens": sent, "budget": budget})
            stats.turns += 1
            stats.tokens_before = self._history_tokens
            stats.tokens_after = sent
            stats.max_tokens_after = max(stats.max_tokens_after, sent)
            stats.tokens_before_total += self._history_tokens
            stats.tokens_after_total += sent
            messages = [entry.message for entry in self._view]
            if self._system_sent is not None:
                messages.insert(0, self._system_sent)
            stats.manage_seconds += time.perf_counter() - started
            return messages

    def stats(self) -> MemoryStats:
        return dataclasses.replace(self._stats)

    def read_stored_result(self, ref: str, offset: int = 0) -> str:
        """The built-in ``read_stored_result`` tool: a page of a stored result or of left-out messages.

        Only reads files, so it may run in the engine's worker threads like any sync tool. Messages not
        yet written (added since the last ``context()``) cannot be read; no ref names them.
        """
        match = _REF.fullmatch(ref.strip()) if isinstance(ref, str) else None
        if match is None:
            raise ToolError(f"{READ_TOOL_NAME}: {ref!r} is not a ref; refs look like result:12 or history:2-40")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ToolError(f"{READ_TOOL_NAME}: offset must be a whole number of characters, not {offset!r}")
        ref = match.group(0)
        if match.group(1):
            path = self._results / f"result-{match.group(1)}.txt"
            try:
                text = path.read_text(encoding="utf-8", errors="surrogatepass")
            except FileNotFoundError:
                raise ToolError(f"{READ_TOOL_NAME}: nothing is stored as {ref}") from None
        else:
            first, last = int(match.group(2)), int(match.group(3))
            written = self._history.written
            if not first <= last <= written:
                raise ToolError(
                    f"{READ_TOOL_NAME}: {ref} is not a range of the history, which has messages #1-#{written}"
                )
            messages = self._history.read(first, last)
            text = "\n\n".join(render_message(m, n) for n, m in enumerate(messages, first))
        return page(text, ref, offset, self._page_chars)

    def close(self) -> None:
        """Write out the history and close it; a snapshot still being made ahead is cancelled."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead.task is not None and not ahead.task.done():
            try:
                ahead.task.cancel()
            except RuntimeError:  # its loop is closed; the task can never run again
                pass
        try:
            self._history.close()
        finally:
            unsynced, self._unsynced = self._unsynced, []
            sync_files(unsynced)

    async def aclose(self) -> None:
        """:meth:`close`, and wait until a snapshot being made ahead has stopped. The files written are
        synced in a worker thread, so the loop goes on serving the other agents meanwhile."""
        ahead = self._ahead
        task = None if ahead is None else ahead.task
        if task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop():
            self._ahead = None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._unsynced:
            await asyncio.to_thread(self.close)
        else:
            self.close()

    def __enter__(self) -> WorkingMemory:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- keeping within budget

    def _refresh_system(self) -> None:
        self._system_sent = with_notes(self._system, memory_notes(self._removed, self._snapshot))
        self._system_tokens = 0 if self._system_sent is None else self._counter.message(self._system_sent)

    def _tail(self) -> int:
        """Where the kept tail begins (see :func:`tail_start`); looks at the tail only."""
        view = self._view
        cut = max(0, len(view) - self.config.keep_recent_count)
        if cut == 0 or cut == len(view):
            return cut
        lowest = min(entry.start for entry in view[cut:])
        while cut > 0 and lowest < view[cut].number:
            cut -= 1
            lowest = min(lowest, view[cut].start)
        return cut

    def _compact(self) -> None:
        """Store the long tool results outside the kept tail; each is looked at once."""
        view = self._view
        end = self._tail()
        start = bisect.bisect_left(view, self._compacted_below, hi=end, key=lambda entry: entry.number)
        limit = self.config.max_tool_message_tokens
        before = self.tokens
        refs = []
        for entry in view[start:end]:
            message = entry.message
            content = message.get("content")
            if message.get("role") != "tool" or not isinstance(content, str):
                continue
            size = self._counter.text(content)
            if size <= limit:
                continue
            ref = f"result:{entry.number}"
            self._write(self._results / f"result-{entry.number}.txt", content)
            replaced = {**message, "content": stand_in(content, ref, size, self._preview_chars)}
            tokens = self._counter.message(replaced)
            self._view_tokens += tokens - entry.tokens
            entry.message, entry.tokens = replaced, tokens
            refs.append(ref)
        if end:
            self._compacted_below = view[end - 1].number + 1
        if refs:
            self._stats.compactions += len(refs)
            self._emit({"action": "compact", "refs": refs, "tokens_before": before, "tokens_after": self.tokens})

    def _elide(self) -> None:
        """Leave out the fewest oldest messages (outside the tail, tool pairs whole) that fit the budget."""
        view = self._view
        end = self._tail()
        if end == 0:
            return
        budget = self.config.max_total_tokens
        before = self.tokens
        first = self._removed[0] if self._removed else view[0].number
        removed = 0
        reach = 0
        cut = end
        for k in range(1, end + 1):
            removed += view[k - 1].tokens
            reach = max(reach, view[k - 1].reach)
            safe = k == len(view) or reach < view[k].number
            # The notes only grow as the range does, so the budget needs at least the overshoot removed.
            if not safe or before - removed > budget:
                continue
            notes = with_notes(self._system, memory_notes((first, view[k - 1].number), self._snapshot))
            system_tokens = 0 if notes is None else self._counter.message(notes)
            if before - removed - self._system_tokens + system_tokens <= budget:
                cut = k
                break
        self._drop(cut)
        self._refresh_system()
        self._stats.elisions += 1
        self._stats.elided_messages += cut
        assert self._removed is not None
        self._emit(
            {
                "action": "elide",
                "messages": cut,
                "ref": f"history:{self._removed[0]}-{self._removed[1]}",
                "tokens_before": before,
                "tokens_after": self.tokens,
            }
        )

    def _drop(self, cut: int) -> None:
        """Take ``view[:cut]`` out of the context, extending the left-out range of the history."""
        view = self._view
        first = self._removed[0] if self._removed else view[0].number
        self._removed = (first, view[cut - 1].number)
        self._view_tokens -= sum(entry.tokens for entry in view[:cut])
        del view[:cut]

    def _needs_compress(self) -> bool:
        config = self.config
        if config.working_summary_mode == "compress":
            return self.tokens > config.max_total_tokens
        if config.working_summary_mode == "auto":
            return self.tokens > config.compact_ratio_threshold * config.max_total_tokens
        return False

    async def _compress(self) -> None:
        """Replace everything before the tail by a state snapshot (merged with the previous one).

        A snapshot made ahead (see :meth:`_start_ahead`) is used first, waiting for it if it is not ready;
        only what it does not cover, if still too much, is summarised here, while the turn waits.
        """
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead.task is not None and self._usable(ahead):
            waited_from = time.perf_counter()
            try:
                snapshot, groups, calls = await ahead.task
            except Exception as exc:  # the provider's error; summarising now may still work
                self._emit({"action": "summary_failed", "error": f"{type(exc).__name__}: {exc}", "ahead": True})
            else:
                self._apply(ahead, snapshot, groups, calls, time.perf_counter() - waited_from)
                if not self._needs_compress():
                    return
        end = self._tail()
        if end == 0:
            return
        job = self._job(end, ahead=False)
        snapshot, groups, calls = await self._snapshot_of(job.items)
        self._apply(job, snapshot, groups, calls, time.perf_counter() - job.started)

    def _job(self, end: int, *, ahead: bool) -> _Job:
        """What a snapshot of ``view[:end]`` reads: rendered now, so later compaction cannot change it."""
        limit = self.config.group_tokens
        # One message may be at most half a group (in characters, at ~4 a token), so a call always fits.
        max_chars = limit * 2
        items: list[tuple[str, int, bool]] = []
        if self._snapshot is not None and self._removed is not None:
            first, last = self._removed
            text = f"Previous state snapshot (messages #{first}-#{last}):\n{self._snapshot}"
            items.append((text, self._counter.text(text), False))
        for entry in self._view[:end]:
            text = render_message(entry.message, entry.number, max_chars)
            items.append((text, self._counter.text(text), entry.message.get("role") == "tool"))
        return _Job(
            items=items,
            last=self._view[end - 1].number,
            messages=end,
            based_on=self._removed,
            started=time.perf_counter(),
            tokens=self.tokens,
            ahead=ahead,
        )

    async def _snapshot_of(self, items: list[tuple[str, int, bool]]) -> tuple[str, int, int]:
        """The snapshot of a transcript, the number of groups it was read in, and the calls it took."""
        limit = self.config.group_tokens
        groups = split_groups(items, limit)
        parts = await self._summarise([summary_prompt(group) for group in groups])
        calls = len(parts)
        while len(parts) > 1:
            merge_items = [(text, self._counter.text(text), False) for text in parts]
            merges = split_groups(merge_items, limit, min_items=2)
            parts = await self._summarise([merge_prompt(group) for group in merges])
            calls += len(parts)
        return parts[0], len(groups), calls

    def _apply(self, job: _Job, snapshot: str, groups: int, calls: int, waited: float) -> None:
        """Put the snapshot in place of the messages it covers."""
        before = self.tokens
        cut = job.last - self._view[0].number + 1
        self._snapshot = snapshot
        self._drop(cut)
        self._refresh_system()
        self._write_snapshot()
        seconds = waited if job.task is None else job.seconds
        stats = self._stats
        stats.summaries += 1
        stats.summaries_ahead += job.ahead
        stats.summarised_messages += cut
        stats.summary_seconds += seconds
        stats.summary_wait_seconds += waited
        assert self._removed is not None
        self._emit(
            {
                "action": "summary",
                "messages": cut,
                "groups": groups,
                "calls": calls,
                "seconds": seconds,
                "waited": waited,
                "ahead": job.ahead,
                "ref": f"history:{self._removed[0]}-{self._removed[1]}",
                "tokens_before": before,
                "tokens_after": self.tokens,
            }
        )

    def _start_ahead(self) -> None:
        """Start the next snapshot in the background once the context passes the ratio of the budget.

        The agent's model call then overlaps the summary call, and the turn that goes over budget finds
        the snapshot ready instead of waiting for it. In auto mode, results that compaction will store
        anyway are not counted, so a snapshot is made ahead only when compacting will not be enough.
        """
        config = self.config
        if config.working_summary_mode == "compact":
            return
        threshold = config.compact_ratio_threshold * config.max_total_tokens
        tokens = self.tokens
        if tokens <= threshold:
            return
        end = self._tail()
        if end == 0:
            return
        if config.working_summary_mode == "auto":
            tokens -= self._compactable(end)
            if tokens <= threshold:
                return
        job = self._job(end, ahead=True)

        async def make() -> tuple[str, int, int]:
            result = await self._snapshot_of(job.items)
            job.seconds = time.perf_counter() - job.started
            return result

        job.task = asyncio.get_running_loop().create_task(make())
        # A failure is reported when the snapshot is wanted; retrieving it here keeps asyncio from
        # logging "exception was never retrieved" for a snapshot that was never wanted.
        job.task.add_done_callback(lambda task: task.cancelled() or task.exception())
        self._ahead = job

    def _compactable(self, end: int) -> int:
        """About how many tokens compacting ``view[:end]`` would save (results not yet looked at)."""
        view = self._view
        start = bisect.bisect_left(view, self._compacted_below, hi=end, key=lambda entry: entry.number)
        limit = self.config.max_tool_message_tokens
        stand_in_tokens = self._preview_chars // 4 + 50
        return sum(
            entry.tokens - stand_in_tokens
            for entry in view[start:end]
            if entry.tokens > limit
            and entry.message.get("role") == "tool"
            and isinstance(entry.message.get("content"), str)
        )

    def _usable(self, job: _Job) -> bool:
        """Whether a snapshot made ahead still fits: same earlier snapshot, its messages still in the
        context and before the tail, and a cut after them that keeps tool exchanges whole."""
        task = job.task
        assert task is not None
        view = self._view
        if task.cancelled() or task.get_loop() is not asyncio.get_running_loop():
            return False
        if job.based_on != self._removed or not view or view[0].number > job.last:
            return False
        cut = job.last - view[0].number + 1
        if cut > self._tail():
            return False
        reach = max(entry.reach for entry in view[:cut])
        return cut == len(view) or reach < view[cut].number

    async def _summarise(self, prompts: list[list[Message]]) -> list[str]:
        summarize = self._summarize
        assert summarize is not None
        stats = self._stats
        gate = asyncio.Semaphore(SUMMARY_CONCURRENCY)

        async def one(prompt: list[Message]) -> str:
            async with gate:
                started = time.perf_counter()
                text = await summarize(prompt)
                stats.summary_calls += 1
                stats.summary_call_seconds += time.perf_counter() - started
                return text.strip()

        if len(prompts) == 1:
            return [await one(prompts[0])]
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(prompt)) for prompt in prompts]
        except BaseExceptionGroup as failed:
            # The engine expects the provider's own error (ProviderError, ...), as from a single call;
            # the first failure cancelled the other groups, so it is the one to tell.
            raise failed.exceptions[0] from None
        return [task.result() for task in tasks]

    def _write_snapshot(self) -> None:
        # Each snapshot is kept beside the stored results, so a report can show what the model was told.
        self._snapshots_written += 1
        assert self._snapshot is not None and self._removed is not None
        header = f"# Snapshot {self._snapshots_written}: messages #{self._removed[0]}-#{self._removed[1]}\n\n"
        self._write(self._results / f"snapshot-{self._snapshots_written}.md", header + self._snapshot)

    def _write(self, path: Path, text: str) -> None:
        """A stored result or a snapshot, atomically (never half a file, no temporary file left on failure).
        Synced with the history when the memory closes, off the event loop: an fsync per file in the middle
        of a turn (4 ms each on this machine's disk) would be most of what memory costs a turn."""
        # surrogatepass: a lone surrogate (from badly decoded tool output) is kept, not a crash mid-run.
        atomic_write_text(path, text, errors="surrogatepass", fsync=False)
        self._unsynced.append(path)

    def _emit(self, data: dict[str, Any]) -> None:
        if self._recorder is not None:
            self._recorder.emit("memory", self._node_id, {"agent": self.agent, **data})
