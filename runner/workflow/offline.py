"""``runner run --offline``: the same workflow with every remote model replaced by a scripted one.

It runs without network or key, so CI can dry-run a workflow's templates and data flow: every stage runs,
every template renders with real values, python stages and tools run; only model replies are canned.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any

from runner.config.scripted import ScriptedConfig
from runner.config.source import TemplateSrc
from runner.stages import BY_RECORD
from runner.stages.workflow import Include
from runner.workflow.records import EmbeddingSpec, ModelSpec, Workflow

OFFLINE_REPLY = "[offline reply of {{ agent.name }} to: {{ input | truncate(80) }}]"


def _offline_model(spec: ModelSpec) -> ScriptedConfig:
    # reply_given=False: a structured output is answered with a value built from its schema (issue 16); the
    # model's pricing stays, so a dry run's report estimates what the simulated tokens would cost
    pricing = spec.config.pricing if spec.config is not None else None
    return ScriptedConfig(TemplateSrc(OFFLINE_REPLY, spec.loc), reply_given=False, pricing=pricing)


def offline_workflow(wf: Workflow, done: dict[str, Workflow] | None = None) -> Workflow:
    """``wf`` with its remote models and embedders replaced, and those of every child workflow it runs (each
    child once, by file: ``done``)."""
    done = {} if done is None else done
    models = {
        name: spec if spec.provider == "scripted" else ModelSpec(name, "scripted", _offline_model(spec), spec.loc)
        for name, spec in wf.models.items()
    }
    embeddings = {
        name: spec
        if spec.provider == "hashing"
        else EmbeddingSpec(name, "hashing", dataclasses.replace(spec.config, provider="hashing"), None, spec.loc)
        for name, spec in wf.embeddings.items()
    }
    stages = _children_offline(wf.stages, done)
    return dataclasses.replace(
        wf, models=MappingProxyType(models), embeddings=MappingProxyType(embeddings), stages=stages
    )


def _children_offline(value: Any, done: dict[str, Workflow]) -> Any:
    """``value`` (stage records, nested in tuples) with each include's child offline; unchanged parts kept."""
    if isinstance(value, tuple):
        items = tuple(_children_offline(v, done) for v in value)
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    if isinstance(value, Include):
        if value.child is None:
            return value
        child = done.get(value.child.file)
        if child is None:
            child = done[value.child.file] = offline_workflow(value.child, done)
        return dataclasses.replace(value, child=child)
    if type(value) in BY_RECORD:  # a stage: its nested stages and includes
        changes = {}
        for f in dataclasses.fields(value):
            old = getattr(value, f.name)
            new = _children_offline(old, done)
            if new is not old:
                changes[f.name] = new
        return dataclasses.replace(value, **changes) if changes else value
    return value
