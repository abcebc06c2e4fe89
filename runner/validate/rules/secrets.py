"""Literal secrets in a workflow file: API keys, tokens and passwords belong in the environment.

Scanned on the YAML document itself, before and whatever the schema says, so a key pasted under an
unknown key or into ``vars`` is caught too. The message never repeats the secret.
"""

from __future__ import annotations

import re
from typing import Any

from runner.diagnostics import Diagnostic
from runner.validate.rules.common import diag
from runner.validate.rules.source import Where
from runner.workflow.document import Document, Path

# Keys whose value is a credential when written literally (compared lower-case, '-' read as '_').
SECRET_KEYS = frozenset(
    {
        "api_key",
        "apikey",
        "api_token",
        "access_token",
        "auth_token",
        "bearer_token",
        "token",
        "secret",
        "secret_key",
        "client_secret",
        "password",
        "passwd",
        "authorization",
        "private_key",
    }
)
PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("an API key ('sk-...')", re.compile(r"\bsk-[A-Za-z0-9_-]{16,}")),
    ("a bearer token", re.compile(r"\bBearer\s+[A-Za-z0-9._~+/-]{12,}=*")),
    ("an AWS access key id", re.compile(r"\bAKIA[0-9A-Z]{16}\b")),
    ("a GitHub token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}")),
    ("a Slack token", re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}")),
    ("a Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}")),
    ("a private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
)
HINT = (
    "keep secrets out of workflow files: export the key in an environment variable and name the variable "
    "on the model, e.g. 'api_key_env: OPENAI_API_KEY'"
)


def secret_diagnostics(doc: Document) -> list[Diagnostic]:
    from runner.workflow.schema import describe_path  # noqa: PLC0415

    out: list[Diagnostic] = []
    lines: list[str] | None = None

    def visit(node: Any, path: Path) -> None:
        nonlocal lines
        if isinstance(node, dict):
            for key, value in node.items():
                child = (*path, key)
                if path == ("inputs",) and _secret_name(key) and isinstance(value, dict):
                    default = value.get("default")
                    if isinstance(default, str) and default.strip() and (*child, "default") in doc.values:
                        span = doc.values[(*child, "default")]
                        out.append(
                            diag(
                                doc.file,
                                Where(span.line, span.column, span.end_line, span.end_column),
                                "literal-secret",
                                f"the default of input '{key}' is a literal secret written in the file",
                                "leave the default out and pass it at run time: --set " + key + '="$SECRET"',
                            )
                        )
                        continue
                if _secret_name(key) and isinstance(value, str) and value.strip() and "{{" not in value:
                    span = doc.values[child]
                    out.append(
                        diag(
                            doc.file,
                            Where(span.line, span.column, span.end_line, span.end_column),
                            "literal-secret",
                            f"{describe_path(child, doc.data)}: a literal secret is written in the file",
                            HINT,
                        )
                    )
                    continue
                visit(value, child)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                visit(value, (*path, i))
        elif isinstance(node, str):
            for what, pattern in PATTERNS:
                match = pattern.search(node)
                if match is None:
                    continue
                if lines is None:
                    lines = doc.text.splitlines()
                out.append(
                    diag(
                        doc.file,
                        _locate(lines, doc.values[path], match.group()),
                        "literal-secret",
                        f"{describe_path(path, doc.data)}: {what} is written in the file",
                        HINT,
                    )
                )
                break

    visit(doc.data, ())
    return out


def _secret_name(key: object) -> bool:
    return str(key).lower().replace("-", "_") in SECRET_KEYS


def _locate(lines: list[str], span: Any, text: str) -> Where:
    """The secret's own span when it sits on one line of the value as written; else the whole value."""
    for line in range(span.line, min(span.end_line, len(lines)) + 1):
        source = lines[line - 1]
        start = source.find(text, span.column - 1 if line == span.line else 0)
        if start >= 0:
            return Where(line, start + 1, line, start + 1 + len(text))
    return Where(span.line, span.column, span.end_line, span.end_column)
