"""The terminal prompt of human gates (issue 23): ``runner run`` asks on the terminal when stdin and stderr are
one (:func:`can_prompt`), through :class:`TerminalPrompt.ask` (the asker of :class:`runner.engine.gates.Gates`).

One question at a time (gates in parallel branches wait their turn), the progress line paused meanwhile so it
never overwrites the question or the person's typing. Lines are read from stdin through the event loop
(``add_reader``), not a thread: a gate's ``timeout`` or Ctrl-C stops the wait at once, and no blocked thread
outlives the run. End of input (Ctrl-D) leaves the gate waiting, as when there is no terminal.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any, TextIO

from runner.engine.gates import answer_problem
from runner.errors import GateWaiting
from runner.progress import Progress
from runner.stages.gating import APPROVE, Decision, GateRequest, plain_field, read_answer

YES, NO = frozenset({"y", "yes"}), frozenset({"n", "no"})


def can_prompt(stdin: TextIO, stderr: TextIO) -> bool:
    """Whether a person can be asked: stdin and stderr are terminals."""
    try:
        return stdin.isatty() and stderr.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


class TerminalPrompt:
    """Asks on the terminal: ``stdin`` read line by line, the questions written on ``out`` (stderr)."""

    def __init__(self, stdin: TextIO, out: TextIO, bar: Progress | None = None) -> None:
        self.fd = stdin.fileno()
        self.out = out
        self.bar = bar
        self._buffer = b""
        self._turn: asyncio.Lock | None = None

    async def ask(self, request: GateRequest) -> Any:
        """A :class:`Decision` for an ``approve``, the answer (matching the schema: asked again until it does) for
        an ``ask``."""
        if self._turn is None:
            self._turn = asyncio.Lock()
        async with self._turn:
            if self.bar is not None:
                self.bar.pause()
            try:
                return await (self._approve(request) if request.kind == APPROVE else self._answer(request))
            finally:
                if self.bar is not None:
                    self.bar.resume()

    async def _approve(self, request: GateRequest) -> Decision:
        lines = ["", f"== approve: {request.stage} ==", request.text.rstrip()]
        for stage, text in request.shown.items():
            lines += [f"-- {stage} --", text.rstrip()]
        if request.timeout is not None:
            lines.append(f"(no decision within {request.timeout:g} s: {request.on_timeout or 'reject'})")
        self._say("\n".join(lines))
        while True:
            reply = (await self._line(request, "Approve? [y/n] ")).strip().lower()
            if reply in YES:
                return Decision(True, None, "terminal")
            if reply in NO:
                reason = (await self._line(request, "Reason (optional, Enter to skip): ")).strip()
                return Decision(False, reason or None, "terminal")
            self._say("please answer y or n")

    async def _answer(self, request: GateRequest) -> Any:
        plain = plain_field(request.schema)
        if plain is None:
            how = "JSON matching the schema:\n" + json.dumps(request.schema, indent=1)
        elif "enum" in plain[1]:
            how = "one of " + ", ".join(str(v) for v in plain[1]["enum"])
        else:
            how = "a " + str(plain[1].get("type", "value"))
        lines = ["", f"== ask: {request.stage} ==", request.text.rstrip(), f"(answer: {how})"]
        if request.timeout is not None:
            then = (
                f"the answer is {json.dumps(request.default, ensure_ascii=False)}"
                if request.on_timeout == "answer"
                else "the stage fails"
            )
            lines.append(f"(no answer within {request.timeout:g} s: {then})")
        self._say("\n".join(lines))
        while True:
            text = await self._line(request, "> ")
            try:
                value = read_answer(text, request.schema)
            except ValueError as exc:
                self._say(f"refused: {exc}; try again")
                continue
            problem = answer_problem(value, request.schema)
            if problem is None:
                return value
            self._say(f"refused: {problem}; try again")

    def _say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    async def _line(self, request: GateRequest, prompt: str) -> str:
        """The next line typed (without its line break). End of input: the gate waits."""
        self.out.write(prompt)
        self.out.flush()
        while b"\n" not in self._buffer:
            chunk = await self._read()
            if not chunk:
                self.out.write("\n")
                raise GateWaiting(
                    f"{request.kind} gate '{request.stage}' is waiting for a decision: the terminal's input ended",
                    request.stage,
                    request.kind,
                )
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode("utf-8", errors="replace").rstrip("\r")

    async def _read(self) -> bytes:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(self.fd, readable)
        try:
            await ready
        finally:
            loop.remove_reader(self.fd)
        return os.read(self.fd, 4096)
