"""A batch's progress while it runs: a line redrawn in place on a terminal, a summary line every 10 s
elsewhere (CI logs), the total counted in a thread meanwhile."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import TextIO

from runner.dataset.report import BatchStats
from runner.termsize import columns

CI_SUMMARY_EVERY = 10.0  # seconds between progress lines when stderr is not a terminal (CI logs)
LIVE_EVERY = 0.25  # seconds between redraws of the progress line on a terminal


async def watch(stats: BatchStats, count: Callable[[], int], err: TextIO, live: bool) -> None:
    """Show ``stats.progress()`` until cancelled; ``count`` (run in a thread) gives the total rows."""
    counting = asyncio.get_running_loop().run_in_executor(None, count)

    def counted(f: asyncio.Future[int]) -> None:
        if not f.cancelled() and f.exception() is None:
            stats.total = f.result()

    counting.add_done_callback(counted)
    every = LIVE_EVERY if live else CI_SUMMARY_EVERY
    try:
        while True:
            await asyncio.sleep(every)
            if live:
                err.write("\r\x1b[K" + stats.progress()[: columns(sys.stderr) - 1])
            else:
                err.write(f"runner: {stats.progress()}\n")
            err.flush()
    finally:
        counting.cancel()
