"""OpenTelemetry export cost on a wide fan-out (issue 22 item 5): the spans are made from the finished report and
sent after the run, so the run's wall time is untouched; what ``--otel`` adds is the time to turn the report into
spans and to send them (to a receiver on 127.0.0.1 that decodes nothing). Rounds interleave a run without and a
run with export, in one process, so drift and noise hit both alike.

Run: ``python bench/otel_export.py [--n 1000] [--repeat 7]`` (needs ``runner[otel]``). Prints medians: the run's
wall time with and without export (their ratio: the run itself), and the time the export adds after it, alone
and as a share of the wall time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from otel_export_plan import plan_for  # noqa: E402

from runner.engine.session import run_plan  # noqa: E402
from runner.events import Recorder  # noqa: E402
from runner.report.otel import otel_spans  # noqa: E402
from runner.report.otlp import OtelSettings, export  # noqa: E402
from tests.otlp_receiver import Receiver  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    plan = plan_for(args.n)
    walls: dict[str, list[float]] = {"off": [], "on": []}
    spans_s, send_s, counts, report_s = [], [], [], []
    with Receiver() as receiver:
        settings = OtelSettings(receiver.url)
        for _ in range(args.repeat):
            for mode in ("off", "on"):
                outcome = run_plan(plan, {}, recorder=Recorder(), tune_gc=True)
                assert outcome.status == "ok", outcome.error
                walls[mode].append(outcome.end - outcome.info.t0)
                if mode == "off":
                    continue
                t = time.perf_counter()
                report = outcome.report()  # made by every run, with or without export
                report_s.append(time.perf_counter() - t)
                t = time.perf_counter()
                spans = otel_spans(report, outcome.info.layout)
                t1 = time.perf_counter()
                assert export(spans, settings) is None
                t2 = time.perf_counter()
                spans_s.append(t1 - t)
                send_s.append(t2 - t1)
                counts.append(len(spans))
    off, on = statistics.median(walls["off"]), statistics.median(walls["on"])
    added = statistics.median(a + b for a, b in zip(spans_s, send_s, strict=True))
    print(f"fan-out of {args.n}, {args.repeat} interleaved rounds, {counts[0]} spans a run")
    print(f"wall without export {off:.3f} s, with {on:.3f} s: ratio {on / off:.3f}")
    print(
        f"after the run: spans made in {statistics.median(spans_s) * 1000:.1f} ms, sent in "
        f"{statistics.median(send_s) * 1000:.1f} ms; added {added * 1000:.1f} ms = {added / off:.1%} of the wall time "
        f"(the report itself: {statistics.median(report_s) * 1000:.1f} ms)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
