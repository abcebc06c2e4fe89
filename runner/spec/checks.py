"""Semantic checks on the records: what the schema cannot see. The rules live in :mod:`runner.spec.rules`."""

from __future__ import annotations

from runner.spec.rules import check_workflow
from runner.spec.rules.scope import walk_stages

__all__ = ["check_workflow", "walk_stages"]
