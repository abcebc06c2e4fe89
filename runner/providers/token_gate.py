"""Streamed text on its way to the terminal across retries: never shown twice, and taken back or declared
void when a retried answer departs from what was already shown."""

from __future__ import annotations

from collections.abc import Callable

from runner.providers.base import CallContext


class TokenGate:
    """Passes streamed text to ``ctx.on_token`` so that a retried stream never duplicates text.

    * The first attempt streams live.
    * When an attempt fails after showing text and the sink has a ``reset()`` method (a renderer that can
      take back what it printed), ``reset()`` is called before the retry, and the retry streams live from
      scratch.
    * Otherwise what was shown cannot be taken back: the retry's text is compared with it and withheld while
      it repeats it; text past that point streams live. If the retry's answer departs from what was shown
      (a sampled reply rarely comes out the same twice), or ends before it, the shown text is void: a
      ``stream_diverged`` event is recorded, and a sink with a ``restart()`` method (the terminal) is told so
      (it says it on the screen), then given the new answer from its start. A plain callable gets nothing
      more of that attempt. (The returned ``ChatResult`` always holds the complete text of the attempt
      that succeeded.)
    """

    __slots__ = ("_sink", "_reset", "_restart", "_shown", "_parts", "_text", "_pos", "_diverged", "_ctx")

    def __init__(self, sink: Callable[[str], None] | None, ctx: CallContext | None = None) -> None:
        self._sink = sink
        reset = getattr(sink, "reset", None)
        self._reset: Callable[[], None] | None = reset if callable(reset) else None
        restart = getattr(sink, "restart", None)
        self._restart: Callable[[], None] | None = restart if callable(restart) else None
        self._ctx = ctx
        self._shown = ""  # text of earlier attempts still on the sink's screen
        self._parts: list[str] = []  # text shown during the current attempt
        self._text: list[str] = []  # the current attempt's whole text, while it is compared with _shown
        self._pos = 0  # length of the current attempt's text so far
        self._diverged = False

    def push(self, text: str) -> None:
        """Forward ``text`` as far as it is new."""
        sink = self._sink
        if sink is None or self._diverged:
            return
        shown = self._shown
        if shown:
            self._text.append(text)
        start, self._pos = self._pos, self._pos + len(text)
        if start >= len(shown):
            sink(text)
            self._parts.append(text)
            return
        overlap = min(len(shown), self._pos) - start
        if shown[start : start + overlap] != text[:overlap]:
            self._depart()
            return
        if len(text) > overlap:
            sink(text[overlap:])
            self._parts.append(text[overlap:])

    def finish(self) -> None:
        """The current attempt succeeded: an answer shorter than what was shown departs from it too."""
        if self._sink is not None and not self._diverged and self._pos < len(self._shown):
            self._depart()

    def _depart(self) -> None:
        ctx = self._ctx
        if ctx is not None and ctx.recorder is not None:
            ctx.recorder.emit("stream_diverged", ctx.node_id, {"shown_chars": len(self._shown)})
        if self._restart is None or self._sink is None:
            self._diverged = True
            return
        self._restart()
        whole = "".join(self._text)
        self._shown = ""  # void now: from here the screen holds this attempt's text
        self._text = []
        self._parts = [whole] if whole else []
        if whole:
            self._sink(whole)

    @property
    def shown_chars(self) -> int:
        return len(self._shown)

    def retry(self) -> int:
        """The attempt failed and another follows; returns the length of its discarded text."""
        discarded = self._pos
        self._shown += "".join(self._parts)
        self._parts = []
        self._text = []
        self._pos = 0
        self._diverged = False
        if self._shown and self._reset is not None:
            self._reset()
            self._shown = ""
        return discarded
