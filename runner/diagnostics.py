"""Diagnostics: one located problem in a workflow file, and the accumulator that collects them."""

from __future__ import annotations

from dataclasses import dataclass, field

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True, order=True)
class Diagnostic:
    """A problem at ``file:line:column`` (1-based), spanning to ``end_line:end_column`` (exclusive).

    ``rule`` is a stable id (``schema``, ``yaml-syntax``, ``duplicate-key``, ...) that users can look up
    in docs/rules.md; ``hint`` says how to fix it.
    """

    file: str
    line: int
    column: int
    end_line: int = 0
    end_column: int = 0
    severity: str = ERROR
    rule: str = ""
    message: str = ""
    hint: str = field(default="", compare=False)

    def format_line(self) -> str:
        text = f"{self.file}:{self.line}:{self.column}: {self.severity}: {self.message} [{self.rule}]"
        return text


class Diagnostics:
    """Collects problems from every check; reported once, sorted by file and position."""

    def __init__(self) -> None:
        self._items: list[Diagnostic] = []

    def add(self, diagnostic: Diagnostic) -> None:
        self._items.append(diagnostic)

    def extend(self, diagnostics: list[Diagnostic] | tuple[Diagnostic, ...]) -> None:
        self._items.extend(diagnostics)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.sorted() if d.severity == ERROR]

    def sorted(self) -> list[Diagnostic]:
        return sorted(set(self._items))

    def __len__(self) -> int:
        return len(self._items)
