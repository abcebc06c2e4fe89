"""``repeat: N`` (issue 24): each dataset row run N times, its assertions checked on every run, and one verdict per
assertion made from them, by majority.

A model's answer varies from run to run; one run per row says what it answered once. With repeats a row's line
says how often each assertion passed (``repeats``: the statuses, in the order the runs ended), the majority
verdict (a tie is not a pass: the worse status of the tied ones, fail before error), the mean score, and for the
row as a whole pass@k (at least one run passed every assertion), how many runs passed, and the agreement (the
share of runs whose verdict is the majority's). Thresholds are checked on the majority verdicts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from runner.evals.evaluate import ERROR, FAIL, PASS, Verdict, row_status_of

_RANK = {FAIL: 0, ERROR: 1, PASS: 2}  # among tied statuses, the worst wins


def majority(statuses: Sequence[str]) -> str:
    """The most frequent status; among equally frequent ones, fail before error before pass."""
    counts = Counter(statuses)
    top = max(counts.values())
    return min((s for s, n in counts.items() if n == top), key=lambda s: _RANK[s])


def combine(runs: Sequence[Sequence[Verdict]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The assertions' lines of one row from its runs' verdicts (every run checks the same assertions, in the same
    order), and the row's ``repeats`` summary."""
    n = len(runs)
    lines = []
    for i, first in enumerate(runs[0]):
        each = [run[i] for run in runs]
        statuses = [v.status for v in each]
        status = majority(statuses)
        reason = next(v.reason for v in each if v.status == status)
        passed = statuses.count(PASS)
        line = first.line()
        line.update(
            status=status,
            score=round(sum(v.score for v in each) / n, 6),
            reason=f"{passed} of {n} runs passed; {reason}",
            repeats=statuses,
        )
        line["pass"] = status == PASS
        lines.append(line)
    row_verdicts = [row_status_of(v.status for v in run) for run in runs]
    # the row's verdict: from the majority verdicts, as the lists count them
    verdict = row_status_of(line["status"] for line in lines)
    summary = {
        "n": n,
        "passed": row_verdicts.count(PASS),
        "pass_at_k": PASS in row_verdicts,
        "verdicts": row_verdicts,
        "agreement": round(row_verdicts.count(verdict) / n, 6),
    }
    return lines, summary
