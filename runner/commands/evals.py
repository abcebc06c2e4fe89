"""The commands' side of ``assert:`` lists (issue 24).

A single ``runner run`` (:func:`check_once`): the assertions are checked once, after the run, and said on
stderr, one line each; any that does not pass (a failure or an error) exits 1. Rows and thresholds belong to
datasets (``runner eval``); a single run is one row, so every assertion must pass. The judges' providers are
opened for the check inside the run's cassette, if any, so ``--replay`` answers them too.

A batch (:class:`BatchVerdicts`): the rows' verdicts added up as they end, into the batch report, JUnit XML and
the verdicts' page.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runner.engine.opening import wrapped
from runner.engine.session import RunOutcome
from runner.evals.evaluate import Outcome, row_status_of, weighted_score
from runner.evals.summary import row_status
from runner.plan.compile import Plan
from runner.providers.base import ChatProvider


def check_once(
    plan: Plan,
    outcome: RunOutcome,
    inputs: Mapping[str, Any],
    report: Mapping[str, Any],
    tape: Any,
    junit_to: Path | None = None,
) -> int:
    """Check the assertions of one finished run; 0 when every one passed, else 1. ``junit_to``: where to write
    their verdicts as JUnit XML (``junit`` in the workflow's ``report.formats``)."""
    from runner.evals.evaluate import PASS, Outcome  # noqa: PLC0415

    totals = report.get("totals", {})
    cost = sum(float(m.get("cost_usd") or 0.0) for m in (report.get("models") or {}).values() if isinstance(m, dict))
    done = Outcome(
        outcome.status == "ok",
        str(outcome.error) if outcome.error is not None else None,
        outcome.output,
        outcome.stages,
        inputs,
        inputs,  # a single run's row is its inputs: columns that are no input exist only in a dataset
        float(report.get("run", {}).get("wall_s", 0.0)),
        int(totals.get("tokens_in", 0)) + int(totals.get("tokens_out", 0)),
        cost,
        tool_calls_of(outcome.recorder.events),
    )

    async def main() -> list[Any]:
        providers = _judges(plan, tape)
        evaluator = evaluator_for(plan, providers, tape, {})
        try:
            verdicts: list[Any] = await evaluator.check(done)
            return verdicts
        finally:
            await evaluator.aclose()
            await asyncio.gather(*(p.aclose() for p in providers.values()), return_exceptions=True)

    verdicts = asyncio.run(main())
    if junit_to is not None:
        from runner.evals.summary import junit_run  # noqa: PLC0415
        from runner.fsutil import atomic_write_bytes  # noqa: PLC0415

        wall = float(report.get("run", {}).get("wall_s", 0.0))
        atomic_write_bytes(junit_to, junit_run(plan.workflow.name, [v.line() for v in verdicts], wall))
    bad = [v for v in verdicts if v.status != PASS]
    for v in verdicts:
        print(f"runner: {v.name}: {v.status.upper() if v.status != PASS else v.status} ({v.reason})", file=sys.stderr)
    print(
        f"runner: assertions: {len(verdicts) - len(bad)} of {len(verdicts)} passed"
        + (
            f", {sum(v.status == 'fail' for v in bad)} failed, {sum(v.status == 'error' for v in bad)} errors"
            if bad
            else ""
        ),
        file=sys.stderr,
    )
    return 1 if bad else 0


def tool_calls_of(events: Any) -> tuple[tuple[str, str, str], ...]:
    """The tool calls among a run's events: (the calling node, the tool, its arguments' JSON text)."""
    return tuple(
        (str(data.get("parent", "")), str(data.get("tool")), str(data.get("arguments", "")))
        for _, kind, _, data in events
        if kind == "started" and isinstance(data, dict) and data.get("kind") == "tool"
    )


def evaluator_for(plan: Plan, providers: Mapping[str, ChatProvider], tape: Any, shared: Mapping[str, Any]) -> Any:
    """The evaluator of ``plan``'s assertions over ``providers``, with the embedders its ``similar`` assertions
    name: the run's own when it has them open (``shared``), else opened here inside the cassette, if any, and
    closed by the evaluator's ``aclose``."""
    from runner.evals.evaluate import Evaluator  # noqa: PLC0415

    wf = plan.workflow
    names = sorted({a.embedder for lst in wf.asserts for a in lst.items if a.embedder in wf.embeddings})
    embedders = {name: shared[name] for name in names if name in shared}
    opened = []
    if len(embedders) < len(names):
        from runner.embeddings import EMBEDDERS  # noqa: PLC0415
        from runner.embeddings.cache import CachedEmbedder  # noqa: PLC0415

        base = Path(wf.file).resolve().parent
        with wrapped(tape):
            for name in names:
                if name not in embedders:
                    spec = wf.embeddings[name]
                    inner = EMBEDDERS[spec.provider].open(spec.name, spec.config, spec.settings)
                    embedders[name] = CachedEmbedder.from_config(inner, spec.config.cache, base=base)
                    opened.append(embedders[name])
    evaluator = Evaluator(wf, providers, embedders)
    evaluator.owned.extend(opened)
    return evaluator


def _judges(plan: Plan, tape: Any) -> dict[str, ChatProvider]:
    from runner.providers import PROVIDERS  # noqa: PLC0415

    wf = plan.workflow
    names = {a.model for lst in wf.asserts for a in lst.items if a.model in wf.models}
    out: dict[str, ChatProvider] = {}
    with wrapped(tape):
        for name in sorted(names):
            spec = wf.models[name]
            factory = PROVIDERS[spec.provider].load_factory()
            out[name] = factory(name, spec.config)
    return out


class BatchVerdicts:
    """A batch's verdicts added up as its rows end (:meth:`add`, each ``results.jsonl`` line as it is written),
    then :meth:`finish`: the totals into the batch report, ``junit.xml`` (with ``junit``: the workflow's
    ``report.formats`` has it, or ``--junit FILE`` was given) and ``evals.html`` (with ``page``: ``html`` is among
    the formats). Counting as rows end, rather than reading results.jsonl back at the end, leaves the end only what
    must wait for the last row (issue 24's overhead bar); a resumed batch reads back just the lines of rows that
    ended in earlier runs."""

    def __init__(self, wf: Any, *, junit: bool = True, page: bool = True) -> None:
        from runner.evals.page import MAX_ROWS  # noqa: PLC0415
        from runner.evals.summary import EvalStats, junit_case  # noqa: PLC0415

        self._case, self._most = junit_case, MAX_ROWS
        self.junit, self.page = junit, page
        self.wf = wf
        self.totals = EvalStats(wf.asserts)
        self.cases: list[tuple[int, tuple[str, str]]] = []  # each row's JUnit test case, made as it ends
        # the page's rows: every one that did not pass, and passing ones up to its most
        self.shown: list[dict[str, Any]] = []
        self.passing = 0
        self.examples: dict[str, list[tuple[str, str, str]]] = {}  # assertion -> its first rows that did not pass
        self.seen: set[int] = set()

    def add(self, line: dict[str, Any]) -> None:
        """Count one row's ``results.jsonl`` line."""
        verdicts = line.get("assertions") or []
        self.totals.add(verdicts, line.get("repeats"))
        index = line["index"]
        self.seen.add(index)
        key = str(line.get("key", index))
        if self.junit:
            self.cases.append((index, self._case(self.wf.name, key, float(line.get("latency_s") or 0.0), verdicts)))
        if self.page and (line.get("verdict") != "pass" or self.passing < self._most):
            self.passing += line.get("verdict") == "pass"
            self.shown.append(line)
        for v in verdicts:
            if v["status"] != "pass" and len(found := self.examples.setdefault(v["name"], [])) < 3:
                found.append((key, v["status"], v["reason"]))

    def finish(
        self,
        doc: dict[str, Any],
        folder: Path,
        results: Path | None,
        evaluator: list[Any],
        junit_to: str | None,
        wall: float,
        annotate: bool = False,
        variant: str | None = None,
    ) -> list[str]:
        """The totals into ``doc["evals"]`` (every row once: with ``results``, the lines there of rows that ended
        before this run, a resumed batch's); ``junit.xml`` and ``evals.html`` (the verdicts' page) written to
        the run folder (and the JUnit XML to ``--junit FILE``); with ``annotate``, GitHub annotations on stdout;
        the thresholds not met, one line each."""
        from runner.evals.page import to_page  # noqa: PLC0415
        from runner.evals.summary import junit_document, unmet  # noqa: PLC0415
        from runner.fsutil import atomic_write_bytes, atomic_write_text  # noqa: PLC0415

        if results is not None:
            from runner.dataset.results import read_lines  # noqa: PLC0415

            for line in read_lines(results):
                if line["index"] not in self.seen:
                    self.add(line)
        wf, totals = self.wf, self.totals
        totals.judge_tokens = evaluator[0].judge_tokens if evaluator else 0
        doc["evals"] = totals.document()
        if self.page:
            atomic_write_text(folder / "evals.html", to_page(wf.name, doc["evals"], self.shown))
        if annotate:
            from runner.evals.summary import github_annotations  # noqa: PLC0415

            sys.stdout.write(github_annotations(doc["evals"], wf.asserts, self.examples, variant))
        if self.junit:
            self.cases.sort(key=lambda case: case[0])  # the dataset's order, not the order the rows ended in
            xml = junit_document(wf.name, [case for _, case in self.cases], wall)
            atomic_write_bytes(folder / "junit.xml", xml)
            if junit_to is not None:
                atomic_write_bytes(Path(junit_to), xml)
        return unmet(doc["evals"])


async def checked_line(evaluator: Any, result: Any, line: dict[str, Any], inputs: Any, row: Any) -> dict[str, Any]:
    """A batch row's ``results.jsonl`` line with its verdicts: ``assertions`` (one per assertion), ``verdict``
    (the row's: pass, fail or error) and ``score`` (weighted)."""
    outcome = Outcome(
        result.ok,
        result.error,
        result.output,
        result.stages,
        inputs,
        row,
        result.latency_s,
        result.tokens,
        result.stats.cost_usd,
        result.stats.tool_calls,
    )
    if result.repeats:  # repeat: N (issue 24): every run checked, one verdict per assertion by majority
        from runner.evals.repeats import combine  # noqa: PLC0415

        # each run's row limits on its own figures: the result's are all runs' (the batch report's)
        others = result.repeats
        first = outcome._replace(
            latency_s=result.latency_s - sum(o.latency_s for o in others),
            tokens=result.tokens - sum(o.tokens for o in others),
            cost_usd=result.stats.cost_usd - sum(o.stats.cost_usd for o in others),
        )
        runs = [await evaluator.check(first)]
        for other in others:
            again = outcome._replace(
                ok=other.ok,
                error=other.error,
                output=other.output,
                stages=other.stages,
                latency_s=other.latency_s,
                tokens=other.tokens,
                cost_usd=other.stats.cost_usd,
                tool_calls=other.stats.tool_calls,
            )
            runs.append(await evaluator.check(again))
        line["assertions"], line["repeats"] = combine(runs)
        line["verdict"] = row_status(line["assertions"])
        total = sum(v.weight for v in runs[0])
        line["score"] = (
            round(sum(a["score"] * a["weight"] for a in line["assertions"]) / total, 6) if total > 0 else 1.0
        )
        line["cost_usd"] = round(result.stats.cost_usd, 8)
        return line
    verdicts = await evaluator.check(outcome)
    line["assertions"] = [v.line() for v in verdicts]
    line["verdict"] = row_status_of(v.status for v in verdicts)
    line["score"] = round(weighted_score(verdicts), 6)
    line["cost_usd"] = round(result.stats.cost_usd, 8)  # a comparison of variants adds it up (0 unpriced)
    return line
