"""WorkingMemory: each mode at the budget's boundary, cuts that keep tool pairs whole, list content,
the JSONL history, concurrent group summaries, the read-back tool and the figures for the report.

Token figures use the approx counter: a message costs ceil(characters / 4) + 3. Helpers below build
messages of a known cost so the totals in each test are exact.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from runner.config.memory import WorkingMemoryConfig
from runner.errors import ToolError
from runner.events import Recorder
from runner.memory.policy import memory_notes, stand_in, with_notes
from runner.memory.summary import MERGE_INSTRUCTIONS, SUMMARY_INSTRUCTIONS
from runner.memory.tokens import ApproxCounter
from runner.memory.working import WorkingMemory
from runner.providers.base import Message

pytestmark = pytest.mark.timeout(10)

T = TypeVar("T")
COUNT = ApproxCounter()
SNAPSHOT = "Goals: g\nFacts: f\nDecisions: d\nOpen questions: q"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 5))


def text(role: str, tokens: int, fill: str = "x") -> Message:
    """A message costing exactly ``tokens`` (at least 3)."""
    return {"role": role, "content": fill * (4 * (tokens - 3))}


def call(*ids: str) -> Message:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": i, "type": "function", "function": {"name": "f", "arguments": "{}"}} for i in ids],
    }


def result(call_id: str, chars: int, fill: str = "r") -> Message:
    return {"role": "tool", "tool_call_id": call_id, "content": fill * chars}


class FakeSummarizer:
    """Records every prompt; answers ``SNAPSHOT`` (or ``answer(prompt)``) after ``delay`` seconds."""

    def __init__(
        self,
        delay: float | Callable[[list[Message]], float] = 0.0,
        answer: Callable[[list[Message]], str] | None = None,
        hold: Callable[[list[Message]], Awaitable[None]] | None = None,
    ) -> None:
        self.prompts: list[list[Message]] = []
        self.delay = delay
        self.answer = answer
        self.hold = hold  # awaited in flight, after the delay: a test orders the answers by events
        self.in_flight = 0
        self.max_in_flight = 0

    async def __call__(self, prompt: list[Message]) -> str:
        self.prompts.append(prompt)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay(prompt) if callable(self.delay) else self.delay)
            if self.hold is not None:
                await self.hold(prompt)
        finally:
            self.in_flight -= 1
        return self.answer(prompt) if self.answer else SNAPSHOT


def memory(
    tmp_path: Path,
    mode: str,
    budget: int = 300,
    keep: int = 2,
    *,
    summarize: Callable[[list[Message]], Awaitable[str]] | None = None,
    recorder: Recorder | None = None,
    ahead: bool = False,
    **options: Any,
) -> WorkingMemory:
    config = WorkingMemoryConfig(
        max_total_tokens=budget,
        keep_recent_count=keep,
        working_summary_mode=mode,
        max_tool_message_tokens=options.pop("max_tool", 64),
        **options,
    )
    if summarize is None and mode != "compact":
        summarize = FakeSummarizer()
    return WorkingMemory(
        config, run_dir=tmp_path, agent="a", summarize=summarize, recorder=recorder, summarize_ahead=ahead
    )


def history(tmp_path: Path, agent: str = "a") -> list[Message]:
    lines = (tmp_path / "memory" / f"{agent}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def tokens(messages: list[Message]) -> int:
    return sum(COUNT.message(m) for m in messages)


SYSTEM = text("system", 7, "s")  # 16 characters


# -- compact ---------------------------------------------------------------------------------------------


def compact_case(tool_chars: int) -> list[Message]:
    """system 7 + user 12 + call 5 + result (tool_chars + 2)/4 + 3 + user 12 + assistant 12 (the tail)."""
    return [
        SYSTEM,
        text("user", 12),
        call("c1"),
        result("c1", tool_chars),
        text("user", 12),
        text("assistant", 12),
    ]


def test_compact_exactly_at_budget_changes_nothing(tmp_path: Path) -> None:
    messages = compact_case(994)  # result: ceil(996 / 4) + 3 = 252; total 300
    assert tokens(messages) == 300
    with memory(tmp_path, "compact") as mem:
        mem.extend(messages)
        sent = run(mem.context())
        assert sent == messages
        assert all(a is b for a, b in zip(sent, messages, strict=True))
        assert mem.stats().compactions == 0
        assert not (tmp_path / "memory" / "a").exists()


def test_compact_one_token_over_stores_the_result(tmp_path: Path) -> None:
    messages = compact_case(998)  # result 253; total 301
    assert tokens(messages) == 301
    recorder = Recorder()
    with memory(tmp_path, "compact", recorder=recorder) as mem:
        mem.extend(messages)
        sent = run(mem.context())
        notice = (
            "\n[... 934 more characters not shown: the full result (250 tokens) is stored as result:4; "
            'read it with read_stored_result(ref="result:4")]'
        )
        assert sent[3] == {"role": "tool", "tool_call_id": "c1", "content": "r" * 64 + notice}
        assert sent[:3] + sent[4:] == messages[:3] + messages[4:]
        assert (tmp_path / "memory" / "a" / "result-4.txt").read_text(encoding="utf-8") == "r" * 998
        stats = mem.stats()
        assert stats.compactions == 1
        assert stats.tokens_before == 301
        assert stats.tokens_after == tokens(sent) == 301 - 253 + COUNT.message(sent[3])
        assert stats.tokens_after <= 300
        assert stats.elisions == 0
        assert [e[1:] for e in recorder.events] == [
            (
                "memory",
                "a",
                {
                    "agent": "a",
                    "action": "compact",
                    "refs": ["result:4"],
                    "tokens_before": 301,
                    "tokens_after": stats.tokens_after,
                },
            )
        ]
        # Looked at once: the next turn neither stores it again nor emits anything.
        run(mem.context())
        assert mem.stats().compactions == 1
        assert len(recorder.events) == 1


def test_stand_in_text() -> None:
    assert stand_in("abcdefgh", "result:9", 2, 3) == (
        "abc\n[... 5 more characters not shown: the full result (2 tokens) is stored as result:9; "
        'read it with read_stored_result(ref="result:9")]'
    )


def test_compact_leaves_short_and_recent_results(tmp_path: Path) -> None:
    # max_tool 64: a result of 256 characters is 64 tokens (kept), 257 is 65 (stored). The last result is
    # in the kept tail, so it stays whole however long it is.
    messages = [
        SYSTEM,
        call("c1"),
        result("c1", 256),
        call("c2"),
        result("c2", 257),
        call("c3"),
        result("c3", 2000),
    ]
    with memory(tmp_path, "compact", budget=660, keep=2) as mem:
        mem.extend(messages)
        sent = run(mem.context())
        assert mem.stats().elisions == 0
        assert sent[2] is messages[2]
        assert sent[4]["content"].startswith("r" * 64 + "\n[... 193 more characters not shown")
        assert sent[6] is messages[6]
        assert mem.stats().compactions == 1


def elision_case(last_tokens: int) -> list[Message]:
    # system 7 + 24 messages of 12 + one of last_tokens
    body = [text("user" if i % 2 == 0 else "assistant", 12) for i in range(24)]
    return [SYSTEM, *body, text("user", last_tokens)]


def test_compact_leaves_out_the_fewest_oldest_messages(tmp_path: Path) -> None:
    at_budget = elision_case(5)
    assert tokens(at_budget) == 300
    with memory(tmp_path / "at", "compact") as mem:
        mem.extend(at_budget)
        assert run(mem.context()) == at_budget
        assert mem.stats().elisions == 0

    over = elision_case(6)
    assert tokens(over) == 301
    recorder = Recorder()
    with memory(tmp_path / "over", "compact", recorder=recorder) as mem:
        mem.extend(over)
        sent = run(mem.context())
        left_out = mem.stats().elided_messages
        notes = memory_notes((2, 1 + left_out), None)
        assert sent[0] == {"role": "system", "content": "s" * 16 + "\n\n" + notes}
        assert notes == (
            f"## Working memory\nEarlier messages #2-#{1 + left_out} of this conversation are not shown; "
            f'their full text is kept: read it with read_stored_result(ref="history:2-{1 + left_out}").'
        )
        assert sent[1:] == over[1 + left_out :]
        assert tokens(sent) <= 300
        # The fewest: keeping one more message would not fit.
        system = with_notes(SYSTEM, memory_notes((2, left_out), None))
        assert system is not None
        assert tokens([system, *over[left_out:]]) > 300
        assert left_out == 4  # the notes cost 39 tokens: 3 x 12 cannot pay for them and the 1 over
        assert recorder.events[0][1:] == (
            "memory",
            "a",
            {
                "agent": "a",
                "action": "elide",
                "messages": 4,
                "ref": "history:2-5",
                "tokens_before": 301,
                "tokens_after": tokens(sent),
            },
        )


def test_compact_extends_the_left_out_range(tmp_path: Path) -> None:
    with memory(tmp_path, "compact") as mem:
        mem.extend(elision_case(6))
        run(mem.context())
        mem.extend([text("assistant", 40), text("user", 40)])
        sent = run(mem.context())
        stats = mem.stats()
        assert stats.elisions == 2
        last = 1 + stats.elided_messages
        assert sent[0]["content"].endswith(f'read_stored_result(ref="history:2-{last}").')
        assert tokens(sent) <= 300
        assert sent[1:] == (elision_case(6) + [text("assistant", 40), text("user", 40)])[last:]


# -- compress --------------------------------------------------------------------------------------------


def test_compress_exactly_at_budget_calls_nothing(tmp_path: Path) -> None:
    summarizer = FakeSummarizer()
    messages = elision_case(5)
    with memory(tmp_path, "compress", summarize=summarizer) as mem:
        mem.extend(messages)
        assert run(mem.context()) == messages
    assert summarizer.prompts == []


def test_compress_one_token_over_summarises_all_but_the_tail(tmp_path: Path) -> None:
    summarizer = FakeSummarizer()
    recorder = Recorder()
    # system 7 + user 10 (25 characters) + call 5 + result 9 + filler 70 + tail 100 + 100
    filler = 70
    messages = [
        SYSTEM,
        {"role": "user", "content": "Find the fastest loop.", "name": "ann"},
        call("c1"),
        result("c1", 20),
        text("assistant", filler),
        text("user", 100),
        text("assistant", 100),
    ]
    assert tokens(messages) == 301
    with memory(tmp_path, "compress", summarize=summarizer, recorder=recorder) as mem:
        mem.extend(messages)
        sent = run(mem.context())
        body = "x" * (4 * (filler - 3))
        assert summarizer.prompts == [
            [
                {"role": "system", "content": SUMMARY_INSTRUCTIONS},
                {
                    "role": "user",
                    "content": "[#2] user ann: Find the fastest loop.\n\n"
                    "[#3] assistant\n  -> calls f({}) [id c1]\n\n"
                    f"[#4] tool (result of call c1): {'r' * 20}\n\n"
                    f"[#5] assistant: {body}",
                },
            ]
        ]
        notes = (
            "## Working memory\nEarlier messages #2-#5 of this conversation are summarised in the state "
            'snapshot below; their full text is kept: read it with read_stored_result(ref="history:2-5").'
            f"\n\n{SNAPSHOT}"
        )
        assert sent == [{"role": "system", "content": "s" * 16 + "\n\n" + notes}, messages[5], messages[6]]
        stats = mem.stats()
        assert (stats.summaries, stats.summary_calls, stats.summarised_messages) == (1, 1, 4)
        assert stats.tokens_after == tokens(sent)
        snapshot_file = tmp_path / "memory" / "a" / "snapshot-1.md"
        assert snapshot_file.read_text(encoding="utf-8") == f"# Snapshot 1: messages #2-#5\n\n{SNAPSHOT}"
        (event,) = recorder.events
        data = event[3]
        assert data is not None
        seconds = data.pop("seconds")
        assert isinstance(seconds, float)
        assert data.pop("waited") == seconds  # made while the turn waited
        assert data == {
            "agent": "a",
            "action": "summary",
            "ahead": False,
            "messages": 4,
            "groups": 1,
            "calls": 1,
            "ref": "history:2-5",
            "tokens_before": 301,
            "tokens_after": tokens(sent),
        }


def test_compress_folds_the_previous_snapshot_in(tmp_path: Path) -> None:
    answers = iter(["SNAP-1", "SNAP-2"])
    summarizer = FakeSummarizer(answer=lambda prompt: next(answers))
    with memory(tmp_path, "compress", summarize=summarizer) as mem:
        mem.extend(elision_case(6))
        run(mem.context())
        mem.extend([text("assistant", 150), text("user", 150)])
        sent = run(mem.context())
        assert summarizer.prompts[1][1]["content"].startswith(
            "Previous state snapshot (messages #2-#24):\nSNAP-1\n\n[#25] assistant: "
        )
        assert sent[0]["content"].endswith('ref="history:2-26").\n\nSNAP-2')
        assert sent[1:] == [text("assistant", 150), text("user", 150)]


def test_system_message_is_made_when_there_is_none(tmp_path: Path) -> None:
    with memory(tmp_path, "compress") as mem:
        mem.extend([text("user", 150), text("assistant", 150), text("user", 10)])
        sent = run(mem.context())
        assert sent[0] == {"role": "system", "content": memory_notes((1, 1), SNAPSHOT)}
        assert sent[1:] == [text("assistant", 150), text("user", 10)]


# -- auto ------------------------------------------------------------------------------------------------


def auto_case(filler_tokens: int) -> list[Message]:
    # system 7 + user 12 + call 5 + result 504 + filler + assistant 12; the last two are the tail.
    return [
        SYSTEM,
        text("user", 12),
        call("c1"),
        result("c1", 2000),
        text("user", filler_tokens),
        text("assistant", 12),
    ]


STAND_IN_TOKENS = COUNT.message(
    {"role": "tool", "tool_call_id": "c1", "content": stand_in("r" * 2000, "result:4", 500, 64)}
)


def test_auto_exactly_at_budget_does_nothing(tmp_path: Path) -> None:
    messages = [
        SYSTEM,
        text("user", 12),
        call("c1"),
        result("c1", 1394),
        text("user", 12),
        text("assistant", 12),
    ]
    assert tokens(messages) == 400
    summarizer = FakeSummarizer()
    with memory(tmp_path, "auto", budget=400, summarize=summarizer) as mem:
        mem.extend(messages)
        assert run(mem.context()) == messages
        assert mem.stats().compactions == 0
    assert summarizer.prompts == []


def test_auto_compacts_and_stops_at_the_ratio(tmp_path: Path) -> None:
    # After compaction: 36 + stand-in + filler == 300 == 0.75 x 400, exactly at the ratio: no summary.
    filler = 300 - 36 - STAND_IN_TOKENS
    messages = auto_case(filler)
    assert tokens(messages) > 400
    summarizer = FakeSummarizer()
    with memory(tmp_path, "auto", budget=400, summarize=summarizer) as mem:
        mem.extend(messages)
        sent = run(mem.context())
        assert tokens(sent) == 300
        assert mem.stats().compactions == 1
        assert sent[3]["content"].startswith("r" * 64 + "\n[... 1936 more characters not shown")
    assert summarizer.prompts == []


def test_auto_compresses_the_compacted_history_one_token_over_the_ratio(tmp_path: Path) -> None:
    filler = 301 - 36 - STAND_IN_TOKENS
    messages = auto_case(filler)
    summarizer = FakeSummarizer()
    with memory(tmp_path, "auto", budget=400, summarize=summarizer) as mem:
        mem.extend(messages)
        sent = run(mem.context())
        stats = mem.stats()
        assert (stats.compactions, stats.summaries) == (1, 1)
        assert sent[1:] == messages[4:]
        # The summary read the compacted result, whose reference it can keep.
        transcript = summarizer.prompts[0][1]["content"]
        assert f"[#4] tool (result of call c1): {'r' * 64}\n[... 1936 more characters" in transcript
        assert 'read_stored_result(ref="result:4")]' in transcript
        assert "r" * 65 not in transcript


def test_auto_under_budget_but_over_ratio_does_nothing(tmp_path: Path) -> None:
    # The ratio applies after compaction, and compaction only once the budget is exceeded.
    summarizer = FakeSummarizer()
    messages = elision_case(5)
    with memory(tmp_path, "auto", budget=300, summarize=summarizer) as mem:
        mem.extend(messages)
        assert run(mem.context()) == messages
    assert summarizer.prompts == []


# -- keep_recent_count larger than the history -----------------------------------------------------------


@pytest.mark.parametrize("mode", ["compact", "compress", "auto"])
def test_keep_recent_larger_than_history_sends_everything(tmp_path: Path, mode: str) -> None:
    summarizer = FakeSummarizer()
    recorder = Recorder()
    messages = [SYSTEM, call("c1"), result("c1", 2000), text("user", 100)]
    with memory(tmp_path, mode, keep=50, summarize=summarizer, recorder=recorder) as mem:
        mem.extend(messages)
        sent = run(mem.context())
        assert sent == messages
        stats = mem.stats()
        assert (stats.compactions, stats.elisions, stats.summaries, stats.over_budget_turns) == (0, 0, 0, 1)
        assert [e[3] for e in recorder.events] == [
            {"agent": "a", "action": "over_budget", "tokens": tokens(messages), "budget": 300}
        ]
    assert summarizer.prompts == []


# -- tool calls and results at the cut -------------------------------------------------------------------


def pair_case() -> list[Message]:
    # keep=2 would cut between the two results of one call; the cut moves back to the call.
    return [
        SYSTEM,
        text("user", 150),
        text("assistant", 150),
        call("c1", "c2"),
        result("c1", 40),
        result("c2", 40),
    ]


def test_compress_cut_keeps_a_call_with_its_results(tmp_path: Path) -> None:
    summarizer = FakeSummarizer()
    messages = pair_case()
    with memory(tmp_path, "compress", keep=2, summarize=summarizer) as mem:
        mem.extend(messages)
        sent = run(mem.context())
        assert sent[1:] == messages[3:]
        assert mem.stats().summarised_messages == 2


def test_compact_cut_keeps_a_call_with_its_results(tmp_path: Path) -> None:
    # Leaving out the first three messages (up to the first result) would fit the budget, but would
    # strand the second result: the cut moves on past it, as the tail (keep=0) allows.
    results = [result("c1", 386), result("c2", 386)]  # 100 tokens each, under max_tool 250
    messages = [SYSTEM, text("user", 20), call("c1", "c2"), *results, text("user", 100)]
    assert tokens(messages) == 333
    with memory(tmp_path, "compact", keep=0, max_tool=250) as mem:
        mem.extend(messages)
        sent = run(mem.context())
        assert mem.stats().elided_messages == 4
        assert sent[1:] == messages[5:]
        assert tokens(sent) <= 300


def test_cut_never_strands_a_result_whose_call_is_far_back(tmp_path: Path) -> None:
    # A user message between a call and its late result: the cut moves back to the call itself.
    messages = [
        SYSTEM,
        text("user", 200),
        call("c1"),
        text("user", 100),
        result("c1", 40),
        text("assistant", 5),
    ]
    with memory(tmp_path, "compress", keep=3) as mem:
        mem.extend(messages)
        sent = run(mem.context())
        assert sent[1:] == messages[2:]


# -- list-shaped content ---------------------------------------------------------------------------------

IMAGE = {"type": "image_url", "image_url": {"url": "https://example.invalid/cat.png"}}


def test_list_content_is_never_compacted(tmp_path: Path) -> None:
    listed = {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "r" * 2000}, IMAGE]}
    messages = [SYSTEM, call("c1"), listed, text("user", 12), text("assistant", 12)]
    with memory(tmp_path, "compact", budget=2000) as mem:
        mem.extend(messages)
        sent = run(mem.context())
        assert sent == messages
        assert mem.stats().compactions == 0


def test_list_content_is_summarised_whole_or_sent_whole(tmp_path: Path) -> None:
    summarizer = FakeSummarizer()
    old: Message = {"role": "user", "content": [{"type": "text", "text": "look at this"}, IMAGE]}
    recent: Message = {"role": "user", "content": [{"type": "text", "text": "and this"}, IMAGE]}
    system: Message = {"role": "system", "content": [{"type": "text", "text": "be brief"}]}
    messages = [system, old, text("assistant", 12), recent]
    assert tokens(messages) > 1000
    with memory(tmp_path, "compress", budget=1000, keep=1, summarize=summarizer) as mem:
        mem.extend(messages)
        sent = run(mem.context())
        assert sent[1] is recent
        assert sent[0] == {
            "role": "system",
            "content": [
                {"type": "text", "text": "be brief"},
                {"type": "text", "text": memory_notes((2, 3), SNAPSHOT)},
            ],
        }
        assert summarizer.prompts[0][1]["content"] == (
            f"[#2] user: look at this\n[image_url part]\n\n[#3] assistant: {'x' * 36}"
        )


# -- the JSONL history -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["compact", "compress", "auto"])
def test_history_holds_every_message_ever_added(tmp_path: Path, mode: str) -> None:
    added: list[Message] = []
    with memory(tmp_path, mode, budget=300, keep=3) as mem:
        mem.add(SYSTEM)
        added.append(SYSTEM)
        for turn in range(30):
            batch = [
                {"role": "user", "content": f"turn {turn}: ünïcødé ✓ 😀 lone \ud800"},
                call(f"c{turn}"),
                result(f"c{turn}", 50 * (turn % 9)),
                {"role": "assistant", "content": [{"type": "text", "text": f"answer {turn}"}, IMAGE]}
                if turn % 5 == 0
                else text("assistant", 20),
            ]
            mem.extend(batch)
            added.extend(batch)
            run(mem.context())
            assert history(tmp_path) == added  # written at every context() call
        stats = mem.stats()
        assert stats.compactions + stats.elisions + stats.summaries > 0
        assert stats.messages == len(added)
    assert history(tmp_path) == added
    lines = (tmp_path / "memory" / "a.jsonl").read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == len(added) + 1


def test_history_is_buffered_until_an_await_point_or_close(tmp_path: Path) -> None:
    path = tmp_path / "memory" / "a.jsonl"
    mem = memory(tmp_path, "compact")
    mem.add(SYSTEM)
    assert path.read_bytes() == b""
    run(mem.context())
    assert history(tmp_path) == [SYSTEM]
    mem.add(text("user", 5))
    mem.close()
    assert history(tmp_path) == [SYSTEM, text("user", 5)]
    mem.close()  # twice is fine


def test_second_memory_of_the_same_name_appends_and_numbers_on(tmp_path: Path) -> None:
    path = tmp_path / "memory" / "a.jsonl"
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"role":"user","content":"one"}\n{"role":"user","con')  # cut short by a crash
    with memory(tmp_path, "compact") as mem:
        mem.add(text("user", 5))
        run(mem.context())
        assert mem.read_stored_result("history:3-3") == f"[#3] user: {'x' * 8}"
    assert path.read_bytes().splitlines()[1:] == [
        b'{"role":"user","con',
        b'{"role":"user","content":"xxxxxxxx"}',
    ]


# -- summaries of long histories in concurrent groups ----------------------------------------------------


def test_long_history_is_summarised_in_concurrent_groups(tmp_path: Path) -> None:
    # 12 messages of 98 tokens go into groups of at most 300 tokens of transcript: 4 groups, then one
    # merge. Later groups answer first; the merge still sees the parts in conversation order.
    firsts = ["[#2]", "[#5]", "[#8]", "[#11]"]  # each group's first message
    answered = {first: asyncio.Event() for first in firsts}
    answer_order: list[str] = []

    def first(prompt: list[Message]) -> str:
        content: str = prompt[1]["content"]
        return content[: content.index("]") + 1]

    def answer(prompt: list[Message]) -> str:
        if prompt[0]["content"] == MERGE_INSTRUCTIONS:
            return "MERGED"
        answer_order.append(first(prompt))
        answered[first(prompt)].set()
        return "part from " + first(prompt)

    async def hold(prompt: list[Message]) -> None:
        # A group answers once the next group has answered (the last at once): only calls in flight together
        # can answer so; one after another, the first would wait for the second (a failure after 5 s).
        if prompt[0]["content"] != MERGE_INSTRUCTIONS and first(prompt) != firsts[-1]:
            await asyncio.wait_for(answered[firsts[firsts.index(first(prompt)) + 1]].wait(), 5)

    summarizer = FakeSummarizer(answer=answer, hold=hold)
    # Each message renders to 98-100 tokens ("[#10] assistant: " + 380 characters), so three fit in 300.
    messages = [SYSTEM] + [text("user" if i % 2 == 0 else "assistant", 98) for i in range(12)] + [text("user", 5)]
    with memory(tmp_path, "compress", budget=400, keep=1, summarize=summarizer, summary_group_tokens=300) as mem:
        mem.extend(messages)
        sent = run(mem.context())
        assert summarizer.max_in_flight == 4
        assert answer_order == firsts[::-1]
        assert [p[0]["content"] for p in summarizer.prompts] == [SUMMARY_INSTRUCTIONS] * 4 + [MERGE_INSTRUCTIONS]
        assert summarizer.prompts[4][1]["content"] == (
            "### Part 1\npart from [#2]\n\n### Part 2\npart from [#5]\n\n"
            "### Part 3\npart from [#8]\n\n### Part 4\npart from [#11]"
        )
        stats = mem.stats()
        assert (stats.summaries, stats.summary_calls, stats.summarised_messages) == (1, 5, 12)
        assert stats.summary_call_seconds > stats.summary_seconds
        assert sent == [with_notes(SYSTEM, memory_notes((2, 13), "MERGED")), messages[-1]]


def test_a_failing_summary_raises_its_own_error_and_changes_nothing(tmp_path: Path) -> None:
    class Boom(Exception):
        pass

    calls = 0

    async def summarize(prompt: list[Message]) -> str:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise Boom("endpoint down")
        await asyncio.sleep(0.05)
        return SNAPSHOT

    messages = [SYSTEM] + [text("user", 103) for _ in range(6)] + [text("user", 5)]
    with memory(tmp_path, "compress", budget=400, keep=1, summarize=summarize, summary_group_tokens=300) as mem:
        mem.extend(messages)
        with pytest.raises(Boom, match="endpoint down"):
            run(mem.context())
        assert mem.tokens == tokens(messages)
        sent = run(mem.context())  # the next turn tries again
        assert sent[1:] == messages[-1:]


def test_messages_added_during_a_summary_stay(tmp_path: Path) -> None:
    mem_ref: list[WorkingMemory] = []

    async def summarize(prompt: list[Message]) -> str:
        await asyncio.sleep(0.01)
        mem_ref[0].add(text("user", 4, "n"))
        return SNAPSHOT

    messages = [SYSTEM, text("user", 200), text("assistant", 200)]
    with memory(tmp_path, "compress", keep=1, summarize=summarize) as mem:
        mem_ref.append(mem)
        mem.extend(messages)
        sent = run(mem.context())
        assert sent[1:] == [messages[2], text("user", 4, "n")]
    assert history(tmp_path) == [*messages, text("user", 4, "n")]


# -- reading stored results back -------------------------------------------------------------------------


def test_read_stored_result_pages_through(tmp_path: Path) -> None:
    with memory(tmp_path, "compact") as mem:
        mem.extend(compact_case(998))
        run(mem.context())
        first = mem.read_stored_result("result:4")
        assert first == "r" * 256 + (
            '\n[... characters 0-256 of 998; read on with read_stored_result(ref="result:4", offset=256)]'
        )
        pages = [mem.read_stored_result("result:4", offset) for offset in (256, 512, 768)]
        assert pages[-1] == "r" * 230
        assert mem.read_stored_result(" result:4 ", 998) == "[result:4 has 998 characters; offset 998 is past the end]"
        assert (
            mem.read_stored_result("history:2-3")
            == f"[#2] user: {'x' * 36}\n\n[#3] assistant\n  -> calls f({{}}) [id c1]"
        )


@pytest.mark.parametrize(
    ("ref", "offset", "message"),
    [
        (
            "result:../../etc/passwd",
            0,
            "read_stored_result: 'result:../../etc/passwd' is not a ref; refs look like result:12 or history:2-40",
        ),
        (
            "result:0",
            0,
            "read_stored_result: 'result:0' is not a ref; refs look like result:12 or history:2-40",
        ),
        ("result:5", 0, "read_stored_result: nothing is stored as result:5"),
        (
            "history:3-2",
            0,
            "read_stored_result: history:3-2 is not a range of the history, which has messages #1-#6",
        ),
        (
            "history:1-7",
            0,
            "read_stored_result: history:1-7 is not a range of the history, which has messages #1-#6",
        ),
        ("result:4", -1, "read_stored_result: offset must be a whole number of characters, not -1"),
    ],
)
def test_read_stored_result_refuses_bad_refs(tmp_path: Path, ref: str, offset: int, message: str) -> None:
    with memory(tmp_path, "compact") as mem:
        mem.extend(compact_case(998))
        run(mem.context())
        with pytest.raises(ToolError) as caught:
            mem.read_stored_result(ref, offset)
        assert str(caught.value) == message


# -- construction ----------------------------------------------------------------------------------------


def test_summary_modes_need_a_summarizer(tmp_path: Path) -> None:
    config = WorkingMemoryConfig(max_total_tokens=300, working_summary_mode="auto")
    with pytest.raises(ValueError) as caught:
        WorkingMemory(config, run_dir=tmp_path, agent="a", summarize=None)
    assert str(caught.value) == "working_summary_mode auto needs a summary model to call"


@pytest.mark.parametrize("agent", ["../x", ".hidden", "a/b", ""])
def test_agent_names_must_be_one_path_component(tmp_path: Path, agent: str) -> None:
    config = WorkingMemoryConfig(max_total_tokens=300, working_summary_mode="compact")
    with pytest.raises(ValueError) as caught:
        WorkingMemory(config, run_dir=tmp_path, agent=agent)
    assert str(caught.value) == f"agent name {agent!r} cannot name a file: use letters, digits, _ - . [ ]"


def test_add_refuses_what_is_not_a_message(tmp_path: Path) -> None:
    with memory(tmp_path, "compact") as mem, pytest.raises(TypeError):
        mem.add({"content": "no role"})


def test_stats_as_dict(tmp_path: Path) -> None:
    with memory(tmp_path, "compact") as mem:
        mem.extend(compact_case(994))
        run(mem.context())
        run(mem.context())
        data = mem.stats().as_dict()
    assert isinstance(data.pop("manage_seconds"), float)
    assert data == {
        "agent": "a",
        "mode": "compact",
        "budget": 300,
        "messages": 6,
        "turns": 2,
        "tokens_before": 300,
        "tokens_after": 300,
        "max_tokens_after": 300,
        "tokens_before_total": 600,
        "tokens_after_total": 600,
        "over_budget_turns": 0,
        "compactions": 0,
        "elisions": 0,
        "elided_messages": 0,
        "summaries": 0,
        "summaries_ahead": 0,
        "summary_calls": 0,
        "summarised_messages": 0,
        "summary_seconds": 0.0,
        "summary_wait_seconds": 0.0,
        "summary_call_seconds": 0.0,
    }


def test_a_damaged_history_line_reads_as_a_note(tmp_path: Path) -> None:
    path = tmp_path / "memory" / "a.jsonl"
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"role":"user","con')
    with memory(tmp_path, "compact") as mem:
        mem.add(text("user", 4))
        with pytest.raises(ToolError):
            mem.read_stored_result("history:1-2")  # not written yet: no ref can name it
        run(mem.context())
        assert mem.read_stored_result("history:1-2") == (
            "[#1] unknown: (this line of the history is damaged)\n\n[#2] user: xxxx"
        )


def test_a_result_with_a_lone_surrogate_is_stored_and_read_back(tmp_path: Path) -> None:
    odd = "\udc80" + "r" * 997
    messages = compact_case(998)
    messages[3] = {**messages[3], "content": odd}
    with memory(tmp_path, "compact") as mem:
        mem.extend(messages)
        run(mem.context())
        assert mem.stats().compactions == 1
        pages = []
        offset = 0
        while True:
            chunk = mem.read_stored_result("result:4", offset)
            pages.append(chunk.split("\n[... characters")[0])
            offset += len(pages[-1])
            if offset >= len(odd):
                break
        assert "".join(pages) == odd
