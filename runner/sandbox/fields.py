"""The data fields templates may read directly: a registry with no Jinja in it, so that a workflow whose
templates are all constant text (and ``runner validate`` before it needs Jinja) runs without importing
jinja2, about 25 ms of a one-call run."""

from __future__ import annotations

FAST_ATTRS: dict[type, frozenset[str]] = {}
"""Types whose listed attributes templates may read directly (plain data fields of runner's own records, safe in
the sandbox): the fast template path reads them without Jinja, and the weigher counts them."""
