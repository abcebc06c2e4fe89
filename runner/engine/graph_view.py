"""``runner graph``: the compiled plan as an indented tree or a Mermaid flowchart, before any token is spent."""

from __future__ import annotations

from collections.abc import Callable

from runner.engine.plan import CompiledTemplate, Plan, StagePlan


def _fanout_label(sp: StagePlan) -> str:
    stage = sp.stage
    limit = getattr(stage, "max_concurrency", None)
    bound = f", max {limit} at once" if limit else ""
    if sp.branches:
        return f"fanout over {len(sp.branches)} branches{bound}"
    source = (
        sp.for_each.template.src.text.strip()
        if isinstance(sp.for_each, CompiledTemplate)
        else (f"{len(sp.for_each or ())} items")
    )
    return f"fanout for each {getattr(stage, 'as_name', 'item')} in {source}{bound}"


def _agent_label(sp: StagePlan) -> str:
    assert sp.agent is not None
    return f"agent {sp.agent.spec.name} (model {sp.agent.model.name}, {sp.agent.model.provider})"


def render_text(plan: Plan) -> str:
    wf = plan.workflow
    lines = [f"{wf.name}: {len(plan.stages)} stages"]

    def visit(stages: tuple[StagePlan, ...], indent: str) -> None:
        for i, sp in enumerate(stages, 1):
            if not sp.is_fanout:
                lines.append(f"{indent}{i}. {sp.id}: {_agent_label(sp)}")
                continue
            lines.append(f"{indent}{i}. {sp.id}: {_fanout_label(sp)}")
            if sp.branches:
                for b, branch in enumerate(sp.branches):
                    lines.append(f"{indent}   branch {b}:")
                    visit(branch, indent + "     ")
            elif sp.agent is not None:
                lines.append(f"{indent}   each: {_agent_label(sp)}")
            else:
                lines.append(f"{indent}   each:")
                visit(sp.stages, indent + "     ")

    visit(plan.stages, "  ")
    return "\n".join(lines)


def _mid(node: str) -> str:
    return "n_" + "".join(c if c.isalnum() else "_" for c in node)


def _esc(label: str) -> str:
    """Mermaid entity codes for characters that would end or confuse a quoted label."""
    return label.replace('"', "#quot;").replace("{", "#123;").replace("}", "#125;")


def render_mermaid(plan: Plan) -> str:
    lines = ["flowchart TD", f'  start(["{_esc(plan.workflow.name)}"])']

    def chain(stages: tuple[StagePlan, ...], entry: list[str], prefix: str) -> list[str]:
        """Draw stages in order from ``entry`` node ids; return the exit node ids."""
        current = entry
        for sp in stages:
            nid = _mid(prefix + sp.id)
            if not sp.is_fanout:
                lines.append(f'  {nid}["{_esc(sp.id + ": " + _agent_label(sp))}"]')
                current = _connect(current, nid)
                continue
            lines.append(f'  {nid}{{{{"{_esc(sp.id + ": " + _fanout_label(sp))}"}}}}')
            current = _connect(current, nid)
            join = nid + "_join"
            exits: list[str] = []
            if sp.branches:
                for b, branch in enumerate(sp.branches):
                    exits += chain(branch, [nid], f"{prefix}{sp.id}_{b}_")
            elif sp.agent is not None:
                each = nid + "_each"
                as_name = getattr(sp.stage, "as_name", "item")
                lines.append(f'  {each}[["{_esc(f"each {as_name}: {_agent_label(sp)}")}"]]')
                lines.append(f"  {nid} --> {each}")
                exits = [each]
            else:
                exits = chain(sp.stages, [nid], f"{prefix}{sp.id}_each_")
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
