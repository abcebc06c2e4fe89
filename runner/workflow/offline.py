"""``runner run --offline``: the same workflow with every remote model replaced by a scripted one.

It runs without network or key, so CI can dry-run a workflow's templates and data flow: every stage runs,
every template renders with real values, python stages and tools run; only model replies are canned.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

from runner.config.scripted import ScriptedConfig
from runner.config.source import TemplateSrc
from runner.workflow.records import EmbeddingSpec, ModelSpec, Workflow

OFFLINE_REPLY = "[offline reply of {{ agent.name }} to: {{ input | truncate(80) }}]"


def _offline_model(spec: ModelSpec) -> ScriptedConfig:
    # reply_given=False: a structured output is answered with a value built from its schema (issue 16); the
    # model's pricing stays, so a dry run's report estimates what the simulated tokens would cost
    pricing = spec.config.pricing if spec.config is not None else None
    return ScriptedConfig(TemplateSrc(OFFLINE_REPLY, spec.loc), reply_given=False, pricing=pricing)


def offline_workflow(wf: Workflow) -> Workflow:
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
    return dataclasses.replace(wf, models=MappingProxyType(models), embeddings=MappingProxyType(embeddings))
