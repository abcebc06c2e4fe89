"""A request's canonical key, and the diff that says how a request differs from the closest recorded one.

The key is the whole JSON body the provider sends (model, messages, tools, every parameter: ``temperature``,
``response_format``, ``stream`` and whatever a later feature adds), with its keys sorted, minus the fields in
:data:`VOLATILE`, plus the provider and the path relative to the base URL. Headers are never part of it (they hold
the key and the proxy's credentials), nor is the host: a cassette recorded against one deployment replays
against a configuration that names another. Taking the body whole rather than a list of the parameters that
"change the answer" means a new request field changes the key without this module knowing of it.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass
from typing import Any

VOLATILE = frozenset({"user", "metadata", "store"})
"""Body fields that identify or file a request without changing its answer: left out of the key."""


@dataclass(frozen=True, slots=True)
class RequestKey:
    """``request``: what is recorded (``provider``, ``path``, ``body``); ``digest``: the SHA-256 of its
    canonical JSON, hex."""

    request: dict[str, Any]
    digest: str


def request_key(provider: str, path: str, content: bytes) -> RequestKey:
    """The key of a request to ``path`` (relative to the base URL) whose body is ``content``."""
    body: Any
    try:
        body = json.loads(content) if content else None
    except ValueError:
        body = content.decode("utf-8", "surrogateescape")  # not JSON (never sent by runner): the text itself
    if isinstance(body, dict) and not VOLATILE.isdisjoint(body):
        body = {k: v for k, v in body.items() if k not in VOLATILE}
    request = {"provider": provider, "path": path, "body": body}
    return RequestKey(request, digest_of(request))


def digest_of(request: dict[str, Any]) -> str:
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def _value(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def describe(request: dict[str, Any]) -> list[str]:
    """A request as lines a person reads: one per parameter, each message's content line by line under a header
    naming it (``messages[0] (system):``), one line per tool and per embedded text. What the diff compares."""
    lines = [f"provider: {request.get('provider')}", f"path: {request.get('path')}"]
    body = request.get("body")
    if not isinstance(body, dict):
        return lines + [f"body: {line}" for line in str(body).split("\n")]
    for name in sorted(body):
        value = body[name]
        if name == "messages" and isinstance(value, list):
            for i, message in enumerate(value):
                if not isinstance(message, dict):
                    lines.append(f"messages[{i}]: {_value(message)}")
                    continue
                who = message.get("role", "?")
                lines.append(f"messages[{i}] ({who}):")
                content = message.get("content")
                if isinstance(content, str):
                    lines += ["  " + line for line in content.split("\n")]
                elif content is not None:
                    lines.append("  " + _value(content))
                lines += [f"  {k}: {_value(message[k])}" for k in sorted(message) if k not in ("role", "content")]
        elif name == "tools" and isinstance(value, list):
            for i, tool in enumerate(value):
                function = tool.get("function") if isinstance(tool, dict) else None
                label = function.get("name") if isinstance(function, dict) else None
                lines.append(f"tools[{i}]" + (f" ({label})" if label else "") + f": {_value(tool)}")
        elif name == "input" and isinstance(value, list):
            lines += [f"input[{i}]: {_value(text)}" for i, text in enumerate(value)]
        else:
            lines.append(f"{name}: {_value(value)}")
    return lines


def similarity(a: list[str], b: list[str]) -> float:
    """How alike two described requests are, 0 to 1 (difflib's ratio over their lines)."""
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def diff_lines(recorded: list[str], sent: list[str], *, context: int = 1, limit: int = 40) -> list[str]:
    """What changed from ``recorded`` to ``sent``: each group of changes under ``@@ <where> @@`` (the message or
    parameter it is in), lines prefixed ``-`` (recorded), ``+`` (this run) or a space (unchanged context); at
    most ``limit`` lines, then how many more."""
    out: list[str] = []
    matcher = difflib.SequenceMatcher(None, recorded, sent, autojunk=False)
    for group in matcher.get_grouped_opcodes(context):
        changed = next(op for op in group if op[0] != "equal")
        where = _section(sent, changed[3]) if changed[3] < changed[4] else _section(recorded, changed[1])
        out.append(f"@@ {where} @@")
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                out += [f"  {_cut(line)}" for line in recorded[i1:i2]]
                continue
            out += [f"- {line}" for line in recorded[i1:i2]]
            out += [f"+ {line}" for line in sent[j1:j2]]
    if len(out) > limit:
        out = out[:limit] + [f"... ({len(out) - limit} more lines)"]
    return out


def _cut(line: str, width: int = 100) -> str:
    """A context line, shortened: it only says where the change is."""
    return line if len(line) <= width else line[: width - 3] + "..."


def _section(lines: list[str], index: int) -> str:
    """The header of the part of a described request that line ``index`` belongs to (``messages[0] (system)``),
    or the line itself when it is a parameter of its own."""
    for line in reversed(lines[: index + 1]):
        if not line.startswith("  "):
            return line.removesuffix(":") if line.endswith(":") else line.partition(":")[0]
    return ""
