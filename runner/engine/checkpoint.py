"""A single run's checkpoint: ``<run folder>/checkpoint.sqlite``, each finished node's output (issue 23).

The engine asks :meth:`Checkpoint.restored` before it runs a node (a stage at any depth, ``<prefix><id>``, or a
fan-out's per-item agent call, ``<stage>[i]``) and commits the node's output with :meth:`Checkpoint.commit` when it
ends, so ``runner run --resume RUN_FOLDER`` runs only what did not finish and never sends a finished node to a model
again. What a node's output depended on finished before it started and was committed before it (commits are queued
in the order nodes end and written in that order, :mod:`runner.ledgerdb`): whatever a kill loses is a tail of
nodes whose outputs no committed node used, and those simply run again. A top-level stage's end writes the queue at
once; the nodes inside it (a wide fan-out's branches) are written in groups, at the latest ``flush_every`` seconds
after they end: a commit per branch would cost more than a scripted branch does (``bench/checkpoint.py``).

Stored with the output: the outputs of the stages nested in a stage that later stages see (``stages.<inner>`` of
listed branches and switch cases), and the node's working memory (``memory/<node>.jsonl`` and its stored results,
put back on resume if the folder lost them; those of nodes that did not finish are removed, since they run anew).
Outputs are stored as tagged JSON: text, numbers, lists, mappings, agent outputs, loop iterations, switch results.
A python stage's output that is none of these is not stored, and the stage runs again on resume.

The meta table keeps what the run was given (the workflow's path, its inputs, ``--offline``, the report folder) and
a hash of each top-level stage's definition (its YAML with the agents, models and tools it uses), so a resume runs
the same inputs and names the stages an edit changed.

Over 400 lines: the file, its writer thread, the stored values' encoding and the definitions' hashes are one
contract between a run and its resume, read in one place (the values and the hashes could move out as they grow).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

from runner.calls import Usage
from runner.fsutil import atomic_write_text
from runner.ledgerdb import Kind, LedgerError, Store, hold, initialise, let_go, open_checked
from runner.locking import FileLock
from runner.stages.base import SKIPPED, Iterations, Output, Routed
from runner.stages.workflow import Child

CHECKPOINT_NAME = "checkpoint.sqlite"
FORMAT = "runner-checkpoint"
VERSION = 1
KIND = Kind(FORMAT, VERSION, CHECKPOINT_NAME, made_by="runner run", noun="checkpoint", what="this run")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (
    node TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    exports TEXT,
    memory TEXT
);
"""
_COMMIT = "INSERT OR REPLACE INTO nodes VALUES (?, ?, ?, ?)"
_SPENT = "INSERT OR REPLACE INTO meta VALUES ('spent', ?)"
_COMMIT_GROUP = "group"  # a group of text replies: encoded by the writer thread (Checkpoint._write)
GROUP = "#group-"  # the name of a row holding a group (no stage id starts with '#')
MISSING: Any = object()
"""What :meth:`Checkpoint.restored` returns for a node the checkpoint does not hold."""


class Unstorable(Exception):
    """A value the checkpoint cannot store (a python stage's object of its own)."""


class Checkpoint(Store):
    """The open checkpoint of one run folder: ``create`` starts one, ``open`` reads one to resume."""

    flush_rows = 4096  # the timer writes sooner: a kill loses at most flush_every seconds of nested nodes
    flush_every = 0.2
    MISSING = MISSING
    noun = "checkpoint"

    def __init__(self, path: Path, db: sqlite3.Connection, lock: FileLock | None = None) -> None:
        super().__init__(path, db, lock)
        self.folder = path.parent
        self.memory = False  # does the run have working memory to store with its nodes (set by the session)
        self._done: dict[str, tuple[str, str | None]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self.restored_nodes = 0
        # Commits are written by a thread of their own, in the order they were queued, while the run goes on (a
        # 1,000-row transaction costs a fan-out of scripted replies half its time again when the loop waits for
        # it). A top-level stage starts only once the stages before it are written (:meth:`settled`).
        self._writer: ThreadPoolExecutor | None = None
        self._written: Future[None] | None = None
        self._committed: Future[None] | None = None
        self._replies: list[tuple[str, list[Any]]] = []
        self._error: BaseException | None = None
        # What the run has spent so far (its budget's calls, tokens and cost, the earlier parts' included), written
        # with each group of commits and at the end, so that a resumed run's limits count every call it made:
        # its repair and tool turns too, and the calls of nodes that never finished (set by the run's budget).
        self.spending: Callable[[], Mapping[str, Any]] | None = None
        self._kept_spent: dict[str, Any] | None = None  # what an earlier run of the folder spent (read by open)

    @classmethod
    def start(
        cls, folder: Path, wf: Any, inputs: Mapping[str, Any], *, offline: bool = False, report_dir: str | None = None
    ) -> Checkpoint:
        """The checkpoint of a run of ``wf`` (a file's workflow) starting in ``folder`` with ``inputs``: what a
        resume needs to run it again the same way (the file, the inputs, ``--offline``, the report folder)."""
        settings = {
            "workflow": os.path.abspath(wf.file),
            "inputs": dict(inputs),
            "offline": offline,
            "report_dir": os.path.abspath(report_dir or wf.report.dir),
        }
        try:
            meta = {
                "settings": json.dumps(settings, sort_keys=True),
                "stages": json.dumps(stage_hashes(wf.file)),
                "status": "running",
            }
        except (TypeError, ValueError) as exc:
            raise LedgerError(f"the run's inputs cannot be kept in its checkpoint: {exc}") from None
        folder.mkdir(parents=True, exist_ok=True)
        lock = hold(folder, KIND)
        # The file is made by the writer thread, while the run starts: its first stage has nothing to wait for,
        # and a later one waits for the stages before it (:meth:`settled`), which are written after the file.
        ckpt = cls(folder / CHECKPOINT_NAME, cast(sqlite3.Connection, None), lock)
        ckpt._submit(ckpt._initialise, meta)
        return ckpt

    def _initialise(self, meta: Mapping[str, str]) -> None:
        self.db = initialise(self.path, KIND, _SCHEMA, meta)

    @classmethod
    def open(cls, folder: Path) -> Checkpoint:
        """The checkpoint of ``folder``, checked, with the nodes it holds loaded."""
        ckpt = cls(*open_checked(folder, KIND, {"nodes"}))
        try:
            for node, value, exports in ckpt.db.execute("SELECT node, value, exports FROM nodes"):
                if node.startswith(GROUP):
                    for member, row in json.loads(value)["$group"]:
                        ckpt._done[member] = (_dumps({"$output": row}), None)
                else:
                    ckpt._done[node] = (value, exports)
            spent = ckpt.db.execute("SELECT value FROM meta WHERE key = 'spent'").fetchone()
            if spent is not None:
                ckpt._kept_spent = dict(json.loads(spent[0]))
        except (sqlite3.Error, ValueError, KeyError, TypeError) as exc:
            ckpt.db.close()
            raise LedgerError(f"{ckpt.path}: the checkpoint cannot be read ({exc}); the file is damaged") from None
        return ckpt

    def _meta(self, key: str) -> str:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise LedgerError(f"{self.path}: the checkpoint has no {key}; the file is damaged")
        return str(row[0])

    @property
    def settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = json.loads(self._meta("settings"))
        return settings

    @property
    def stages(self) -> dict[str, str]:
        stages: dict[str, str] = json.loads(self._meta("stages"))
        return stages

    @property
    def status(self) -> str:
        """``running`` until the run ends ok (``finished``); a failed, stopped or killed run stays ``running``."""
        return self._meta("status")

    @property
    def nodes(self) -> int:
        """How many nodes the checkpoint held when opened."""
        return len(self._done)

    def done(self) -> list[str]:
        """The nodes the checkpoint held when opened, sorted."""
        return sorted(self._done)

    def update(self, settings: Mapping[str, Any], stages: Mapping[str, str]) -> None:
        """``--force``: the run goes on under the workflow as it is now."""
        with self._writing():
            self.db.execute("UPDATE meta SET value = ? WHERE key = 'settings'", (json.dumps(dict(settings)),))
            self.db.execute("UPDATE meta SET value = ? WHERE key = 'stages'", (json.dumps(dict(stages)),))

    def ready(self, *, force: bool = False) -> str:
        """Check the run's workflow as it is now against the checkpoint and make the folder ready to go on (its
        working memory tidied); the workflow's file. An edited stage is refused, named, unless ``force``."""
        settings = self.settings
        file = str(settings["workflow"])
        if not os.path.isfile(file):
            raise LedgerError(
                f"{file}: the workflow of the run in {self.folder} is gone; put it back to resume the run"
            )
        now = stage_hashes(file)
        changes = changed_stages(self.stages, now)
        if changes and not force:
            which = "stage" if len(changes) == 1 else "stages"
            raise LedgerError(
                f"{file}: the workflow changed since the run in {self.folder} started ({which} {', '.join(changes)}); "
                "outputs kept from before would not be of the workflow as it is. Pass --force to resume with it as "
                "it is now (finished stages are kept), or start a new run"
            )
        if changes:
            self.update(settings, now)
        self.tidy_memory()
        return file

    def finished(self) -> None:
        """The run ended ok: once everything is written, a resume has nothing left to run."""
        self.flush()
        self._submit(self._mark_finished)

    def _write(self, pending: list[tuple[str, tuple[Any, ...]]]) -> None:
        rows = []
        for sql, args in pending:
            if sql is _COMMIT_GROUP:
                name, replies = args
                sql, args = _COMMIT, (name, _dumps({"$group": replies}), None, None)
            rows.append((sql, args))
        super()._write(rows)

    def _mark_finished(self) -> None:
        with self._writing():
            self.db.execute("UPDATE meta SET value = 'finished' WHERE key = 'status'")

    @property
    def pending(self) -> int:
        return len(self._pending) + len(self._replies)

    def flush(self) -> None:
        """Hand the commits queued since the last flush to the writer thread, as one transaction. The agents' text
        replies among them (a wide fan-out's branches) go as one row that names each node: a row per branch cost
        more than the branches' own work (``bench/checkpoint.py``)."""
        pending, self._pending = self._pending, []
        replies, self._replies = self._replies, []
        self._flushed = time.monotonic()
        if replies:
            pending.append((_COMMIT_GROUP, (f"{GROUP}{os.urandom(8).hex()}", replies)))
        if pending and self.spending is not None:
            pending.append((_SPENT, (json.dumps(dict(self.spending())),)))
        if pending:
            self._submit(self._write, pending)
            self._committed = self._written
        if self._error is not None:
            raise self._error

    def _submit(self, write: Any, *args: Any) -> None:
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="runner-checkpoint")
        self._written = self._writer.submit(self._guarded, write, *args)

    def _guarded(self, write: Any, *args: Any) -> None:
        if self._error is None:  # after a failed write nothing later is written: commits stay in order
            try:
                write(*args)
            except BaseException as exc:  # noqa: BLE001 - raised on the run's side by flush, settled or close
                self._error = exc

    async def settled(self) -> None:
        """Wait (without holding the loop) until everything handed to the writer is written; raise its error."""
        written = self._committed  # not the file's making: the first stage has no stage before it to wait for
        if written is not None and not written.done():
            await asyncio.wrap_future(written)
        if self._error is not None:
            raise self._error

    def spent_totals(self) -> dict[str, Any] | None:
        """What the run had spent when it stopped (its budget's ``calls``, ``tokens`` and ``cost``), when it kept
        a budget; None for a run without ``limits:`` (then :meth:`spent` estimates it from the finished calls)."""
        return self._kept_spent

    def spent(self, agents: Mapping[str, Any]) -> list[tuple[str, int, int]]:
        """What the finished agent calls held used: (model, prompt tokens, completion tokens) each, their model
        found through ``agents`` (the plan's, by name); for a resumed run's budget (:mod:`runner.engine.budget`).
        A fan-out's own output repeats its branches' and is not counted again."""
        out = []
        for value, _ in self._done.values():
            if value.startswith('{"$output":'):
                _, name, _, prompt, completion, _ = json.loads(value)["$output"]
                agent = agents.get(name)
                if agent is not None:
                    out.append((agent.model.name, int(prompt), int(completion)))
        return out

    # -- the engine's side ----------------------------------------------------------------------------------

    def restored(self, node: str) -> Any:
        """The output ``node`` committed in an earlier run of this folder, or :data:`MISSING`."""
        found = self._done.get(node)
        if found is None:
            return MISSING
        data = json.loads(found[0])
        if isinstance(data, dict) and "$branches" in data:
            outputs = [self.restored(f"{node}[{i}]") for i in range(data["$branches"])]
            if any(o is MISSING for o in outputs):
                raise LedgerError(f"{self.path}: the checkpoint lacks branches of {node}; the file is damaged")
            self.restored_nodes -= len(outputs)  # counted as the one node it is
            data = outputs
        else:
            data = decode(data)
        self.restored_nodes += 1
        return data

    def exports(self, node: str) -> dict[str, Any]:
        """The nested stages' outputs a restored stage had made visible to later stages."""
        found = self._done.get(node)
        if found is None or found[1] is None:
            return {}
        return {k: decode(v) for k, v in json.loads(found[1]).items()}

    def commit(self, node: str, value: Any, exports: Mapping[str, Any] | None = None, *, now: bool = False) -> None:
        """Queue ``node``'s output (and what it exported); ``now``: write the queue at once (a top-level stage)."""
        if type(value) is Output and value.data is None:  # the common node: an agent's text reply
            if value.error is not None:
                return  # a branch failed under on_error: collect: it runs again on resume
            usage = value.usage
            row = [value.content, value.name, value.node, usage.prompt_tokens, usage.completion_tokens, None]
            if self.memory:
                self.queue(_COMMIT, (node, _dumps({"$output": row}), None, self._memory_of(node)))
            else:  # kept as it is, to be written with the others of its group as one row (see flush)
                self._replies.append((node, row))
                if len(self._replies) >= self.flush_rows:
                    self.flush()
            self._later(now)
            return
        if isinstance(value, Output) and value.error is not None:
            return
        try:
            text = _dumps(encode(value))
            extra = None
            if exports:
                extra = json.dumps({k: encode(v) for k, v in exports.items()}, separators=(",", ":"))
        except (Unstorable, ValueError, TypeError):
            return  # a python stage's own object: it runs again on resume
        memory = self._memory_of(node) if self.memory else None
        self.queue(_COMMIT, (node, text, extra, memory))
        self._later(now)

    def commit_branches(self, node: str, outputs: list[Any], *, now: bool = False) -> None:
        """A fan-out whose every branch is a node committed on its own (one agent call each): stored as the
        number of branches, restored from theirs, rather than every output twice. One that kept a failed branch
        (``on_error: collect``) is not stored: on resume its finished branches are restored and the others run."""
        if any(isinstance(o, Output) and o.error is not None for o in outputs):
            return
        self.queue(_COMMIT, (node, _dumps({"$branches": len(outputs)}), None, None))
        self._later(now)

    def _later(self, now: bool) -> None:
        if now:
            self.flush()
        elif self.pending and self._timer is None:
            # Not left queued past flush_every when no further node ends to write it.
            try:
                self._timer = asyncio.get_running_loop().call_later(self.flush_every, self._timed_flush)
            except RuntimeError:
                pass

    def _timed_flush(self) -> None:
        self._timer = None
        try:
            self.flush()
        except LedgerError:
            pass  # said by the next commit or the close, on the run's own path

    def close(self) -> None:
        """Write what is queued, wait for the writer, close the file and let go of the folder's lock."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            if self.spending is not None:  # the calls since the last commit count too
                self.queue(_SPENT, (json.dumps(dict(self.spending())),))
            self.flush()
        finally:
            if self._writer is not None:
                self._writer.shutdown(wait=True)
            if self.db is not None:  # None: the writer could not make the file (the error is raised below)
                self.db.close()
            let_go(self.lock)
        if self._error is not None:
            raise self._error

    # -- working memory -------------------------------------------------------------------------------------

    def _memory_of(self, node: str) -> str | None:
        """The node's working-memory files (history and stored results) as ``{relative path: text}`` JSON."""
        base = self.folder / "memory"
        files: dict[str, str] = {}
        history = base / f"{node}.jsonl"
        if history.is_file():
            files[f"{node}.jsonl"] = history.read_text(encoding="utf-8")
        stored = base / node
        if stored.is_dir():
            for path in sorted(stored.iterdir()):
                if path.is_file():
                    files[f"{node}/{path.name}"] = path.read_text(encoding="utf-8")
        return json.dumps(files, ensure_ascii=False) if files else None

    def tidy_memory(self) -> None:
        """Before a resume: put back the working memory of finished nodes the folder lost, and remove what nodes
        that did not finish left (they run anew, and their history would otherwise go on from a broken turn)."""
        base = self.folder / "memory"
        if base.is_dir():
            for entry in list(base.iterdir()):
                node = entry.name[: -len(".jsonl")] if entry.name.endswith(".jsonl") else entry.name
                if node in self._done:
                    continue
                if entry.is_dir():
                    import shutil  # noqa: PLC0415 - a plain run never needs it (tests/test_cold_start.py)

                    shutil.rmtree(entry, ignore_errors=True)
                elif entry.is_file():
                    entry.unlink(missing_ok=True)
        for (memory,) in self.db.execute("SELECT memory FROM nodes WHERE memory IS NOT NULL"):
            for relative, text in json.loads(memory).items():
                path = base / relative
                if not path.is_file() or path.read_text(encoding="utf-8") != text:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    atomic_write_text(path, text)


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


# -- values -------------------------------------------------------------------------------------------------


def encode(value: Any) -> Any:
    """``value`` as JSON data; special values as one-key mappings whose key starts with ``$``."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Output):
        usage = value.usage
        return {
            "$output": [
                value.content,
                value.name,
                value.node,
                usage.prompt_tokens,
                usage.completion_tokens,
                encode(value.data),
            ]
        }
    if isinstance(value, Iterations):
        return {"$iterations": [encode(v) for v in value], "last": encode(value.last)}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise Unstorable
        return {"$map": {k: encode(v) for k, v in value.items()}}
    if isinstance(value, tuple):
        return {"$tuple": [encode(v) for v in value]}
    if isinstance(value, Routed):
        return {"$routed": [value.case, encode(value.output)]}
    if value is SKIPPED:
        return {"$skipped": True}
    if isinstance(value, Child):  # a sub-workflow's output: its last stage's and every stage's (issue 22)
        return {"$child": [encode(value.output), {k: encode(v) for k, v in value.stages.items()}]}
    raise Unstorable


def decode(data: Any) -> Any:
    """The value :func:`encode` stored."""
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        return data
    if "$output" in data:
        content, name, node, prompt, completion, value = data["$output"]
        return Output(content, name, node, Usage(prompt, completion), None, decode(value))
    if "$map" in data:
        return {k: decode(v) for k, v in data["$map"].items()}
    if "$iterations" in data:
        iterations = Iterations()
        iterations.extend(decode(v) for v in data["$iterations"])
        iterations.last = decode(data["last"])
        return iterations
    if "$tuple" in data:
        return tuple(decode(v) for v in data["$tuple"])
    if "$routed" in data:
        case, output = data["$routed"]
        return Routed(case, decode(output))
    if "$skipped" in data:
        return SKIPPED
    if "$child" in data:
        output, stages = data["$child"]
        return Child(decode(output), {k: decode(v) for k, v in stages.items()})
    raise LedgerError(f"a value the checkpoint cannot read: {json.dumps(data)[:80]}")


# -- what the run was -----------------------------------------------------------------------------------------


def stage_hashes(workflow_file: str, _within: frozenset[str] = frozenset()) -> dict[str, str]:
    """Each top-level stage's id -> the SHA-256 of its definition: its YAML with the definitions of the agents it
    calls (at any depth), their models and tools, so editing an agent's prompt changes the stages that use it, and
    the stage hashes of the sub-workflows it runs (``workflow: child.yaml``, at any depth), so editing a child
    changes the stages that include it. Line positions do not count: moving a stage or adding a comment changes
    nothing."""
    import os  # noqa: PLC0415

    import yaml  # noqa: PLC0415 - loaded by the workflow's loader already

    with open(workflow_file, encoding="utf-8") as f:
        data = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader
    if not isinstance(data, Mapping):
        return {}
    folder = os.path.dirname(workflow_file)
    within = _within | {os.path.abspath(workflow_file)}
    agents = data.get("agents") or {}
    models = data.get("models") or {}
    tools = data.get("tools") or {}
    out: dict[str, str] = {}
    for stage in data.get("stages") or ():
        used: dict[str, Any] = {}
        for name in sorted(_named(stage, "agent")):
            agent = agents.get(name)
            used[f"agent {name}"] = agent
            if isinstance(agent, Mapping):
                model = agent.get("model")
                if isinstance(model, str):
                    used[f"model {model}"] = models.get(model)
                for tool in agent.get("tools") or ():
                    if isinstance(tool, str):
                        used[f"tool {tool}"] = tools.get(tool)
        for ref in sorted(_named(stage, "workflow")):  # as the loader resolves them: beside this file
            child = os.path.normpath(os.path.join(folder, ref))
            if os.path.abspath(child) in within:
                used[f"workflow {ref}"] = "a cycle"  # validate refuses it (include-cycle); never followed here
                continue
            try:
                used[f"workflow {ref}"] = stage_hashes(child, within)
            except (OSError, yaml.YAMLError):
                used[f"workflow {ref}"] = None  # unreadable now: the run says so, located, when it loads it
        text = json.dumps(_canonical({"stage": stage, "uses": used}), sort_keys=True, default=str)
        out[str(stage.get("id"))] = hashlib.sha256(text.encode()).hexdigest()
    return out


def _canonical(value: Any) -> Any:
    """YAML data with every mapping key as text tagged by its type (a switch's ``true:`` case beside ``"x":``)."""
    if isinstance(value, Mapping):
        return {f"{type(k).__name__}:{k}": _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def _named(value: Any, key: str) -> set[str]:
    """The names a stage gives under ``key`` at any depth: ``agent`` (the agents it calls), ``workflow`` (the child
    workflow files it runs, in a fan-out's body or deeper)."""
    names: set[str] = set()
    if isinstance(value, Mapping):
        for k, item in value.items():
            if k == key and isinstance(item, str):
                names.add(item)
            else:
                names |= _named(item, key)
    elif isinstance(value, list):
        for item in value:
            names |= _named(item, key)
    return names


def changed_stages(before: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
    """What an edit did to the stages, one phrase each, in the workflow's order: ``'b' changed``, ``'c' added``,
    ``'d' removed``."""
    out = []
    for sid, digest in now.items():
        if sid not in before:
            out.append(f"'{sid}' added")
        elif before[sid] != digest:
            out.append(f"'{sid}' changed")
    out.extend(f"'{sid}' removed" for sid in before if sid not in now)
    return out


def is_checkpoint_folder(folder: str | os.PathLike[str]) -> bool:
    """Does ``folder`` hold a single run's checkpoint (rather than a dataset batch's ledger)?"""
    return (Path(folder) / CHECKPOINT_NAME).is_file()
