"""The judge of an ``llm-rubric`` assertion: a declared model asked for a structured verdict
``{pass, score, reason}`` through the structured-output machinery (``CallContext.output``: the openai provider
asks for the schema natively, the scripted one builds a value from it), with the same repair turn as an agent's
structured output. A verdict that is still invalid after the repairs is an *error* of the assertion, not a
failure: the judge, not the output, is at fault.
"""

from __future__ import annotations

import json
from typing import Any

from runner.config.output import DEFAULT_MAX_REPAIRS, OutputSpec
from runner.providers.base import CallContext, ChatProvider

VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["pass", "score", "reason"],
    "properties": {
        "pass": {"type": "boolean", "examples": [True]},
        "score": {"type": "number", "minimum": 0, "maximum": 1, "examples": [1]},
        "reason": {"type": "string", "examples": ["offline: the scripted judge passes every output"]},
    },
}
# Not strict: servers with a strict mode refuse some keywords (minimum, maximum, examples); the verdict is checked
# here against the whole schema anyway, and repaired as an agent's structured output is.
VERDICT = OutputSpec(VERDICT_SCHEMA, max_repairs=DEFAULT_MAX_REPAIRS, name="verdict")

SYSTEM = (
    "You grade an output against a rubric. Reply with only a JSON object: "
    '{"pass": true or false, "score": a number from 0 to 1, "reason": "one sentence"}.'
)


class JudgeError(Exception):
    """The judge gave no valid verdict after its repair turns (or its call failed): the assertion's error."""


async def judge(
    provider: ChatProvider, node: str, rubric: str, output: str, context: dict[str, Any]
) -> tuple[dict[str, Any], int]:
    """The verdict and the tokens the judge spent; :class:`JudgeError` when it gives none."""
    from runner.structured import StructuredError, check_reply, repair_prompt  # noqa: PLC0415

    prompt = f"Rubric:\n{rubric}\n\nOutput:\n{output}"
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
    call = CallContext(node_id=node, agent="judge", template_vars={**context, "input": prompt}, output=VERDICT)
    tokens = 0
    repairs = 0
    while True:
        result = await provider.chat(messages, call)
        tokens += result.usage.prompt_tokens + result.usage.completion_tokens
        try:
            value = check_reply(result.content, VERDICT_SCHEMA)
        except StructuredError as err:
            if repairs >= VERDICT.max_repairs:
                raise JudgeError(
                    f"the judge gave no valid verdict ({repairs} repair turn{'' if repairs == 1 else 's'}): "
                    f"{err.describe()}"
                ) from None
            repairs += 1
            messages.append({"role": "assistant", "content": result.content})
            messages.append({"role": "user", "content": repair_prompt(err, VERDICT_SCHEMA)})
            continue
        return value, tokens


def shown(value: Any) -> str:
    """An output as the judge reads it: text as it is, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)
