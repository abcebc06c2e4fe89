"""Reading the nodes of a report document: a node's status as a reader says it, the statuses of many in a few
words, the agent calls made, and fan-out branches gathered under their stage. Shared by the terminal summary,
the Markdown summary and the comparison of two runs."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any


def node_status(node: Mapping[str, Any]) -> str:
    """A node's status as a reader says it: ``timed out`` for a node that its stage's ``timeout`` stopped."""
    if node.get("status") == "failed" and node.get("timeout_s") is not None:
        return "timed out"
    if node.get("from_checkpoint"):
        return "restored"  # a resumed run took its output from the checkpoint (issue 23)
    return str(node.get("status", ""))


_STATUS_ORDER = ("ok", "restored", "failed", "timed out", "cancelled", "unfinished", "not started", "skipped")


def count_statuses(nodes: Sequence[Mapping[str, Any]]) -> str:
    """The statuses of many nodes (a fan-out's branches) in a few words: ``3 ok, 1 failed, 28 not started``."""
    counts: dict[str, int] = {}
    for node in nodes:
        status = node_status(node)
        if status in ("cancelled", "unfinished") and node.get("start_s") is None:
            status = "not started"  # the run or a failing sibling stopped it while it waited for a slot
        counts[status] = counts.get(status, 0) + 1
    order = {s: i for i, s in enumerate(_STATUS_ORDER)}
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda kv: (order.get(kv[0], 99), kv[0])))


def agent_calls(report: Mapping[str, Any]) -> tuple[int, int]:
    """The agent calls made (agent nodes that started) and those that never started: an interrupted or failed
    run also has agent nodes still waiting for a fan-out slot, which made no request."""
    agents = [n for n in report["nodes"] if n.get("kind") == "agent"]
    if not agents:  # a report recorded without nodes: only the total is known
        return int(report["totals"]["agents"]), 0
    restored = sum(1 for n in agents if n.get("from_checkpoint"))  # no call: from a resumed run's checkpoint
    made = sum(1 for n in agents if n.get("start_s") is not None) - restored
    skipped = sum(1 for n in agents if n.get("start_s") is None and n.get("status") == "skipped")  # by `when:`
    return made, len(agents) - made - skipped - restored


_BRANCH_INDEX = re.compile(r"\[\d+(?:\.\d+)?\]")


def stage_key(node_id: str) -> str:
    """A node's stage with branch indices folded: ``notes[3]`` -> ``notes[*]``, ``per[1].first`` ->
    ``per[*].first``, ``digest.tool[0.1]`` -> ``digest.tool[*]``."""
    return _BRANCH_INDEX.sub("[*]", node_id)


def group_nodes(nodes: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any] | tuple[str, list[Mapping[str, Any]]]]:
    """Nodes in order, those of fan-out branches gathered under their stage key where the first of them stood."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    order: list[Mapping[str, Any] | tuple[str, list[Mapping[str, Any]]]] = []
    for span in nodes:
        key = stage_key(span["id"])
        if key == span["id"]:
            order.append(span)
            continue
        if key not in groups:
            groups[key] = []
            order.append((key, groups[key]))
        groups[key].append(span)
    return order


def outcomes(report: Mapping[str, Any], *, limit: int = 5) -> list[str]:
    """What ended each loop and which case each switch ran, in a sentence each (a loop stopped by its
    ``max_iterations`` before its ``until`` held is a warning, with the setting to change), at most ``limit``
    of them and a line saying how many more the JSON report holds."""
    lines: list[str] = []
    for node in report["nodes"]:
        kind, ident = node.get("kind"), node["id"]
        if kind == "loop":
            n = node.get("iterations")
            done = "" if n is None else f" after {n} iteration{'' if n == 1 else 's'}"
            if node.get("warning"):
                lines.append(f"warning: {node['warning']}")
            elif node.get("ended_by") == "until":
                lines.append(f"loop {ident}: its until held{done}")
            elif node.get("ended_by") == "max_iterations":
                lines.append(f"loop {ident}: ran its max_iterations{done}")
            else:
                lines.append(f"loop {ident}: {node_status(node)}{done}")
        elif kind == "switch" and node.get("status") == "ok":
            case, reason = node.get("case"), node.get("reason")
            if case is not None and case != "default":
                lines.append(f"switch {ident}: case {case!r} ran")
            else:  # the reason says what `on` gave, which no case has
                lines.append(f"switch {ident}: {reason or ('the default ran' if case else 'no case ran')}")
    if len(lines) > limit:
        return [*lines[:limit], f"... {len(lines) - limit} more loops and switches in the JSON report"]
    return lines
