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

The parts: :mod:`runner.memory.policy` (the decisions: where to cut, how to group, what the stand-ins say; pure
functions), :mod:`runner.memory.context` (the context and the cuts applied to it), :mod:`runner.memory.summary`
(snapshots, made ahead or when needed), :mod:`runner.memory.history` (the JSONL file), :mod:`runner.memory.stats`
(the figures). Here: :class:`WorkingMemory`, which holds them together and writes the stored files, and what the
engine wires to it: the ``read_stored_result`` tool it answers and :func:`provider_summarizer`. Messages are
treated as immutable once added.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from runner.config.memory import WorkingMemoryConfig
from runner.errors import ToolError
from runner.events import Recorder
from runner.fsutil import atomic_write_text, sync_files
from runner.memory.context import Context
from runner.memory.history import History
from runner.memory.policy import PREVIEW_MAX_CHARS, READ_TOOL_NAME, page, render_message
from runner.memory.stats import MemoryStats
from runner.memory.summary import Summaries, Summarize
from runner.memory.tokens import TokenCounter, make_counter
from runner.providers.base import CallContext, ChatProvider, Message

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
        self._recorder = recorder
        self._node_id = node_id or agent
        self._counter = counter or make_counter(config.token_counter)
        self._results = Path(run_dir) / "memory" / agent
        self._history = History(Path(run_dir) / "memory" / f"{agent}.jsonl")
        self._context = Context(self._counter, config.keep_recent_count)
        self._preview_chars = min(PREVIEW_MAX_CHARS, config.max_tool_message_tokens)
        self._page_chars = max(256, config.max_tool_message_tokens * 4 - 400)
        self._lock = asyncio.Lock()
        self._stats = MemoryStats(agent=agent, mode=config.working_summary_mode, budget=config.max_total_tokens)
        self._history_tokens = 0
        self._unsynced: list[Path] = []  # stored results and snapshots, synced at close
        self._summaries: Summaries | None = None
        if config.summarises:
            assert summarize is not None
            self._summaries = Summaries(
                config,
                summarize,
                self._context,
                self._stats,
                ahead=summarize_ahead,
                preview_chars=self._preview_chars,
                write=lambda name, text: self._write(self._results / name, text),
                emit=self._emit,
            )

    # -- the agent loop's side

    @property
    def history_path(self) -> Path:
        return self._history.path

    @property
    def tokens(self) -> int:
        """Tokens of the context as it stands (what the next ``context()`` starts from)."""
        return self._context.tokens

    def add(self, message: Message) -> None:
        """Append a message to the history (and to the context). Cheap: counts and buffers one line."""
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise TypeError(f"a message is a mapping with a role, not {message!r}")
        number = self._history.append(message)
        tokens = self._counter.message(message)
        self._history_tokens += tokens
        self._stats.messages += 1
        self._context.add(message, number, tokens)

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
            context = self._context
            summaries = self._summaries
            if context.tokens > budget:
                if mode != "compress":
                    self._compact()
                if mode == "compact" and context.tokens > budget:
                    self._elide()
                if summaries is not None and summaries.needed():
                    await summaries.compress()
            if summaries is not None:
                summaries.start_ahead()
            sent = context.tokens
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
            messages = context.messages()
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
        if self._summaries is not None:
            self._summaries.close()
        try:
            self._history.close()
        finally:
            unsynced, self._unsynced = self._unsynced, []
            sync_files(unsynced)

    async def aclose(self) -> None:
        """:meth:`close`, and wait until a snapshot being made ahead has stopped. The files written are
        synced in a worker thread, so the loop goes on serving the other agents meanwhile."""
        if self._summaries is not None:
            await self._summaries.aclose()
        if self._unsynced:
            await asyncio.to_thread(self.close)
        else:
            self.close()

    def __enter__(self) -> WorkingMemory:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- keeping within budget

    def _compact(self) -> None:
        """Store the long tool results outside the kept tail (each is looked at once)."""
        before = self._context.tokens
        refs = self._context.compact(
            self.config.max_tool_message_tokens,
            self._preview_chars,
            lambda number, content: self._write(self._results / f"result-{number}.txt", content),
        )
        if refs:
            self._stats.compactions += len(refs)
            self._emit({"action": "compact", "refs": refs, "tokens_before": before, "tokens_after": self.tokens})

    def _elide(self) -> None:
        """Leave out the fewest oldest messages (outside the tail, tool pairs whole) that fit the budget."""
        before = self._context.tokens
        cut = self._context.elide(self.config.max_total_tokens)
        if not cut:
            return
        self._stats.elisions += 1
        self._stats.elided_messages += cut
        removed = self._context.removed
        assert removed is not None
        self._emit(
            {
                "action": "elide",
                "messages": cut,
                "ref": f"history:{removed[0]}-{removed[1]}",
                "tokens_before": before,
                "tokens_after": self.tokens,
            }
        )

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
