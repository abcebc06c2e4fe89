"""Tools and functions used by the example workflows (importable: runner puts the workflow's folder on the path)."""

from __future__ import annotations

import asyncio
import time
from typing import Any


def word_count(text: str) -> int:
    """Count the words in a text.

    Args:
        text: The text to count.
    """
    time.sleep(0.05)  # a slow sync tool: runs in a worker thread while the loop serves other agents
    return len(text.split())


async def lookup(topic: str, limit: int = 3) -> list[str]:
    """Look a topic up in the (offline) notes.

    Args:
        topic: What to look up.
        limit: At most this many notes.
    """
    await asyncio.sleep(0.02)
    notes = [f"{topic}: note {i + 1}" for i in range(10)]
    return notes[:limit]


def split_lines(input: str) -> list[str]:
    """A python stage: one item per non-empty line of the input."""
    return [line.strip() for line in input.splitlines() if line.strip()]


def check_claim(input: str) -> str:
    """A python stage that rejects claims it cannot check."""
    if "unverifiable" in input:
        raise ValueError(f"cannot check {input!r}")
    return f"checked: {input}"


def read_chapter(number: int) -> str:
    """Read one chapter of a long (generated) report.

    Args:
        number: The chapter, from 1.
    """
    line = f"Chapter {number}: findings on connection pools, retries and timeouts under load. "
    return line * 60  # about 1,300 tokens: long enough for working memory to store it aside


def tally(stages: dict[str, Any]) -> str:
    """A python stage: the majority of the voters' first words (SAFE or UNSAFE), with the count, ties unsafe."""
    votes = [out.content.split()[0].strip(".:,").upper() for out in stages["votes"] if out.content.strip()]
    safe = votes.count("SAFE")
    verdict = "SAFE" if safe > len(votes) - safe else "UNSAFE"
    return f"{verdict} ({safe} of {len(votes)} voters say SAFE)"
