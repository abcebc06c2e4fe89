"""The batch's progress line and final line, and its report's figures (runner/dataset/report.py)."""

from __future__ import annotations

import pytest

from runner.dataset.batch import RowResult, RowStats
from runner.dataset.report import BatchStats, advice, cause_of, markdown, percentile


def row(index: int, ok: bool, latency: float, **stats: object) -> RowResult:
    error = None if ok else f"data.csv:{index + 2}: row {index}: model `main`: 503 after 2.5 s"
    return RowResult(index, str(index), "ok" if ok else "failed", "x", {}, error, latency, RowStats(**stats))  # type: ignore[arg-type]


def test_percentiles_interpolate_between_ranks() -> None:
    values = [float(v) for v in range(1, 101)]
    assert [percentile(values, q) for q in (0.5, 0.95, 0.99)] == pytest.approx([50.5, 95.05, 99.01])
    assert percentile([], 0.5) == 0.0
    assert percentile([2.0], 0.99) == 2.0


def test_failure_causes_are_counted_without_the_row_and_numbers() -> None:
    assert cause_of("data.csv:9: row 7: input n (column 'n'): expected an integer, got 'x'") == (
        "input n (column 'n'): expected an integer, got 'x'"
    )
    assert cause_of("model `main`: 503 after 2.5 s\nmore") == "model `main`: N after N s"


def test_progress_final_line_and_report() -> None:
    stats = BatchStats(total=10)
    stats.t0 -= 2.0  # two seconds in
    stats.add(row(0, True, 1.0, stages={"label": 0.4, "reply": 0.6}, waits={("rate limit", "main"): 0.5},
                  prompt_tokens=10, completion_tokens=5))  # fmt: skip
    stats.add(row(1, False, 1.0, stages={"label": 0.2}, waits={("pool", "main"): 0.02}, retries=1))
    stats.add(row(2, False, 2.0))
    line = stats.progress()
    assert line.startswith("rows 3/10 done, 2 failed, 1.5 rows/s, ETA 5 s, 15 tokens")
    stats.skipped = 4
    assert stats.final(2.0) == "3 rows: 1 ok, 2 failed in 2.00 s (1.5 rows/s); 4 done before; 15 tokens"
    doc = stats.document(
        workflow={"name": "t", "file": "t.yaml", "sha256": "0"},
        run={"status": "failed", "started_at": "x", "wall_s": 2.0, "dataset": "d.csv", "concurrency": 4,
             "folder": "f", "error": None},
    )  # fmt: skip
    assert doc["rows"] == {"ok": 1, "failed": 2, "skipped": 4, "rows_per_s": 1.5}
    assert doc["stages"]["label"] == {"rows": 2, "p50_s": 0.3, "p95_s": 0.39, "p99_s": 0.398, "max_s": 0.4}
    assert doc["failures"] == [{"cause": "model `main`: N after N s", "rows": 2}]
    assert doc["bottlenecks"] == [
        {"cause": "rate limit", "name": "main", "seconds": 0.5, "share": 0.125},
        {"cause": "pool", "name": "main", "seconds": 0.02, "share": 0.005},
    ]
    assert doc["advice"] == [
        "rows waited 12% of their time on `main`'s rate limit: raise `models.main.rate_limit` if the provider "
        "allows it, or expect the batch to take this long"
    ]
    assert doc["tokens"] == {"prompt": 10, "completion": 5, "retries": 1}
    text = markdown(doc)
    assert text.splitlines()[:3] == [
        "## Batch `t`: failed",
        "",
        "1 ok, 2 failed, 4 done before this resume in 2.00 s (1.5 rows/s, 4 at once); dataset `d.csv`",
    ]
    assert "| `label` | 2 | 0.300 s | 0.390 s | 0.398 s | 0.400 s |" in text
    assert "| rate limit `main` | 0.50 | 12% |" in text


def test_advice_names_only_causes_over_five_percent() -> None:
    assert advice([{"cause": "pool", "name": "m", "seconds": 1.0, "share": 0.04}]) == []
    assert advice([{"cause": "max_concurrency", "name": "fan", "seconds": 9.0, "share": 0.41}]) == [
        "rows waited 41% of their time on a slot of fan-out `fan`: raise `max_concurrency` of fan-out `fan`"
    ]
