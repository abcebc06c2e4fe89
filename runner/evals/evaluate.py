"""One row's (or one run's) assertions checked: a :class:`Verdict` per assertion, never an exception.

Each assertion's templates see ``row`` (the dataset row's columns, the ones that are no input included),
``output`` (what it checks: the final output at the top level, the stage's output in a stage's list),
``stages`` and ``inputs``. ``path: data.label`` checks that part of the output instead of its text. A check
that cannot be made (a template that fails, a Python assertion that raises, a judge without a valid verdict, a
row that failed before its output) is an *error*, counted apart from failures.

Over 400 lines: every kind reads the same helpers (a template's value, equality across the types a dataset gives,
the reasons' quoting); split into modules, they would import each other.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import re
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from runner.config.source import TemplateSrc
from runner.errors import RunnerError
from runner.providers.base import ChatProvider
from runner.stages.base import Output
from runner.stages.workflow import Child
from runner.templates import base_context
from runner.workflow.asserts import AssertList, AssertSpec
from runner.workflow.records import Workflow

PASS, FAIL, ERROR = "pass", "fail", "error"


class Verdict(NamedTuple):
    """One assertion on one row: ``status`` (pass, fail or error), ``score`` in [0, 1] and ``reason``. A named
    tuple: made for every assertion of every row, it is built in a third of a frozen dataclass's time."""

    name: str
    kind: str
    scope: str
    status: str
    score: float
    reason: str
    weight: float = 1.0

    def line(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.kind,
            "scope": self.scope,
            "pass": self.status == PASS,
            "status": self.status,
            "score": round(self.score, 6),
            "weight": self.weight,
            "reason": self.reason,
        }


class Outcome(NamedTuple):
    """What a row gave, as the assertions read it (a batch's RowResult or a single run's result). A named tuple,
    as :class:`Verdict`: one is made for every row."""

    ok: bool
    error: str | None
    output: Any
    stages: Mapping[str, Any]
    inputs: Mapping[str, Any]
    row: Mapping[str, Any]
    latency_s: float = 0.0
    tokens: int = 0
    cost_usd: float = 0.0
    tool_calls: Sequence[tuple[str, str, str]] = ()  # (the calling node, the tool, its arguments' JSON text)


class Evaluator:
    """The assertions of ``wf``, their Python functions imported once; :meth:`check` evaluates a row.
    ``providers``: the run's, by model name (the judges are among them); ``embedders``: the ``similar``
    assertions', by name."""

    def __init__(
        self, wf: Workflow, providers: Mapping[str, ChatProvider], embedders: Mapping[str, Any] | None = None
    ) -> None:
        from runner.tools import import_callable  # noqa: PLC0415

        self.wf = wf
        self.lists: tuple[AssertList, ...] = wf.asserts
        self.providers = providers
        self.embedders = embedders or {}
        # module:function -> (the function, the arguments it names among ours; None: all of them)
        self.functions: dict[str, tuple[Callable[..., Any], tuple[str, ...] | None]] = {}
        base = Path(wf.file).resolve().parent
        for lst in self.lists:
            for spec in lst.items:
                if spec.kind == "python" and isinstance(spec.value, TemplateSrc):
                    target = spec.value.text
                    if target not in self.functions:
                        function = import_callable(target, base_dir=base, what="python assertion")
                        self.functions[target] = (function, _arguments(function))
        self.judge_tokens = 0
        self.owned: list[Any] = []  # embedders opened for the similar assertions, closed by aclose

    async def aclose(self) -> None:
        """Close the embedders opened for this evaluator (not those it shares with the run)."""
        owned, self.owned = self.owned, []
        await asyncio.gather(*(e.aclose() for e in owned), return_exceptions=True)

    async def check(self, outcome: Outcome) -> list[Verdict]:
        verdicts: list[Verdict] = []
        row = dict(outcome.row)
        for lst in self.lists:
            problem = None
            checked = outcome.output
            if not outcome.ok:
                problem = f"the row failed before its output could be checked: {outcome.error}"
            elif lst.stage is not None:
                checked = outcome.stages.get(lst.stage)
                if lst.stage not in outcome.stages:
                    problem = f"stage '{lst.stage}' did not run in this row"
                elif checked is None:
                    problem = f"stage '{lst.stage}' was skipped in this row (its when: was false)"
            if problem is not None:
                verdicts.extend(_verdict(lst, spec, ERROR, 0.0, problem) for spec in lst.items)
                continue
            # one context per list and row: what its templates read
            context = base_context(row=row, output=checked, stages=outcome.stages, inputs=outcome.inputs)
            for spec in lst.items:
                # the kinds that need not wait are checked without a coroutine of their own: a batch checks
                # every row on the run's loop, as the row ends (issue 24's overhead bar)
                try:
                    kind = spec.kind
                    if kind in _AWAITED:
                        passed, score, reason = await self._awaited(spec, _at(checked, spec.path), context)
                    elif kind == "tool-call":
                        passed, score, reason = _tool_call(spec, lst.stage, context, outcome.tool_calls)
                    else:
                        passed, score, reason = _kind(spec, _at(checked, spec.path), context, outcome)
                except _Error as exc:
                    verdicts.append(_verdict(lst, spec, ERROR, 0.0, str(exc)))
                    continue
                except Exception as exc:  # noqa: BLE001 - a template or user function that breaks is the row's error
                    verdicts.append(_verdict(lst, spec, ERROR, 0.0, _summary(exc)))
                    continue
                if spec.negate:
                    passed, score = not passed, 1.0 - score
                    reason = f"not: {reason}"
                verdicts.append(_verdict(lst, spec, PASS if passed else FAIL, score, reason))
        return verdicts

    async def _awaited(self, spec: AssertSpec, target: Any, context: dict[str, Any]) -> tuple[bool, float, str]:
        """The kinds that may wait: a Python function (sync or async), a judge's call, an embedder's."""
        if spec.kind == "python":
            return await self._python(spec, target, context)
        if spec.kind == "llm-rubric":
            return await self._judge(spec, target, context)
        return await self._similar(spec, target, context)

    async def _python(self, spec: AssertSpec, target: Any, context: dict[str, Any]) -> tuple[bool, float, str]:
        function, names = self.functions[spec.value.text]
        given = {"output": target, "row": context["row"], "stages": context["stages"], "inputs": context["inputs"]}
        result = function(**(given if names is None else {name: given[name] for name in names}))
        if inspect.isawaitable(result):
            result = await result
        return _scored(result, spec.threshold, spec.value.text)

    async def _judge(self, spec: AssertSpec, target: Any, context: dict[str, Any]) -> tuple[bool, float, str]:
        from runner.evals.judge import JudgeError, judge, shown  # noqa: PLC0415
        from runner.templates import template_for  # noqa: PLC0415

        assert spec.model is not None and spec.rubric is not None
        provider = self.providers.get(spec.model)
        if provider is None:
            raise _Error(f"the judge model '{spec.model}' is not open in this run")
        try:
            rubric = template_for(spec.rubric).render(context)
        except RunnerError as exc:
            raise _Error(str(exc)) from None
        try:
            verdict, tokens = await judge(provider, f"judge:{spec.name}", rubric, shown(_plain(target)), context)
        except JudgeError as exc:
            raise _Error(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - a judge call that fails (HTTP, timeout) is an error, not a failure
            raise _Error(f"the judge's call failed: {_summary(exc)}") from None
        self.judge_tokens += tokens
        score = float(verdict["score"])
        passed = bool(verdict["pass"]) if spec.threshold is None else score >= spec.threshold
        return passed, score, str(verdict["reason"])

    async def _similar(self, spec: AssertSpec, target: Any, context: dict[str, Any]) -> tuple[bool, float, str]:
        """Cosine similarity of the output's and the value's embeddings, at least ``threshold`` (default 0.75)."""
        import numpy as np  # noqa: PLC0415 - only for similar, as embeddings need it anyway

        from runner.workflow.asserts import SIMILAR_THRESHOLD  # noqa: PLC0415

        assert spec.embedder is not None
        embedder = self.embedders.get(spec.embedder)
        if embedder is None:
            raise _Error(f"the embedder '{spec.embedder}' is not open in this run")
        text, expected = _text(target), _text(_value(spec.value, context))
        try:
            vectors = np.asarray(await embedder.embed([text, expected]), dtype=np.float64)
        except Exception as exc:  # noqa: BLE001 - an embedding call that fails is an error, not a failure
            raise _Error(f"the embedder's call failed: {_summary(exc)}") from None
        norms = float(np.linalg.norm(vectors[0]) * np.linalg.norm(vectors[1]))
        cosine = float(vectors[0] @ vectors[1] / norms) if norms > 0 else 0.0
        threshold = spec.threshold if spec.threshold is not None else SIMILAR_THRESHOLD
        near = cosine >= threshold
        return (
            near,
            min(max(cosine, 0.0), 1.0),
            f"cosine similarity {cosine:.4f} {'>=' if near else '<'} {_num(threshold)}",
        )


def _tool_call(
    spec: AssertSpec, stage: str | None, context: dict[str, Any], calls: Sequence[tuple[str, str, str]]
) -> tuple[bool, float, str]:
    """Whether ``spec.tool`` was called (by the list's stage, or anywhere in the row at the top level) with
    ``arguments``: each named argument equal to its value, others free."""
    mine = [(node, tool, args) for node, tool, args in calls if stage is None or stage in _segments(node)]
    named = [args for _, tool, args in mine if tool == spec.tool]
    where = "" if stage is None else f" by stage '{stage}'"
    if not named:
        others = sorted({tool for _, tool, _ in mine})
        called = f"tools called: {', '.join(others)}" if others else "no tool was called"
        return _bool(False, f"{spec.tool} was not called{where} ({called})")
    times = f"{spec.tool} called {len(named)} time{'' if len(named) == 1 else 's'}{where}"
    if spec.arguments is None:
        return _bool(True, times)
    wanted = {key: _value(v, context) for key, v in spec.arguments}
    closest = ""
    for i, raw in enumerate(named):
        try:
            given = json.loads(raw or "{}")
        except ValueError:
            given = None
        if not isinstance(given, dict):
            closest = closest or f"call {i + 1}'s arguments are not a JSON object: {_show(raw, 60)}"
            continue
        wrong = [key for key in wanted if key not in given or not _same(given[key], wanted[key])]
        if not wrong:
            return _bool(True, f"{times}; call {i + 1} has {_show(wanted, 80)}")
        key = wrong[0]
        got = _show(given[key], 40) if key in given else "missing"
        closest = closest or f"call {i + 1}: {key} is {got}, expected {_show(wanted[key], 40)}"
    return _bool(False, f"{times}, none with arguments {_show(wanted, 80)} ({closest})")


def _kind(spec: AssertSpec, target: Any, context: dict[str, Any], outcome: Outcome) -> tuple[bool, float, str]:
    """The kinds checked at once, without waiting for anything."""
    kind = spec.kind
    if kind in ("latency", "tokens", "cost"):
        got = {"latency": outcome.latency_s, "tokens": outcome.tokens, "cost": outcome.cost_usd}[kind]
        assert spec.max is not None
        return _bool(got <= spec.max, f"{kind} {_num(got)} {'<=' if got <= spec.max else '>'} max {_num(spec.max)}")
    if kind == "is-json":
        return _is_json(target)
    if kind == "json_schema":
        from runner.structured import mismatches  # noqa: PLC0415

        value = _json_of(target)
        found = mismatches(value, spec.value, limit=3)
        return _bool(not found, "; ".join(str(m) for m in found) or "matches the schema")
    if kind == "one_of":
        options = [_value(v, context) for v in spec.value]
        hit = any(_same(target, o) for o in options)
        return _bool(hit, f"{_show(target)} is {'' if hit else 'not '}one of {_show(options)}")
    expected = _value(spec.value, context)
    if kind == "equals":
        same = _same(target, expected)
        return _bool(same, f"{_show(target)} {'==' if same else '!='} {_show(expected)}")
    if kind == "close":
        got, want = _number(target, "the output"), _number(expected, "the value")
        assert spec.tolerance is not None
        near = abs(got - want) <= spec.tolerance
        return _bool(near, f"|{_num(got)} - {_num(want)}| {'<=' if near else '>'} {_num(spec.tolerance)}")
    text, wanted = _text(target), _text(expected)
    if kind == "contains":
        hit = wanted in text
    elif kind == "icontains":
        hit = wanted.casefold() in text.casefold()
    elif kind == "starts_with":
        hit = text.startswith(wanted)
    else:  # regex
        try:
            hit = re.search(wanted, text) is not None
        except re.error as exc:
            raise _Error(f"regex {wanted!r} does not compile: {exc}") from None
    word = {"contains": "contains", "icontains": "contains", "starts_with": "starts with", "regex": "matches"}[kind]
    return _bool(hit, f"{_show(text, 80)} {'' if hit else 'does not '}{word if hit else _base(word)} {wanted!r}")


_AWAITED = frozenset({"python", "llm-rubric", "similar"})


def _segments(node: str) -> list[str]:
    """The stage ids in a node's id (``loop/inner[2]``: loop, inner)."""
    return [part for part in re.split(r"[\[\]/.]+", node) if part and not part.isdigit()]


def row_status_of(statuses: Iterable[str]) -> str:
    """A row's status from its assertions' statuses (or a repeated row's from its runs'): fail when one failed,
    else error when one could not be checked, else pass."""
    seen = set(statuses)
    return FAIL if FAIL in seen else ERROR if ERROR in seen else PASS


def weighted_score(verdicts: Sequence[Verdict]) -> float:
    """A row's score: its assertions' scores weighted by their ``weight`` (1 when every weight is 0)."""
    total = weighted = 0.0
    for v in verdicts:
        total += v.weight
        weighted += v.score * v.weight
    return weighted / total if total > 0 else 1.0


def _verdict(lst: AssertList, spec: AssertSpec, status: str, score: float, reason: str) -> Verdict:
    return Verdict(spec.name, spec.kind, lst.scope, status, score, reason, spec.weight)


_GIVEN = ("output", "row", "stages", "inputs")


def _arguments(function: Callable[..., Any]) -> tuple[str, ...] | None:
    """The arguments among ours that a Python assertion names (read once: a signature costs microseconds)."""
    try:
        params = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    return tuple(name for name in _GIVEN if name in params)


class _Error(Exception):
    """A check that could not be made: the assertion's error."""


def _base(word: str) -> str:
    return {"contains": "contain", "starts with": "start with", "matches": "match"}[word]


def _bool(passed: bool, reason: str) -> tuple[bool, float, str]:
    return passed, 1.0 if passed else 0.0, reason


def _scored(result: Any, threshold: float | None, who: str) -> tuple[bool, float, str]:
    """A Python assertion's return: a bool, a score in [0, 1] (passing above 0, or from ``threshold``), or a
    mapping ``{pass, score, reason}``."""
    if result is True or result is False:  # the usual return: said at once
        passed = result if threshold is None else float(result) >= threshold
        return passed, 1.0 if result else 0.0, f"{who} gave score {1 if result else 0}"
    reason = ""
    if isinstance(result, Mapping):
        if "pass" not in result and "score" not in result:
            raise _Error(f"{who} returned a mapping without 'pass' or 'score': {_show(result)}")
        score_raw = result.get("score", 1.0 if result.get("pass") else 0.0)
        reason = str(result.get("reason", ""))
        passed_raw = result.get("pass")
    else:
        score_raw, passed_raw = result, None
    if isinstance(score_raw, bool):
        score = 1.0 if score_raw else 0.0
        passed_raw = score_raw if passed_raw is None else passed_raw
    elif isinstance(score_raw, int | float) and math.isfinite(score_raw) and 0 <= score_raw <= 1:
        score = float(score_raw)
    else:
        raise _Error(
            f"{who} returned {_show(score_raw)}: expected a bool, a score in [0, 1] or {{pass, score, reason}}"
        )
    if threshold is not None:
        passed = score >= threshold
    elif passed_raw is not None:
        passed = bool(passed_raw)
    else:
        passed = score > 0
    return passed, score, reason or f"{who} gave score {_num(score)}"


def _at(value: Any, path: str | None) -> Any:
    """The part of an output that ``path`` names (``data.label``, ``data.items[0]``); the output's text
    without a path (an agent's reply), or the value itself (a python stage's, a fan-out's list). A sub-workflow's
    output is its last stage's (issue 22)."""
    if isinstance(value, Child):
        value = value.output
    if path is None:
        return value.content if isinstance(value, Output) else _plain(value)
    here: Any = value
    for i, (part, index) in enumerate(_path_parts(path)):
        if index is not None:
            if not isinstance(here, list | tuple) or index >= len(here):
                raise _Error(f"{_walked(path, i)}{part}: no such item (the value is {_show(here, 60)})")
            here = here[index]
        elif type(here) is dict and part in here:  # the usual case first: a structured output's field
            here = here[part]
        elif isinstance(here, Output):
            here = getattr(here, part, None) if part in ("content", "data", "name", "error") else None
        elif isinstance(here, Mapping) and part in here:
            here = here[part]
        else:
            raise _Error(f"{_walked(path, i)}.{part}: no such field (the value is {_show(_plain(here), 60)})")
    return here if type(here) is str or type(here) is dict else _plain(here)


@lru_cache(maxsize=256)
def _path_parts(path: str) -> tuple[tuple[str, int | None], ...]:
    """``data.items[0]`` as ``(("data", None), ("items", None), ("[0]", 0))``, read once per path."""
    return tuple(
        (part, int(part[1:-1]) if part.startswith("[") else None) for part in re.findall(r"[^.\[\]]+|\[\d+\]", path)
    )


def _walked(path: str, upto: int) -> str:
    """How a path's first ``upto`` parts read, for a message: ``output.data.items``."""
    out = "output"
    for part, index in _path_parts(path)[:upto]:
        out += part if index is not None else f".{part}"
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, Child):
        return _plain(value.output)
    if isinstance(value, Output):
        return value.data if value.data is not None else value.content
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _value(value: Any, context: Mapping[str, Any]) -> Any:
    """An assertion's value: a template evaluated (one ``{{ expression }}`` keeps its type), else as written."""
    if isinstance(value, TemplateSrc):
        read = _reader(value)
        if read is not None:
            found = read(context)
            if found is not _MISS:
                return found
        from jinja2 import Undefined  # noqa: PLC0415

        from runner.templates import template_for  # noqa: PLC0415

        try:
            result = template_for(value).evaluate(context)
            if isinstance(result, Undefined):
                str(result)  # a strict Undefined raises, saying which name: an error here, not a wrong comparison
            return result
        except RunnerError as exc:
            raise _Error(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - Jinja's own errors from a template's expression
            raise _Error(f"{value.loc}: template error: {exc}") from None
    return value


_MISS = object()
_READERS: dict[int, tuple[TemplateSrc, Callable[[Mapping[str, Any]], Any] | None]] = {}


def _reader(src: TemplateSrc) -> Callable[[Mapping[str, Any]], Any] | None:
    """For a value that is one ``{{ name.key.key }}`` (``{{ row.label }}``: most assertions' values), a reader of
    plain dict keys, which gives :data:`_MISS` to hand anything else to Jinja (a key missing, a key that is also
    a dict's attribute, which Jinja would read first): 0.1 ms less per row and assertion. Made once per template
    (the assertions' templates live as long as their workflow)."""
    hit = _READERS.get(id(src))
    if hit is not None and hit[0] is src:
        return hit[1]
    from runner.templates import is_constant, simple_parts  # noqa: PLC0415

    parts = simple_parts(src.text.strip())
    read = None
    if is_constant(src.text):  # no Jinja in it: the text itself, whatever the context (as Template renders it)
        text = src.text

        def read(context: Mapping[str, Any]) -> Any:
            return text

    elif parts is not None and len(parts) == 1 and isinstance(parts[0], tuple):
        path = parts[0]

        def read(context: Mapping[str, Any]) -> Any:
            here: Any = context.get(path[0], _MISS)
            for key in path[1:]:
                if type(here) is not dict or key not in here or hasattr(here, key):
                    return _MISS
                here = here[key]
            return here

    _READERS[id(src)] = (src, read)
    return read


def _same(got: Any, want: Any) -> bool:
    """Equality across the types a dataset gives: CSV text "3" equals the number 3, "true" the boolean."""
    if got == want and type(got) is type(want):
        return True
    if isinstance(got, str) and isinstance(want, str):
        return got.strip() == want.strip()
    for a, b in ((got, want), (want, got)):
        if isinstance(b, str):
            try:
                parsed = json.loads(b)
            except ValueError:
                continue
            if parsed == a and isinstance(parsed, bool) == isinstance(a, bool):
                return True
    return bool(got == want and isinstance(got, bool) == isinstance(want, bool))


def _is_json(target: Any) -> tuple[bool, float, str]:
    if not isinstance(target, str):
        return _bool(True, "a structured value")
    try:
        json.loads(target)
    except ValueError as exc:
        return _bool(False, f"not JSON: {exc}")
    return _bool(True, "valid JSON")


def _json_of(target: Any) -> Any:
    if isinstance(target, str):
        try:
            return json.loads(target)
        except ValueError as exc:
            raise _Error(f"the output is not JSON: {exc}") from None
    return target


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool):
        raise _Error(f"{what} is a boolean, not a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise _Error(f"{what} is {_show(value, 60)}, not a number") from None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def _num(x: float) -> str:
    return f"{x:.6g}"


def _show(value: Any, limit: int = 120) -> str:
    text = repr(value) if isinstance(value, str) else _text(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _summary(exc: BaseException) -> str:
    """An exception as one line: its type and message, and the innermost frame of user code that raised it."""
    if isinstance(exc, RunnerError):
        return str(exc)  # located already (a template's file:line:col)
    frames: Sequence[traceback.FrameSummary] = traceback.extract_tb(exc.__traceback__)
    own = Path(__file__).resolve().parent.parent
    user = [
        f
        for f in frames
        if not f.filename.startswith("<")
        and "site-packages" not in f.filename
        and not Path(f.filename).resolve().is_relative_to(own)
    ]
    where = f" (at {Path(user[-1].filename).name}:{user[-1].lineno} in {user[-1].name})" if user else ""
    message = str(exc)
    return f"{type(exc).__name__}: {message}{where}" if message else f"{type(exc).__name__}{where}"
