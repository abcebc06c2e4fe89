"""Checks that a Mermaid flowchart from `runner graph --format mermaid` is well formed (shared by the tests)."""

from __future__ import annotations

import re

_LABEL = r'"[^"\n<>{}]*"'  # quoted, without what would end or confuse it
_SHAPES = (
    rf"\(\[{_LABEL}\]\)|\[{_LABEL}\]|\[/{_LABEL}/\]|\{{\{{{_LABEL}\}}\}}|\{{{_LABEL}\}}|\[\[{_LABEL}\]\]|\(\( \)\)"
)
_MERMAID_NODE = re.compile(rf"^  (\w+)({_SHAPES})$")
_MERMAID_EDGE = re.compile(r"^  (\w+) --> (\w+)$")
_MERMAID_BACK_EDGE = re.compile(r"^  (\w+) -\.->\|[\w ]+\| (\w+)$")  # a loop's body back to the loop: a cycle


def assert_mermaid_well_formed(text: str) -> None:
    """A flowchart of known shapes: every node defined once with a quoted label free of characters that end
    or confuse it, every edge between defined nodes, and every node reachable from the start."""
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    defined: list[str] = []
    edges: list[tuple[str, str]] = []
    for line in lines[1:]:
        if (node := _MERMAID_NODE.match(line)) is not None:
            defined.append(node.group(1))
        elif (edge := _MERMAID_EDGE.match(line) or _MERMAID_BACK_EDGE.match(line)) is not None:
            edges.append((edge.group(1), edge.group(2)))
        else:
            raise AssertionError(f"not a Mermaid node or edge: {line!r}")
    assert len(defined) == len(set(defined)), "a node id used twice"
    assert {n for edge in edges for n in edge} <= set(defined)
    reached, frontier = {"start"}, ["start"]
    while frontier:
        here = frontier.pop()
        for a, b in edges:
            if a == here and b not in reached:
                reached.add(b)
                frontier.append(b)
    assert reached == set(defined)
