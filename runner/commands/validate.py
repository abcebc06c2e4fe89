"""``runner validate PATH...``: every problem in every file, at once, sorted; exit 0 clean, 1 problems, 2 usage.

A file named on the command line is always checked, whatever its suffix (pre-commit passes its own
selection). A folder is searched for ``*.yaml`` and ``*.yml`` files that are workflows, skipping hidden
folders (``.git``, ``.venv``, caches) and what a ``.runnerignore`` file in the folder or below it lists; a
YAML file is a workflow when it has the schema modeline (``# yaml-language-server: $schema=...workflow.schema
.json``) or a top-level ``version:`` beside ``stages:``, ``agents:`` or ``models:`` (issue 14: GitHub
workflows, ``.pre-commit-config.yaml`` and ``.pre-commit-hooks.yaml`` were checked as workflows). This is
read from the text, without parsing it. A run that finds no workflow at all is an error unless
``--allow-empty`` (issue 21: a CI check that checked nothing passed).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from runner.diagnostics import ERROR, WARNING, Diagnostic
from runner.errors import RunnerError, UsageError
from runner.validate.check import check_file
from runner.validate.formats import FORMATS_BY_NAME

SUFFIXES = (".yaml", ".yml")
IGNORE_FILE = ".runnerignore"
_MODELINE = re.compile(r"^#\s*yaml-language-server:\s*\$schema=\S*workflow\.schema\.json", re.M)
# A top-level key in block style ("version:" at column 0, quoted or not), or anywhere in a flow-style mapping.
_TOP_KEY = re.compile(r"""^["']?(version|stages|agents|models)["']?[ \t]*:""", re.M)
_FLOW_KEY = re.compile(r"""["']?\b(version|stages|agents|models)["']?[ \t]*:""")
_READ_AT_MOST = 1 << 20  # the workflow size limit: a bigger file is a workflow only if its first MiB says so


def is_workflow(path: Path) -> bool:
    """Whether a YAML file found in a folder is a workflow: the schema modeline, or a top-level ``version``
    with ``stages``, ``agents`` or ``models``. An unreadable file is one (so that its error is reported)."""
    try:
        with path.open("rb") as f:
            text = f.read(_READ_AT_MOST).decode("utf-8", errors="replace")
    except OSError:
        return True
    if _MODELINE.search(text):
        return True
    keys = set(_TOP_KEY.findall(text))
    body = re.sub(r"(?m)^\s*#.*$", "", text).lstrip()
    if body.startswith("{"):  # a flow-style mapping: `{version: 1, stages: [...]}`
        keys |= set(_FLOW_KEY.findall(body))
    return "version" in keys and bool(keys & {"stages", "agents", "models"})


@dataclasses.dataclass(frozen=True)
class _Ignore:
    """The patterns of one ``.runnerignore``, relative to its folder."""

    base: Path
    patterns: tuple[str, ...]

    @classmethod
    def read(cls, folder: Path) -> _Ignore | None:
        try:
            lines = (folder / IGNORE_FILE).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            return None
        patterns = tuple(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))
        return cls(folder, patterns) if patterns else None

    def matches(self, path: Path, *, is_dir: bool) -> bool:
        relative = path.relative_to(self.base).as_posix()
        for pattern in self.patterns:
            if pattern.endswith("/"):
                if not is_dir:
                    continue
                pattern = pattern.rstrip("/")
            anchored = "/" in pattern
            target = relative if anchored else path.name
            if fnmatch.fnmatchcase(target, pattern.lstrip("/")):
                return True
        return False


def _walk(folder: Path) -> tuple[list[Path], list[Path]]:
    """The workflows under ``folder`` and the other YAML files found there, each sorted."""
    found: list[Path] = []
    others: list[Path] = []
    rules: dict[Path, tuple[_Ignore, ...]] = {}
    for root, dirs, names in os.walk(folder):
        here = Path(root)
        parent = rules.get(here.parent, ()) if here != folder else ()
        own = _Ignore.read(here)
        active = (*parent, own) if own is not None else parent
        rules[here] = active
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and not any(rule.matches(here / d, is_dir=True) for rule in active)
        )
        for name in names:
            path = here / name
            if path.suffix not in SUFFIXES or any(rule.matches(path, is_dir=False) for rule in active):
                continue
            if path.is_file():
                (found if is_workflow(path) else others).append(path)
    return sorted(found), sorted(others)


def collect_files(paths: Sequence[str]) -> tuple[list[Path], list[Path]]:
    """The files to check, and the YAML files found in folders but skipped as not workflows."""
    files: list[Path] = []
    skipped: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found, others = _walk(path)
            files.extend(found)
            skipped.extend(others)
        elif path.exists():
            files.append(path)
        else:
            raise UsageError(f"{raw}: no such file or folder")
    files = list(dict.fromkeys(files))  # a file named twice is checked once
    return files, [p for p in dict.fromkeys(skipped) if p not in files]


def parse_sets(sets: Sequence[str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for assignment in sets:
        name, sep, text = assignment.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--set {assignment!r}: expected name=value")
        out.append((name.strip(), text))
    return out


def check_paths(
    paths: Sequence[str], *, strict: bool = False, sets: Sequence[str] = ()
) -> tuple[list[Diagnostic], int]:
    """Every problem in the files under ``paths``, sorted, and the number of files; ``strict``: warnings
    count as errors (the rule id stays, so suppressions and docs still match); ``sets``: ``name=value``
    input values checked against every file's inputs, as ``runner run --set`` parses them."""
    files, _ = collect_files(paths)
    return check_files(files, strict=strict, sets=sets), len(files)


def check_files(
    files: Sequence[Path], *, strict: bool = False, sets: Sequence[str] = (), connect: bool = False
) -> list[Diagnostic]:
    from runner.validate.rules.values import check_sets  # noqa: PLC0415

    assignments = parse_sets(sets)
    problems: list[Diagnostic] = []
    for file in files:
        wf, found = check_file(file)
        problems.extend(found)
        if connect and wf is not None and wf.mcp_servers:  # issue 22: start the servers, check the tools named
            from runner.mcp.connect import check_connected  # noqa: PLC0415

            problems.extend(check_connected(wf))
        if wf is not None and assignments:
            problems.extend(check_sets(wf, assignments))
    if strict:
        problems = [dataclasses.replace(p, severity=ERROR) if p.severity == WARNING else p for p in problems]
    problems.sort()
    return problems


def validate_command(
    paths: Sequence[str],
    *,
    fmt: str,
    out: TextIO,
    strict: bool = False,
    sets: Sequence[str] = (),
    allow_empty: bool = False,
    connect: bool = False,
) -> int:
    formatter = FORMATS_BY_NAME.get(fmt)
    if formatter is None:
        raise UsageError(f"unknown format {fmt!r}; choose from: {', '.join(FORMATS_BY_NAME)}")
    files, skipped = collect_files(paths)
    if not files and not allow_empty:
        where = ", ".join(paths)
        also = f" ({len(skipped)} YAML file(s) there are not workflows)" if skipped else ""
        raise RunnerError(
            f"no workflow files found in {where}{also}: a workflow has a top-level 'version:' beside 'stages:', "
            "'agents:' or 'models:', or the schema modeline; pass --allow-empty if finding none is fine"
        )
    problems = check_files(files, strict=strict, sets=sets, connect=connect)
    out.write(formatter(problems, len(files)))
    if skipped and fmt == "text":
        names = ", ".join(str(p) for p in skipped[:3]) + (f" and {len(skipped) - 3} more" if len(skipped) > 3 else "")
        out.write(f"skipped {len(skipped)} YAML file(s) that are not workflows: {names}\n")
    return 1 if any(p.severity == ERROR for p in problems) else 0
