"""A dataset row made into a workflow's inputs: columns renamed (``--map``), text parsed by each input's declared
type (CSV), then checked and given their defaults by the same code as ``--set`` and ``runner.run``'s inputs
(:func:`runner.workflow.inputs.resolve_inputs`). A bad row is a failed row whose message says where it is (the
file and line) and what is wrong, never a crash of the batch.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runner.errors import RunnerError, UsageError
from runner.workflow.inputs import parse_value, resolve_inputs
from runner.workflow.records import Workflow


def parse_map(pairs: Sequence[str]) -> dict[str, str]:
    """``--map column=input`` (repeatable, or comma-separated) as {column: input}; a :class:`UsageError` when
    malformed."""
    mapping: dict[str, str] = {}
    for pair in (p for arg in pairs for p in arg.split(",")):
        column, sep, name = pair.partition("=")
        if not sep or not column.strip() or not name.strip():
            raise UsageError(f"--map {pair!r}: expected column=input")
        mapping[column.strip()] = name.strip()
    return mapping


@dataclass(frozen=True)
class Prepared:
    """A row ready to run (``inputs``), or why it cannot (``error``); its ``key`` either way."""

    key: str
    inputs: dict[str, Any] | None
    error: str | None


class RowInputs:
    """Turns rows into inputs for one workflow. Columns that are no input of the workflow are ignored (a dataset
    often carries ids and expected answers beside the inputs); ``key``: the column whose value names a row in
    the results (its index otherwise)."""

    def __init__(
        self,
        wf: Workflow,
        mapping: Mapping[str, str] | None = None,
        key: str | None = None,
        sets: Sequence[str] = (),
    ) -> None:
        self.specs = {spec.name: spec for spec in wf.inputs}
        self.mapping = dict(mapping or {})
        self.key = key
        for column, name in self.mapping.items():
            if name not in self.specs:
                close = difflib.get_close_matches(name, list(self.specs), n=1)
                known = f"did you mean {close[0]!r}?" if close else f"inputs: {', '.join(self.specs) or 'none'}"
                raise UsageError(f"--map {column}={name}: the workflow has no input {name!r} ({known})")
        self.targets = set(self.mapping.values())
        self.wf = wf
        # --set NAME=VALUE: a value for every row, parsed once; a row's own column wins over it
        self.constants: dict[str, Any] = {}
        problems = []
        for assignment in sets:
            name, sep, text = assignment.partition("=")
            name = name.strip()
            spec = self.specs.get(name)
            if not sep or spec is None:
                close = difflib.get_close_matches(name, list(self.specs), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(f"--set {assignment!r}: expected NAME=VALUE for an input of the workflow{hint}")
                continue
            try:
                self.constants[name] = parse_value(text, spec)
            except ValueError as exc:
                problems.append(f"--set {name}: {exc}")
        if problems:
            raise UsageError("\n".join(problems))

    def prepare(self, index: int, where: str | None, values: Mapping[str, Any], *, from_text: bool) -> Prepared:
        key = self.key_of(index, values)
        given: dict[str, Any] = dict(self.constants)
        problems: list[str] = []
        for column, value in values.items():
            name = self.mapping.get(column)
            if name is None:
                if column in self.targets:
                    continue  # a mapped column wins over a column of the input's own name
                name = column
            spec = self.specs.get(name)
            if spec is None:
                continue
            if from_text and isinstance(value, str):
                if value == "" and spec.type != "string":
                    continue  # an empty cell gives no value: the default applies, or "required" is said
                try:
                    value = parse_value(value, spec)
                except ValueError as exc:
                    problems.append(f"input {name} (column {column!r}): {exc}")
                    continue
            given[name] = value
        if not problems:
            try:
                return Prepared(
                    key, resolve_inputs(self.wf, [], given, how="a column {name} (or --map COLUMN={name})"), None
                )
            except RunnerError as exc:
                problems.extend(str(exc).splitlines())
        at = f"{where}: row {index}" if where else f"row {index}"
        return Prepared(key, None, f"{at}: " + "; ".join(problems))

    def key_of(self, index: int, values: Mapping[str, Any]) -> str:
        if self.key is None:
            return str(index)
        value = values.get(self.key)
        return str(index) if value is None or value == "" else str(value)
