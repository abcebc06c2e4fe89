"""Working memory over a long agent conversation: is the token budget held, and what does it cost per turn?

A scripted 200-turn conversation (user question, a tool call, its result of varied size, an answer) is
fed to one WorkingMemory per mode. Each turn asks for the context twice, as an agent loop does (before
the call that picks a tool, and before the answer), then waits for a fake model call of fixed latency
(``--model-ms``), during which a snapshot made ahead can progress. A fake summariser answers after a
fixed latency (``--summary-ms``). The model's latency is not counted as memory time; writing the
history, stored results and snapshots is (in a temporary run folder under ``--dir``).

Reported per mode: the largest context sent against the budget, turns over budget, what the full history
would have cost, tokens actually sent, the memory's actions, and the wall time memory management adds to
a turn (mean / p95 / max, in microseconds), with and without the summariser's latency. Each mode runs
``--repeat`` times on the same script and each turn's time is the fastest of its repeats, which removes
most of the noise of a shared machine (the token figures are the same in every repeat).

    python bench/working_memory.py [--turns 200] [--budget 12000] [--summary-ms 5] [--model-ms 2]
                                   [--seed 7] [--repeat 5] [--dir .]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runner.config.memory import WorkingMemoryConfig  # noqa: E402
from runner.memory.working import WorkingMemory  # noqa: E402
from runner.providers.base import Message  # noqa: E402

SNAPSHOT = (
    "Goals: compare event loops for the runner's engine.\n"
    "Facts: uvloop is faster on socket-heavy loads; results stored as result:<n> hold raw figures.\n"
    "Decisions: benchmark on loopback; keep httpx.\n"
    "Open questions: effect on TLS; Windows support.\n"
) * 4  # about 200 tokens


def tool_result_size(rng: random.Random) -> int:
    """Characters of a tool result: mostly small, sometimes a page, now and then a large dump."""
    roll = rng.random()
    if roll < 0.6:
        return rng.randint(100, 2_000)
    if roll < 0.9:
        return rng.randint(2_000, 8_000)
    return rng.randint(8_000, 16_000)


def conversation(turns: int, seed: int) -> list[list[Message]]:
    rng = random.Random(seed)
    script: list[list[Message]] = []
    for turn in range(turns):
        call_id = f"call_{turn}"
        script.append(
            [
                {"role": "user", "content": f"Question {turn}: " + "what about this? " * rng.randint(2, 30)},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": call_id,
                            "type": "function",
                            "function": {"name": "search", "arguments": f'{{"query": "topic {turn}"}}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": call_id, "content": "data " * (tool_result_size(rng) // 5)},
                {"role": "assistant", "content": f"Answer {turn}: " + "a finding. " * rng.randint(5, 60)},
            ]
        )
    return script


async def run_mode(
    mode: str,
    script: list[list[Message]],
    budget: int,
    summary_seconds: float,
    model_seconds: float,
    parent: Path,
) -> tuple[dict[str, float], list[float], list[float]]:
    """The memory's figures, and each turn's time with and without waiting for the summariser."""

    async def summarize(prompt: list[Message]) -> str:
        await asyncio.sleep(summary_seconds)
        return SNAPSHOT

    config = WorkingMemoryConfig(
        max_total_tokens=budget,
        keep_recent_count=8,
        working_summary_mode=mode,
        max_tool_message_tokens=1500,
    )
    per_turn: list[float] = []
    per_turn_without_summary: list[float] = []
    largest = 0
    with tempfile.TemporaryDirectory(dir=parent, prefix=".bench-memory-") as run_dir:
        memory = WorkingMemory(
            config,
            run_dir=Path(run_dir),
            agent="analyst",
            summarize=None if mode == "compact" else summarize,
        )
        memory.add({"role": "system", "content": "You are an analyst. " * 20})
        for user, call, result, answer in script:
            waited_before = memory.stats().summary_wait_seconds
            elapsed = 0.0
            started = time.perf_counter()
            memory.add(user)
            await memory.context()  # the call that picks a tool
            elapsed += time.perf_counter() - started
            largest = max(largest, memory.tokens)
            await asyncio.sleep(model_seconds)
            started = time.perf_counter()
            memory.add(call)
            memory.add(result)
            await memory.context()  # the call that answers
            elapsed += time.perf_counter() - started
            largest = max(largest, memory.tokens)
            await asyncio.sleep(model_seconds)
            started = time.perf_counter()
            memory.add(answer)
            elapsed += time.perf_counter() - started
            per_turn.append(elapsed)
            per_turn_without_summary.append(elapsed - (memory.stats().summary_wait_seconds - waited_before))
        await memory.aclose()
        stats = memory.stats()
        history_lines = sum(1 for _ in memory.history_path.open("rb"))
    assert history_lines == 1 + 4 * len(script), "the history file must hold every message"
    assert largest == stats.max_tokens_after
    figures = {
        "max_tokens": largest,
        "over": stats.over_budget_turns,
        "history_tokens": stats.tokens_before,
        "before_total": stats.tokens_before_total,
        "after_total": stats.tokens_after_total,
        "compactions": stats.compactions,
        "elisions": stats.elisions,
        "summaries": stats.summaries,
        "summary_calls": stats.summary_calls,
        "summary_s": stats.summary_seconds,
        "wait_s": stats.summary_wait_seconds,
        "ahead": stats.summaries_ahead,
    }
    return figures, per_turn, per_turn_without_summary


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--budget", type=int, default=12_000)
    parser.add_argument("--summary-ms", type=float, default=5.0)
    parser.add_argument("--model-ms", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path.cwd(),
        help="where the run folders go (default: here, as a real run's report folder; a tmpfs or "
        "overlay /tmp can be much faster or slower at creating files)",
    )
    args = parser.parse_args(argv)
    script = conversation(args.turns, args.seed)
    print(
        f"{args.turns} turns (4 messages each, context asked twice a turn), budget {args.budget} tokens, "
        f"keep_recent_count 8, max_tool_message_tokens 1500, model call {args.model_ms:g} ms, "
        f"summariser {args.summary_ms:g} ms, fastest of {args.repeat} runs per turn"
    )
    header = (
        "| mode | max context / budget | turns over | full history | sent, all turns | saved "
        "| compactions | left out | summaries (ahead) | summarising s (waited) "
        "| memory µs per turn mean / p95 / max | without waits µs mean / p95 |"
    )
    print(header)
    print("|---" * 12 + "|")
    model_seconds = args.model_ms / 1000
    for mode in ("compact", "compress", "auto"):
        runs = [
            asyncio.run(run_mode(mode, script, args.budget, args.summary_ms / 1000, model_seconds, args.dir))
            for _ in range(args.repeat)
        ]
        r = runs[0][0]
        turn = [min(times) for times in zip(*(run[1] for run in runs), strict=True)]
        own = [min(times) for times in zip(*(run[2] for run in runs), strict=True)]
        r |= {
            "mean_us": statistics.fmean(turn) * 1e6,
            "p95_us": percentile(turn, 95) * 1e6,
            "max_us": max(turn) * 1e6,
            "mean_own_us": statistics.fmean(own) * 1e6,
            "p95_own_us": percentile(own, 95) * 1e6,
        }
        saved = 1 - r["after_total"] / r["before_total"]
        print(
            f"| {mode} | {r['max_tokens']:.0f} / {args.budget} | {r['over']:.0f} | {r['history_tokens']:.0f} "
            f"| {r['after_total']:.0f} | {saved:.0%} | {r['compactions']:.0f} | {r['elisions']:.0f} "
            f"| {r['summaries']:.0f} ({r['ahead']:.0f}) | {r['summary_s']:.3f} ({r['wait_s']:.3f}) "
            f"| {r['mean_us']:.0f} / {r['p95_us']:.0f} / {r['max_us']:.0f} "
            f"| {r['mean_own_us']:.0f} / {r['p95_own_us']:.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
