"""The batch report's section on Ray workers (issue 18): which worker ran how many rows, how fast, and how long
its shards waited between the driver sending them and their first row starting."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def workers_markdown(doc: Mapping[str, Any]) -> str:
    """The ``workers`` section of report.json as Markdown."""
    out = [
        "",
        f"### Ray workers: {len(doc['workers'])}"
        + (f" ({doc['replaced']} started in place of lost ones)" if doc["replaced"] else ""),
        "",
        "| worker | rows | failed | rows/s | CPU | shards | shards lost | shard wait p50 | shard wait max |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, w in doc["workers"].items():
        out.append(
            f"| {name} | {w['rows']:,} | {w['failed']:,} | {w['rows_per_s']:,.1f} | "
            + ("lost" if w["cpu_s"] is None else f"{w['cpu_s']:.2f} s")
            + f" | {w['shards']:,} | "
            f"{w['shards_lost']:,} | {w['shard_wait_p50_s']:.3f} s | {w['shard_wait_max_s']:.3f} s |"
        )
    budget = doc.get("rate_budget")
    if budget:
        out += [
            "",
            f"Rate limits held cluster-wide: {budget['leases']:,} leases granted, "
            f"{budget['round_trips']:,} round trips "
            "to the budget; requests granted: "
            + ", ".join(f"`{m}` {n:,.0f}" for m, n in budget["granted_requests"].items())
            + ".",
        ]
    out += ["", "Each row's worker is in results.jsonl (`worker`); trace.json draws a track per worker."]
    return "\n".join(out) + "\n"
