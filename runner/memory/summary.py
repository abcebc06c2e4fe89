"""State snapshots for ``compress`` and ``auto`` modes: made when a turn needs one, or ahead in the background.

Messages older than the kept tail are summarised into a state snapshot (goals, facts, decisions, open questions)
that replaces them; a long stretch is cut into groups of at most ``summary_group_tokens`` that are summarised
concurrently and then merged. The next snapshot is started in the background as soon as the context passes
``compact_ratio_threshold`` of the budget, so it is made while the agent's model call runs and the turn that goes
over budget usually finds it ready (``summary_wait_seconds`` in the stats is what turns still waited).
:class:`Summaries` owns that one task; the memory cancels it when it closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from runner.config.memory import WorkingMemoryConfig
from runner.memory.context import Context
from runner.memory.policy import render_message, split_groups
from runner.memory.stats import MemoryStats
from runner.providers.base import Message

Summarize = Callable[[list[Message]], Awaitable[str]]

# Summary calls of one compression in flight at once; the provider's own limits apply on top.
SUMMARY_CONCURRENCY = 8

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


def summary_prompt(parts: Sequence[str]) -> list[Message]:
    return [
        {"role": "system", "content": SUMMARY_INSTRUCTIONS},
        {"role": "user", "content": "\n\n".join(parts)},
    ]


def merge_prompt(snapshots: Sequence[str]) -> list[Message]:
    body = "\n\n".join(f"### Part {i}\n{text}" for i, text in enumerate(snapshots, 1))
    return [{"role": "system", "content": MERGE_INSTRUCTIONS}, {"role": "user", "content": body}]


@dataclass(slots=True)
class Job:
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


class Summaries:
    """The snapshots of one agent's context; see the module docstring.

    ``write(name, text)`` keeps a file beside the stored results (each snapshot is kept, so a report can show
    what the model was told); ``emit(data)`` reports a ``memory`` event; figures go to ``stats``.
    """

    def __init__(
        self,
        config: WorkingMemoryConfig,
        summarize: Summarize,
        context: Context,
        stats: MemoryStats,
        *,
        ahead: bool,
        preview_chars: int,
        write: Callable[[str, str], None],
        emit: Callable[[dict[str, Any]], None],
    ) -> None:
        self.config = config
        self.ahead: Job | None = None  # the one background task; see aclose()
        self._summarize = summarize
        self._context = context
        self._stats = stats
        self._ahead_enabled = ahead
        self._preview_chars = preview_chars
        self._write = write
        self._emit = emit
        self._written = 0

    def needed(self) -> bool:
        config = self.config
        if config.working_summary_mode == "compress":
            return self._context.tokens > config.max_total_tokens
        if config.working_summary_mode == "auto":
            return self._context.tokens > config.compact_ratio_threshold * config.max_total_tokens
        return False

    async def compress(self) -> None:
        """Replace everything before the tail by a state snapshot (merged with the previous one).

        A snapshot made ahead (see :meth:`start_ahead`) is used first, waiting for it if it is not ready;
        only what it does not cover, if still too much, is summarised here, while the turn waits.
        """
        ahead, self.ahead = self.ahead, None
        if ahead is not None and ahead.task is not None and self._usable(ahead):
            waited_from = time.perf_counter()
            try:
                snapshot, groups, calls = await ahead.task
            except Exception as exc:  # the provider's error; summarising now may still work
                self._emit({"action": "summary_failed", "error": f"{type(exc).__name__}: {exc}", "ahead": True})
            else:
                self._apply(ahead, snapshot, groups, calls, time.perf_counter() - waited_from)
                if not self.needed():
                    return
        end = self._context.tail()
        if end == 0:
            return
        job = self._job(end, ahead=False)
        snapshot, groups, calls = await self._snapshot_of(job.items)
        self._apply(job, snapshot, groups, calls, time.perf_counter() - job.started)

    def start_ahead(self) -> None:
        """Start the next snapshot in the background once the context passes the ratio of the budget.

        The agent's model call then overlaps the summary call, and the turn that goes over budget finds
        the snapshot ready instead of waiting for it. In auto mode, results that compaction will store
        anyway are not counted, so a snapshot is made ahead only when compacting will not be enough.
        """
        config = self.config
        if not self._ahead_enabled or self.ahead is not None or config.working_summary_mode == "compact":
            return
        threshold = config.compact_ratio_threshold * config.max_total_tokens
        context = self._context
        tokens = context.tokens
        if tokens <= threshold:
            return
        end = context.tail()
        if end == 0:
            return
        if config.working_summary_mode == "auto":
            tokens -= context.compactable(end, config.max_tool_message_tokens, self._preview_chars)
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
        self.ahead = job

    def close(self) -> None:
        """Cancel the snapshot being made ahead, if any."""
        ahead, self.ahead = self.ahead, None
        if ahead is not None and ahead.task is not None and not ahead.task.done():
            try:
                ahead.task.cancel()
            except RuntimeError:  # its loop is closed; the task can never run again
                pass

    async def aclose(self) -> None:
        """Cancel the snapshot being made ahead on this loop, if any, and wait until it has stopped."""
        task = None if self.ahead is None else self.ahead.task
        if task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop():
            self.ahead = None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _job(self, end: int, *, ahead: bool) -> Job:
        """What a snapshot of ``view[:end]`` reads: rendered now, so later compaction cannot change it."""
        context = self._context
        count = context.counter.text
        # One message may be at most half a group (in characters, at ~4 a token), so a call always fits.
        max_chars = self.config.group_tokens * 2
        items: list[tuple[str, int, bool]] = []
        if context.snapshot is not None and context.removed is not None:
            first, last = context.removed
            text = f"Previous state snapshot (messages #{first}-#{last}):\n{context.snapshot}"
            items.append((text, count(text), False))
        for entry in context.view[:end]:
            text = render_message(entry.message, entry.number, max_chars)
            items.append((text, count(text), entry.message.get("role") == "tool"))
        return Job(
            items=items,
            last=context.view[end - 1].number,
            messages=end,
            based_on=context.removed,
            started=time.perf_counter(),
            tokens=context.tokens,
            ahead=ahead,
        )

    async def _snapshot_of(self, items: list[tuple[str, int, bool]]) -> tuple[str, int, int]:
        """The snapshot of a transcript, the number of groups it was read in, and the calls it took."""
        limit = self.config.group_tokens
        groups = split_groups(items, limit)
        parts = await self._summarise([summary_prompt(group) for group in groups])
        calls = len(parts)
        while len(parts) > 1:
            merge_items = [(text, self._context.counter.text(text), False) for text in parts]
            merges = split_groups(merge_items, limit, min_items=2)
            parts = await self._summarise([merge_prompt(group) for group in merges])
            calls += len(parts)
        return parts[0], len(groups), calls

    def _apply(self, job: Job, snapshot: str, groups: int, calls: int, waited: float) -> None:
        """Put the snapshot in place of the messages it covers."""
        context = self._context
        before = context.tokens
        cut = job.last - context.view[0].number + 1
        context.leave_out(cut, snapshot)
        assert context.removed is not None
        first, last = context.removed
        self._written += 1
        header = f"# Snapshot {self._written}: messages #{first}-#{last}\n\n"
        self._write(f"snapshot-{self._written}.md", header + snapshot)
        seconds = waited if job.task is None else job.seconds
        stats = self._stats
        stats.summaries += 1
        stats.summaries_ahead += job.ahead
        stats.summarised_messages += cut
        stats.summary_seconds += seconds
        stats.summary_wait_seconds += waited
        self._emit(
            {
                "action": "summary",
                "messages": cut,
                "groups": groups,
                "calls": calls,
                "seconds": seconds,
                "waited": waited,
                "ahead": job.ahead,
                "ref": f"history:{first}-{last}",
                "tokens_before": before,
                "tokens_after": context.tokens,
            }
        )

    def _usable(self, job: Job) -> bool:
        """Whether a snapshot made ahead still fits: same earlier snapshot, its messages still in the
        context and before the tail, and a cut after them that keeps tool exchanges whole."""
        task = job.task
        assert task is not None
        if task.cancelled() or task.get_loop() is not asyncio.get_running_loop():
            return False
        return job.based_on == self._context.removed and self._context.cut_after(job.last) is not None

    async def _summarise(self, prompts: list[list[Message]]) -> list[str]:
        summarize = self._summarize
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
