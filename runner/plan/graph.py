"""``runner graph``: the compiled plan as an indented tree or a Mermaid flowchart, before any token is spent.

Every stage kind has its label in :data:`LABELS`, keyed by the stage's record type, so a new kind cannot be
drawn by another kind's code (a python stage once reached the agent's and crashed: issue 14). A stage's
policies follow its label: the ``when:`` condition that may skip it, its ``timeout``, its retries.
"""

from __future__ import annotations

from collections.abc import Callable

from runner.plan.compile import CompiledTemplate, Plan, StagePlan
from runner.workflow.records import AgentStage, FanoutStage, PythonStage, Stage


def _agent_text(sp: StagePlan) -> str:
    if sp.agent is None:  # the plan of an agent stage always has its agent
        raise AssertionError(f"stage {sp.id!r} has no agent plan")
    spec = sp.agent.spec
    tools = f"; tools {', '.join(spec.tools)}" if spec.tools else ""
    return f"agent {spec.name} (model {sp.agent.model.name}, {sp.agent.model.provider}{tools})"


def _agent_label(sp: StagePlan) -> str:
    return _agent_text(sp)


def _python_label(sp: StagePlan) -> str:
    stage = sp.stage
    assert isinstance(stage, PythonStage)
    return f"python {stage.function}"


def _fanout_label(sp: StagePlan) -> str:
    stage = sp.stage
    assert isinstance(stage, FanoutStage)
    bound = f", max {stage.max_concurrency} at once" if stage.max_concurrency else ""
    errors = ", on error collect" if stage.on_error == "collect" else ""
    if sp.branches:
        return f"fanout over {len(sp.branches)} branches{bound}{errors}"
    source = (
        _one_line(sp.for_each.template.src.text)
        if isinstance(sp.for_each, CompiledTemplate)
        else f"{len(sp.for_each or ())} items"
    )
    return f"fanout for each {stage.as_name} in {source}{bound}{errors}"


# The label of each stage kind, by its record type: `Stage` is the union of these keys (a test checks it).
LABELS: dict[type[Stage], Callable[[StagePlan], str]] = {
    AgentStage: _agent_label,
    PythonStage: _python_label,
    FanoutStage: _fanout_label,
}


def stage_label(sp: StagePlan) -> str:
    """What the stage runs, then its policies: ``agent a (model m, scripted); when {{ x }}; timeout 5 s``."""
    label = LABELS.get(type(sp.stage))
    if label is None:
        raise AssertionError(f"no graph label for stage kind {type(sp.stage).__name__}")
    return "; ".join([label(sp), *policies(sp)])


def policies(sp: StagePlan) -> list[str]:
    policy = sp.stage.policy
    out = []
    if policy.when is not None:
        out.append(f"when {_one_line(policy.when.text)}")
    if policy.timeout is not None:
        out.append(f"timeout {policy.timeout:g} s")
    if policy.retry.max_attempts > 1:
        out.append(f"up to {policy.retry.max_attempts} attempts")
    return out


def _one_line(text: str) -> str:
    """A template on one line: a block scalar's line breaks would break the tree and Mermaid's labels."""
    return " ".join(text.split())


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
            if not sp.is_fanout:
                continue
            if sp.branches:
                for b, branch in enumerate(sp.branches):
                    lines.append(f"{indent}   branch {b}:")
                    visit(branch, indent + "     ")
            elif sp.agent is not None:
                lines.append(f"{indent}   each: {_agent_text(sp)}")
            else:
                lines.append(f"{indent}   each:")
                visit(sp.stages, indent + "     ")

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
            text = _esc(f"{sp.id}: {stage_label(sp)}")
            if isinstance(sp.stage, PythonStage):
                lines.append(f'  {nid}[/"{text}"/]')
            elif not sp.is_fanout:
                lines.append(f'  {nid}["{text}"]')
            else:
                lines.append(f'  {nid}{{{{"{text}"}}}}')
            current = _connect(current, nid)
            if not sp.is_fanout:
                continue
            exits: list[str] = []
            if sp.branches:
                for b, branch in enumerate(sp.branches):
                    exits += chain(branch, [nid], f"{prefix}{sp.id}_{b}_")
            elif sp.agent is not None:
                each = mid(f"{prefix}{sp.id}_each")
                stage = sp.stage
                assert isinstance(stage, FanoutStage)
                lines.append(f'  {each}[["{_esc(f"each {stage.as_name}: {_agent_text(sp)}")}"]]')
                lines.append(f"  {nid} --> {each}")
                exits = [each]
            else:
                exits = chain(sp.stages, [nid], f"{prefix}{sp.id}_each_")
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
