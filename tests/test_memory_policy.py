"""The pure decisions of working memory: where a cut may fall, how a transcript is grouped and rendered."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from runner.config.memory import WorkingMemoryConfig
from runner.memory.policy import (
    content_text,
    memory_notes,
    page,
    render_message,
    safe_cuts,
    split_groups,
    tail_start,
    with_notes,
)
from runner.memory.working import WorkingMemory
from runner.providers.base import Message

pytestmark = pytest.mark.timeout(10)


def call(*ids: str) -> Message:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": i, "type": "function", "function": {"name": "f", "arguments": "{}"}} for i in ids],
    }


def result(call_id: str) -> Message:
    return {"role": "tool", "tool_call_id": call_id, "content": "r"}


USER: Message = {"role": "user", "content": "u"}
ASSISTANT: Message = {"role": "assistant", "content": "a"}


def test_safe_cuts_around_parallel_calls() -> None:
    messages = [USER, call("a", "b"), result("a"), result("b"), ASSISTANT]
    assert safe_cuts(messages) == [True, True, False, False, True, True]


def test_safe_cuts_with_a_late_result() -> None:
    # A result that comes after other messages still belongs with its call.
    messages = [USER, call("a"), USER, result("a"), ASSISTANT]
    assert safe_cuts(messages) == [True, True, False, False, True, True]


def test_a_result_with_an_unknown_call_stays_with_what_precedes_it() -> None:
    messages = [USER, ASSISTANT, result("zz"), result("yy"), USER]
    assert safe_cuts(messages) == [True, True, False, False, True, True]


def test_safe_cuts_of_nothing() -> None:
    assert safe_cuts([]) == [True]


@pytest.mark.parametrize(
    ("keep", "expected"),
    [(0, 5), (1, 4), (2, 1), (3, 1), (4, 1), (5, 0), (50, 0)],
)
def test_tail_start_moves_earlier_to_keep_pairs(keep: int, expected: int) -> None:
    messages = [USER, call("a", "b"), result("a"), result("b"), ASSISTANT]
    assert tail_start(messages, keep) == expected


def test_split_groups_by_tokens() -> None:
    items = [(f"m{i}", 40, False) for i in range(7)]
    assert split_groups(items, 100) == [["m0", "m1"], ["m2", "m3"], ["m4", "m5"], ["m6"]]
    assert split_groups(items, 120) == [["m0", "m1", "m2"], ["m3", "m4", "m5"], ["m6"]]


def test_split_groups_keeps_a_call_with_its_results() -> None:
    items = [("u", 40, False), ("call", 10, False), ("r1", 30, True), ("r2", 30, True), ("a", 10, False)]
    # r2 would overflow the first group; the group ends before the call instead.
    assert split_groups(items, 100) == [["u"], ["call", "r1", "r2", "a"]]


def test_split_groups_an_oversized_item_stands_alone() -> None:
    items = [("a", 10, False), ("big", 500, False), ("b", 10, False)]
    assert split_groups(items, 100) == [["a"], ["big"], ["b"]]


def test_split_groups_for_merging_pairs_at_least() -> None:
    items = [(f"s{i}", 90, False) for i in range(5)]
    assert split_groups(items, 100, min_items=2) == [["s0", "s1"], ["s2", "s3", "s4"]]


def test_content_text_of_parts() -> None:
    parts = [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "u"}}, {"text": "b"}, "c"]
    assert content_text(parts) == "a\n[image_url part]\n[unknown part]\nc"
    assert content_text(None) == ""
    assert content_text(3) == "3"


def test_render_message_cuts_long_bodies() -> None:
    assert render_message({"role": "user", "content": "abcdef"}, 7, max_chars=4) == (
        "[#7] user: abcd ... [2 more characters not shown]"
    )


def test_notes_and_system_message() -> None:
    assert memory_notes(None, None) == ""
    assert with_notes({"role": "system", "content": "hi"}, "") == {"role": "system", "content": "hi"}
    assert with_notes(None, "") is None
    assert with_notes({"role": "system", "content": ""}, "N") == {"role": "system", "content": "N"}
    assert with_notes({"role": "system", "content": "hi", "name": "x"}, "N") == {
        "role": "system",
        "content": "hi\n\nN",
        "name": "x",
    }


def test_page() -> None:
    assert page("abcdef", "result:1", 0, 10) == "abcdef"
    assert page("abcdef", "result:1", 2, 3) == (
        'cde\n[... characters 2-5 of 6; read on with read_stored_result(ref="result:1", offset=5)]'
    )
    assert page("", "result:1", 0, 10) == ""


def random_conversation(rng: random.Random, length: int) -> list[Message]:
    """Users, answers, calls with one to three results (some late, some with unknown ids)."""
    messages: list[Message] = []
    pending: list[str] = []
    serial = 0
    while len(messages) < length:
        roll = rng.random()
        if pending and roll < 0.5:
            messages.append(result(pending.pop(rng.randrange(len(pending)))))
        elif roll < 0.65:
            serial += 1
            ids = [f"c{serial}_{i}" for i in range(rng.randint(1, 3))]
            messages.append(call(*ids))
            pending.extend(ids)
        elif roll < 0.7:
            messages.append(result("unknown"))
        else:
            messages.append(rng.choice([USER, ASSISTANT]))
    return messages


@pytest.mark.parametrize("seed", range(40))
def test_memory_cuts_agree_with_the_pure_rule(tmp_path: Path, seed: int) -> None:
    # WorkingMemory tracks exchanges incrementally; its cuts must be the ones safe_cuts/tail_start allow.
    rng = random.Random(seed)
    messages = random_conversation(rng, rng.randint(1, 40))
    keep = rng.randint(0, 12)

    async def summarize(prompt: list[Message]) -> str:
        return "S"

    system: Message = {"role": "system", "content": "s"}
    big: Message = {"role": "user", "content": "x" * 4000}  # puts the context over budget
    for mode in ("compress", "compact"):
        config = WorkingMemoryConfig(max_total_tokens=300, keep_recent_count=keep, working_summary_mode=mode)
        run_dir = tmp_path / mode
        with WorkingMemory(config, run_dir=run_dir, agent="a", summarize=summarize) as memory:
            memory.extend([system, big, *messages])
            sent = asyncio.run(memory.context())
            stats = memory.stats()
        whole = [big, *messages]
        kept = len(sent) - 1
        cut = len(whole) - kept
        assert sent[1:] == whole[cut:]
        assert safe_cuts(whole)[cut]
        if mode == "compress":
            assert cut == tail_start(whole, keep)
            assert stats.summarised_messages == cut
        else:
            assert cut <= tail_start(whole, keep)
            assert stats.elided_messages == cut
