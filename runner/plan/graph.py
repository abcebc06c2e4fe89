"""``runner graph``: the compiled plan as an indented tree or a Mermaid flowchart, before any token is spent.

Every stage kind draws itself (``runner/stages/``: its label, its nested parts, its Mermaid shape), so a new
kind cannot be drawn by another kind's code (a python stage once reached the agent's and crashed: issue 14).
A stage's policies follow its label: the ``when:`` condition that may skip it, its ``timeout``, its retries.
"""

from __future__ import annotations

from collections.abc import Callable

from runner.plan.compile import Plan, StagePlan
from runner.stages import KINDS, Stage
from runner.stages.base import one_line

# The label of each stage kind, by its record type: `Stage` is the union of these keys (a test checks it).
LABELS: dict[type[Stage], Callable[[StagePlan], str]] = {kind.record: kind.graph_label for kind in KINDS.values()}


def stage_label(sp: StagePlan) -> str:
    """What the stage runs, then its policies: ``agent a (model m, scripted); when {{ x }}; timeout 5 s``."""
    return "; ".join([sp.kind.graph_label(sp), *policies(sp)])


def policies(sp: StagePlan) -> list[str]:
    policy = sp.stage.policy
    out = []
    if policy.when is not None:
        out.append(f"when {one_line(policy.when.text)}")
    if policy.timeout is not None:
        out.append(f"timeout {policy.timeout:g} s")
    if policy.retry.max_attempts > 1:
        out.append(f"up to {policy.retry.max_attempts} attempts")
    return out


def _header(plan: Plan) -> str:
    wf = plan.workflow
    count = f"{len(plan.stages)} stage{'' if len(plan.stages) == 1 else 's'}"
    timeout = f", timeout {wf.timeout:g} s" if wf.timeout is not None else ""
    return f"{wf.name}: {count}{timeout}"


def render_text(plan: Plan) -> str:
    lines = [_header(plan)]

    def visit(stages: tuple[StagePlan, ...], indent: str) -> None:
        for i, sp in enumerate(stages, 1):
            lines.append(f"{indent}{i}. {sp.id}: {stage_label(sp)}")
            for part in sp.kind.graph_parts(sp):
                if part.plans:
                    lines.append(f"{indent}   {part.heading}:")
                    visit(part.plans, indent + "     ")
                else:
                    lines.append(f"{indent}   {part.heading}: {part.leaf}")

    visit(plan.stages, "  ")
    return "\n".join(lines)


def _esc(label: str) -> str:
    """Mermaid entity codes for characters that would end or confuse a quoted label (``#`` first: it starts
    the codes themselves; ``<``/``>`` would read as HTML)."""
    for char, code in (("#", "#35;"), ('"', "#quot;"), ("{", "#123;"), ("}", "#125;"), ("<", "#lt;"), (">", "#gt;")):
        label = label.replace(char, code)
    return label


def render_mermaid(plan: Plan) -> str:
    lines = ["flowchart TD", f'  start(["{_esc(_header(plan))}"])']
    used: set[str] = {"start"}

    def mid(node: str) -> str:
        """A Mermaid id for ``node``: readable, and unique where two names map to the same characters."""
        base = "n_" + "".join(c if c.isalnum() else "_" for c in node)
        found, n = base, 1
        while found in used:
            n += 1
            found = f"{base}_{n}"
        used.add(found)
        return found

    def chain(stages: tuple[StagePlan, ...], entry: list[str], prefix: str) -> list[str]:
        """Draw stages in order from ``entry`` node ids; return the exit node ids."""
        current = entry
        for sp in stages:
            nid = mid(prefix + sp.id)
            opening, closing = sp.kind.mermaid_shape
            lines.append(f'  {nid}{opening}"{_esc(f"{sp.id}: {stage_label(sp)}")}"{closing}')
            current = _connect(current, nid)
            parts = sp.kind.graph_parts(sp)
            if not parts:
                continue
            exits: list[str] = []
            for part in parts:
                if part.plans:
                    ends = chain(part.plans, [nid], f"{prefix}{sp.id}_{part.key}_")
                    # A part that runs again (a loop's body) is drawn as the cycle it is, back to its stage.
                    lines.extend(f"  {end} -.->|{_esc(part.repeats)}| {nid}" for end in ends if part.repeats)
                    exits += ends
                else:
                    leaf = mid(f"{prefix}{sp.id}_{part.key}")
                    lines.append(f'  {leaf}[["{_esc(part.mermaid_leaf or part.leaf)}"]]')
                    lines.append(f"  {nid} --> {leaf}")
                    exits.append(leaf)
            join = mid(f"{prefix}{sp.id}_join")
            lines.append(f"  {join}(( ))")
            current = _connect(exits, join)
        return current

    def _connect(sources: list[str], target: str) -> list[str]:
        for s in sources:
            lines.append(f"  {s} --> {target}")
        return [target]

    chain(plan.stages, ["start"], "")
    return "\n".join(lines)


RENDERERS: dict[str, Callable[[Plan], str]] = {"text": render_text, "mermaid": render_mermaid}
