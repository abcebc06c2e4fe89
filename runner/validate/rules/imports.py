"""Python code a workflow names (``python: module:function`` stages, ``tools.<name>.function``): the module
exists and defines the name, found the way ``runner run`` will import it, without running any of it.

``runner run`` imports ``module`` with the workflow's folder first on the import path
(``runner.tools.import_callable``), then reads ``function`` (``Class.method`` too) from it. Here the module
is located by the same import machinery but never imported: the finders of ``sys.meta_path`` are asked
where the file is, level by level (a package's ``__path__`` from its own spec, not from importing it, so no
``__init__.py`` runs), and the file is parsed with :mod:`ast` (``runner/validate/rules/bindings.py`` says
which names count as defined, and which modules are trusted). Modules without Python source (built into the
interpreter: checked by their names; extension and bytecode-only modules: trusted) are not parsed.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.diagnostics import Diagnostic
from runner.validate.rules.bindings import Module, read_source
from runner.validate.rules.common import diag
from runner.validate.rules.scope import Walk
from runner.validate.rules.source import Source, Where
from runner.workflow.records import PythonStage, Workflow

_CACHE: dict[tuple[str, int, int], Module] = {}


def check_imports(wf: Workflow, source: Source, walk: Walk) -> list[Diagnostic]:
    """Every tool and python stage whose module cannot be found or read, or lacks the function."""
    base = Path(wf.file).resolve().parent
    out: list[Diagnostic] = []
    stages = [(stage, path) for stage, path in walk.order if isinstance(stage, PythonStage)]
    imported = frozenset(
        target.partition(":")[0] for target in [t.function for t in wf.tools.values()] + [s.function for s, _ in stages]
    )
    for name, tool in wf.tools.items():
        problem = _check(tool.function, base, f"tool '{name}'", imported)
        if problem is not None:
            out.append(_located(wf, source, ("tools", name, "function"), tool.function, tool.loc, problem))
    for stage, path in stages:
        if isinstance(stage, PythonStage):
            problem = _check(stage.function, base, f"python stage '{stage.id}'", imported)
            if problem is not None:
                out.append(_located(wf, source, (*path, "python"), stage.function, stage.loc, problem))
    return out


@dataclass(frozen=True, slots=True)
class _Problem:
    """What is wrong with a ``module:function`` reference, and which part of it."""

    rule: str
    message: str
    hint: str
    part: str  # "module" or "function": which part of "module:function" the caret goes under


def _located(
    wf: Workflow, source: Source, path: tuple[str | int, ...], value: str, loc: Any, p: _Problem
) -> Diagnostic:
    module, _, function = value.partition(":")
    start, end = (0, len(module)) if p.part == "module" else (len(module) + 1, len(value))
    src = source.template_src(path)
    if src is not None and "\n" not in src.text:
        where = source.template(src, start, end)
    else:
        where = source.value(path, loc, len(value))
        where = Where(where.line, where.column, where.end_line, where.end_column)
    return diag(wf.file, where, p.rule, p.message, p.hint)


def _check(target: str, base: Path, who: str, imported: frozenset[str]) -> _Problem | None:
    """``imported``: the modules the workflow's other tools and stages import (which makes each submodule an
    attribute of its package)."""
    module_name, _, attr = target.partition(":")
    parts = module_name.split(".")
    if not all(part.isidentifier() for part in parts):
        return _Problem(
            "unknown-module",
            f"'{module_name}' is not a module name ({who})",
            "write a dotted module name such as 'tools' or 'mypackage.tools'",
            "module",
        )
    found = _find(parts, base)
    if isinstance(found, str):  # why the module cannot be found
        return _Problem(
            "unknown-module",
            f"cannot find module '{module_name}' for {who}: {found}",
            _module_hint(parts, base),
            "module",
        )
    for level in found:
        if level.error is not None:
            return _Problem(
                "unknown-module",
                f"module '{module_name}' for {who} cannot be imported: {level.error}",
                "fix the Python syntax error in that file",
                "module",
            )
    module = found[-1]
    first, _, rest = attr.partition(".")
    if module.names is None or first in module.names:
        if module.names is not None and module.plain.get(first) and not rest:
            return _Problem(
                "unknown-function",
                f"'{first}' in module '{module_name}' ({_shown(module.path, base)}) is {module.plain[first]}, not a "
                f"function ({who})",
                "name a function, a class or another callable",
                "function",
            )
        if not rest or module.names is None:
            return None
        members = module.classes.get(first, None) if first in module.classes else None
        if members is None:
            return None
        member = rest.split(".")[0]
        if member in members:
            kind = module.class_plain.get(first, {}).get(member)
            if kind and "." not in rest:
                return _Problem(
                    "unknown-function",
                    f"'{first}.{member}' in module '{module_name}' ({_shown(module.path, base)}) is {kind}, not a "
                    f"function ({who})",
                    "name a method, a class or another callable",
                    "function",
                )
            return None
        return _Problem(
            "unknown-function",
            f"class '{first}' in module '{module_name}' ({_shown(module.path, base)}) does not define "
            f"'{rest.split('.')[0]}' ({who})",
            _suggest(rest.split(".")[0], members, f"class '{first}'"),
            "function",
        )
    submodule = f"{module_name}.{first}"
    if module.package is not None and _find_in(submodule, module.package) is not None:
        if any(m == submodule or m.startswith(submodule + ".") for m in imported):
            return None  # imported by another tool or stage, which makes it an attribute of the package
        return _Problem(
            "unknown-function",
            f"'{first}' is a submodule of package '{module_name}', which does not import it ({who})",
            f"name the submodule as the module: '{submodule}:{rest or '<function>'}'",
            "function",
        )
    where = {"built-in": "built in", "namespace": "a folder without __init__.py, which defines nothing"}.get(
        module.kind, _shown(module.path, base)
    )
    return _Problem(
        "unknown-function",
        f"module '{module_name}' ({where}) does not define '{first}' ({who})",
        _suggest(first, module.names, f"module '{module_name}'"),
        "function",
    )


def _shown(path: str | None, base: Path) -> str:
    if path is None:
        return "built in"
    try:
        return os.path.relpath(path, base) if Path(path).is_relative_to(base) else path
    except ValueError:  # another drive on Windows
        return path


def _suggest(name: str, names: frozenset[str], where: str) -> str:
    public = sorted(n for n in names if not n.startswith("_"))
    import difflib  # noqa: PLC0415 - only for a message: off the path of a clean run

    close = difflib.get_close_matches(name, public, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    if public:
        shown = ", ".join(public[:12]) + (", ..." if len(public) > 12 else "")
        return f"{where} defines: {shown}"
    return f"define '{name}' in {where}"


def _module_hint(parts: list[str], base: Path) -> str:
    local = []
    try:
        for entry in sorted(os.listdir(base)):
            full = base / entry
            if entry.endswith(".py") and full.is_file():
                local.append(entry[:-3])
            elif (full / "__init__.py").is_file():
                local.append(entry)
    except OSError:
        pass
    import difflib  # noqa: PLC0415 - only for a message: off the path of a clean run

    close = difflib.get_close_matches(parts[0], local, n=1, cutoff=0.6)
    if close and close[0] != parts[0]:
        return f"did you mean '{'.'.join([close[0], *parts[1:]])}'?"
    return (
        f"runner imports it from the workflow's folder ({base}) or Python's import path: create "
        f"{'/'.join(parts)}.py there, or install the package"
    )


def _find(parts: list[str], base: Path) -> list[Module] | str:
    """The module of each level of ``a.b.c``, or why one cannot be found; nothing is imported."""
    search = list(sys.path) if str(base) in sys.path else [str(base), *sys.path]
    levels: list[Module] = []
    locations: list[str] | None = search
    for i in range(len(parts)):
        name = ".".join(parts[: i + 1])
        if locations is None:
            return f"'{'.'.join(parts[:i])}' is a module, not a package"
        spec = _find_in(name, locations, top=i == 0)
        if spec is None:
            return "no such module" if i == 0 else f"package '{'.'.join(parts[:i])}' has no module '{parts[i]}'"
        module = _read(spec, name)
        levels.append(module)
        locations = module.package
    return levels


def _find_in(name: str, locations: list[str], *, top: bool = False) -> Any:
    """The spec of module ``name`` as the import system would find it in a fresh process, asking each finder
    for a file only (``importlib.util.find_spec('a.b')`` would import ``a``). ``sys.modules`` is not
    consulted: what this process happens to have imported must not change what validate says."""
    for finder in sys.meta_path:
        find_spec = getattr(finder, "find_spec", None)
        if find_spec is None:
            continue
        try:
            if finder is importlib.machinery.PathFinder:
                spec = find_spec(name, locations)
            else:
                spec = find_spec(name, None if top else locations)
        except Exception:  # noqa: BLE001 - a finder that cannot answer is skipped, as the import system does not
            continue
        if spec is not None:
            return spec
    return None


def _read(spec: Any, name: str) -> Module:
    package = list(spec.submodule_search_locations) if spec.submodule_search_locations is not None else None
    origin = spec.origin
    if origin == "frozen":  # a frozen standard module: its source file, if Python knows it
        origin = getattr(spec.loader_state, "filename", None)
    if origin in (None, "namespace") and package is not None:  # a folder without __init__.py
        return Module(None, frozenset(), {}, package=package, kind="namespace")
    if origin == "built-in":
        module = importlib.import_module(name)  # part of the interpreter: no Python code runs
        return Module(None, _dynamic_or(vars(module)), {}, package=package, kind="built-in")
    if not isinstance(origin, str) or not origin.endswith(".py"):
        return Module(origin, None, {}, package=package)  # an extension or bytecode-only module: trusted
    try:
        stat = os.stat(origin)
    except OSError:
        return Module(origin, None, {}, package=package)
    key = (origin, stat.st_mtime_ns, stat.st_size)
    cached = _CACHE.get(key)
    if cached is None:
        if len(_CACHE) >= 1024:  # a long-lived process: old versions of edited files go
            _CACHE.clear()
        cached = _CACHE[key] = read_source(origin, stat.st_size, package)
    return cached


def _dynamic_or(namespace: dict[str, Any]) -> frozenset[str] | None:
    return None if "__getattr__" in namespace else frozenset(namespace)
