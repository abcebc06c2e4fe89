"""What an agent's next model call is sent, and the cuts that keep it within the token budget.

:class:`Context` holds the system message (sent with the memory's notes appended), the messages still in the
context (the *view*: consecutive lines of the history, each with its token count), the range of the history that
has left it, and the snapshot that stands for that range. Its methods apply the decisions of
:mod:`runner.memory.policy`: where the kept tail begins, storing long tool results out of the context (compact),
leaving out the oldest messages (elide), dropping what a snapshot covers. A tool call and its results are never
separated: exchanges are tracked as messages arrive, so finding a safe cut needs no scan of the history.

It does no I/O and keeps no figures: :class:`runner.memory.working.WorkingMemory` writes the files, emits the
events and counts.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass

from runner.memory.policy import exchange_start, memory_notes, stand_in, with_notes
from runner.memory.tokens import TokenCounter
from runner.providers.base import Message


@dataclass(slots=True)
class Entry:
    """A message in the context."""

    message: Message  # as sent: the original, or a copy whose content is a stored result's stand-in
    tokens: int
    number: int  # the message's line in the history file, 1-based
    start: int  # the number of the message that starts its tool-call exchange (see exchange_start)
    reach: int  # the number of the last message of the exchange this one starts (itself if none)


class Context:
    """One agent's context and its cut policy; see the module docstring. ``keep_recent`` messages at the end
    (more, to keep a tool exchange whole) are never cut."""

    def __init__(self, counter: TokenCounter, keep_recent: int) -> None:
        self.counter = counter
        self.keep_recent = keep_recent
        self.system: Message | None = None
        self.system_sent: Message | None = None  # with the notes
        self.system_tokens = 0
        self.view: list[Entry] = []
        self.view_tokens = 0
        self.removed: tuple[int, int] | None = None  # the history's lines that have left the context
        self.snapshot: str | None = None  # what stands for them, when they were summarised
        self.compacted_below = 0  # tool results on lines below this one have been looked at
        self._calls: dict[str, int] = {}  # tool call id -> number of the message that made the call

    @property
    def tokens(self) -> int:
        """Tokens of the context as it stands."""
        return self.system_tokens + self.view_tokens

    def add(self, message: Message, number: int, tokens: int) -> None:
        """Take in the history's line ``number``: the system message if it comes first, else a message."""
        if message["role"] == "system" and self.system is None and not self.view and self.removed is None:
            self.system = message
            self.refresh_system()
            return
        view = self.view
        start = exchange_start(message, number, view[-1].start if view else None, self._calls)
        if start != number and view:
            opener = start - view[0].number  # the view holds consecutive numbers
            if 0 <= opener < len(view):
                view[opener].reach = number
        view.append(Entry(message, tokens, number, start, number))
        self.view_tokens += tokens

    def messages(self) -> list[Message]:
        """The messages to send, system message first."""
        messages = [entry.message for entry in self.view]
        if self.system_sent is not None:
            messages.insert(0, self.system_sent)
        return messages

    def refresh_system(self) -> None:
        self.system_sent = with_notes(self.system, memory_notes(self.removed, self.snapshot))
        self.system_tokens = 0 if self.system_sent is None else self.counter.message(self.system_sent)

    def tail(self) -> int:
        """Where the kept tail begins (see :func:`runner.memory.policy.tail_start`); looks at the tail only."""
        view = self.view
        cut = max(0, len(view) - self.keep_recent)
        if cut == 0 or cut == len(view):
            return cut
        lowest = min(entry.start for entry in view[cut:])
        while cut > 0 and lowest < view[cut].number:
            cut -= 1
            lowest = min(lowest, view[cut].start)
        return cut

    def compact(self, limit: int, preview_chars: int, store: Callable[[int, str], None]) -> list[str]:
        """Replace each tool result of more than ``limit`` tokens outside the kept tail by its stand-in, after
        ``store(number, content)`` has kept it; each result is looked at once. Returns the refs stored."""
        view = self.view
        end = self.tail()
        start = bisect.bisect_left(view, self.compacted_below, hi=end, key=lambda entry: entry.number)
        refs = []
        for entry in view[start:end]:
            message = entry.message
            content = message.get("content")
            if message.get("role") != "tool" or not isinstance(content, str):
                continue
            size = self.counter.text(content)
            if size <= limit:
                continue
            ref = f"result:{entry.number}"
            store(entry.number, content)
            replaced = {**message, "content": stand_in(content, ref, size, preview_chars)}
            tokens = self.counter.message(replaced)
            self.view_tokens += tokens - entry.tokens
            entry.message, entry.tokens = replaced, tokens
            refs.append(ref)
        if end:
            self.compacted_below = view[end - 1].number + 1
        return refs

    def compactable(self, end: int, limit: int, preview_chars: int) -> int:
        """About how many tokens compacting ``view[:end]`` would save (results not yet looked at)."""
        view = self.view
        start = bisect.bisect_left(view, self.compacted_below, hi=end, key=lambda entry: entry.number)
        stand_in_tokens = preview_chars // 4 + 50
        return sum(
            entry.tokens - stand_in_tokens
            for entry in view[start:end]
            if entry.tokens > limit
            and entry.message.get("role") == "tool"
            and isinstance(entry.message.get("content"), str)
        )

    def elide(self, budget: int) -> int:
        """Leave out the fewest oldest messages (outside the tail, tool pairs whole) that bring the context
        within ``budget``, or all before the tail if no fewer do; return how many (0: none can leave)."""
        view = self.view
        end = self.tail()
        if end == 0:
            return 0
        before = self.tokens
        first = self.removed[0] if self.removed else view[0].number
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
            notes = with_notes(self.system, memory_notes((first, view[k - 1].number), self.snapshot))
            system_tokens = 0 if notes is None else self.counter.message(notes)
            if before - removed - self.system_tokens + system_tokens <= budget:
                cut = k
                break
        self.leave_out(cut)
        return cut

    def cut_after(self, last: int) -> int | None:
        """How many messages of the view end at history line ``last``, if they can leave the context together
        (all before the tail, no tool exchange cut in two); None if they cannot."""
        view = self.view
        if not view or view[0].number > last:
            return None
        cut = last - view[0].number + 1
        if cut > self.tail():
            return None
        reach = max(entry.reach for entry in view[:cut])
        return cut if cut == len(view) or reach < view[cut].number else None

    def leave_out(self, cut: int, snapshot: str | None = None) -> None:
        """Take ``view[:cut]`` out of the context, extending the left-out range of the history; ``snapshot``,
        when given, now stands for the whole range."""
        view = self.view
        first = self.removed[0] if self.removed else view[0].number
        self.removed = (first, view[cut - 1].number)
        self.view_tokens -= sum(entry.tokens for entry in view[:cut])
        del view[:cut]
        if snapshot is not None:
            self.snapshot = snapshot
        self.refresh_system()
