"""Python assertions of triage-eval.yaml: runner calls them with the arguments they name among output, row,
stages and inputs."""

from __future__ import annotations

from typing import Any


def polite(output: str, row: dict[str, Any]) -> dict[str, Any]:
    """A reply passes when it thanks the customer; the score says how much of the subject it repeats."""
    words = row["subject"].lower().split()
    score = sum(word in output.lower() for word in words) / len(words)
    thanked = "thank" in output.lower()
    return {"pass": thanked, "score": score, "reason": "thanks the customer" if thanked else "no thanks"}
