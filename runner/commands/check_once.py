"""A single ``runner run`` of a workflow with ``assert:`` lists (issue 24): the assertions are checked once, after
the run, and said on stderr, one line each; any that does not pass (a failure or an error) exits 1. Rows and
thresholds belong to datasets (``runner eval``); a single run is one row, so every assertion must pass. The
judges' providers are opened for the check inside the run's cassette, if any, so ``--replay`` answers them too.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from typing import Any

from runner.engine.session import RunOutcome, wrapped
from runner.plan.compile import Plan
from runner.providers.base import ChatProvider


def check_once(plan: Plan, outcome: RunOutcome, inputs: Mapping[str, Any], report: Mapping[str, Any], tape: Any) -> int:
    """Check the assertions of one finished run; 0 when every one passed, else 1."""
    from runner.evals.evaluate import PASS, Evaluator, Outcome  # noqa: PLC0415

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
    )

    async def main() -> list[Any]:
        providers = _judges(plan, tape)
        try:
            return await Evaluator(plan.workflow, providers).check(done)
        finally:
            await asyncio.gather(*(p.aclose() for p in providers.values()), return_exceptions=True)

    verdicts = asyncio.run(main())
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
