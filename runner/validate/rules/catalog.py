"""Every rule id ``runner validate`` can report, with its default severity, a summary and how to fix it.

The ids are stable: users look them up in docs/rules.md (a test keeps the two in step), SARIF lists
them as ``rules`` and GitHub code scanning tracks results by them.
"""

from __future__ import annotations

from dataclasses import dataclass

from runner.diagnostics import ERROR, WARNING


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule of ``runner validate``: its id, severity, summary and help."""

    id: str
    severity: str
    summary: str
    help: str


_RULES = (
    Rule("io", ERROR, "The file cannot be read.", "Check that the path is a readable file."),
    Rule(
        "file-too-large",
        ERROR,
        "The file is larger than a workflow can be.",
        "Workflow files are limited to 1 MiB; split the file or move data out of it.",
    ),
    Rule("encoding", ERROR, "The file is not valid UTF-8.", "Save the file as UTF-8."),
    Rule("empty-file", ERROR, "The file is empty.", "A workflow needs at least 'version', 'name' and 'stages'."),
    Rule("yaml-syntax", ERROR, "The file is not valid YAML.", "Fix the YAML at the position shown; indent with spaces"),
    Rule(
        "yaml-too-large",
        ERROR,
        "The YAML expands to too many values or nests too deeply.",
        "Remove the aliases that multiply content (an 'alias bomb'), or flatten the nesting.",
    ),
    Rule(
        "duplicate-key",
        ERROR,
        "A mapping has the same key twice.",
        "Remove one of the two: YAML keeps only the last, which silently drops the first.",
    ),
    Rule(
        "schema",
        ERROR,
        "The file does not match the workflow schema.",
        "Fix the key or value shown; `runner schema` prints the schema.",
    ),
    Rule(
        "invalid-setting",
        ERROR,
        "A setting is out of its range or conflicts with another setting.",
        "Fix the value shown, as the hint says; most ranges are in the schema, the rest compare two settings.",
    ),
    Rule(
        "literal-secret",
        ERROR,
        "A key, token or password is written in the file.",
        "Put the secret in an environment variable and name the variable with `api_key_env`.",
    ),
    Rule(
        "unknown-model",
        ERROR,
        "An agent uses a model that is not defined.",
        "Define the model under `models:` or fix the name.",
    ),
    Rule(
        "unknown-agent",
        ERROR,
        "A stage uses an agent that is not defined.",
        "Define the agent under `agents:` or fix the name.",
    ),
    Rule(
        "unknown-workflow",
        ERROR,
        "A stage or fan-out runs a workflow file that does not exist.",
        "Fix the path: it is relative to the file that names it.",
    ),
    Rule(
        "include-cycle",
        ERROR,
        "Workflows include each other in a cycle.",
        "A workflow cannot run itself, directly or through others: break the chain the message shows.",
    ),
    Rule(
        "workflow-inputs",
        ERROR,
        "The inputs given to a child workflow do not match its `inputs:`.",
        "Give each required input of the child, by its declared name, a value of its declared type.",
    ),
    Rule(
        "unknown-tool",
        ERROR,
        "An agent lists a tool that is not defined.",
        "Define the tool under `tools:` or fix the name.",
    ),
    Rule(
        "unknown-memory",
        ERROR,
        "An agent uses a memory that is not defined.",
        "Define the memory under `memory:` or fix the name.",
    ),
    Rule(
        "unknown-embedding",
        ERROR,
        "A long-term memory uses an embedding that is not defined.",
        "Define the embedding under `embeddings:` or fix the name.",
    ),
    Rule(
        "unknown-module",
        ERROR,
        "A python stage or tool names a module that cannot be found or has a syntax error.",
        "`runner run` imports the module from the workflow's folder, then Python's import path: create the "
        "file, fix the name, or install the package.",
    ),
    Rule(
        "unknown-function",
        ERROR,
        "A python stage or tool names a function that its module does not define.",
        "Define the function at the module's top level, or fix the name after the colon.",
    ),
    Rule(
        "unknown-mcp-server",
        ERROR,
        "An agent lists an MCP server that is not defined.",
        "Define the server under `mcp_servers:` or fix the name.",
    ),
    Rule(
        "mcp-command",
        ERROR,
        "A stdio MCP server's command (or its cwd) cannot be found.",
        "Install the server, or give the program's path relative to the server's `cwd`.",
    ),
    Rule(
        "duplicate-id",
        ERROR,
        "Two stages have the same id.",
        "Give every stage, nested ones included, its own id: `stages.<id>` must name one stage.",
    ),
    Rule(
        "template-syntax",
        ERROR,
        "A template is not valid Jinja2.",
        "Fix the Jinja2 syntax at the position shown.",
    ),
    Rule(
        "unknown-name",
        ERROR,
        "A template uses a name that does not exist where it renders.",
        "Templates see `inputs`, `stages`, `prev`, `vars` and `run`; system prompts and model templates also "
        "see `agent` and `input`.",
    ),
    Rule(
        "unknown-filter",
        ERROR,
        "A template uses a filter or test that does not exist.",
        "Use one of Jinja2's built-in filters and tests (`upper`, `join`, `default`, ...; `defined`, `none`, "
        "...); templates cannot define new ones.",
    ),
    Rule(
        "unsafe-attribute",
        ERROR,
        "A template reads an attribute that the sandbox refuses.",
        "Templates read data, never Python internals: attributes that start with `_` (`__class__`, "
        "`__globals__`), `mro`, frame and code objects, also inside `format` strings and `attr()`. Read a "
        "mapping's key that starts with `_` as `x['_key']`.",
    ),
    Rule(
        "template-limit",
        ERROR,
        "A template computes a value over the sandbox's limits.",
        "No value a template builds may pass 10,000,000 characters or items, no number 4,000 digits, no "
        "`range()` 100,000 items, and one render may take 500,000 steps: so that no template blocks the run. "
        "Compute large values in a python stage.",
    ),
    Rule(
        "unknown-input",
        ERROR,
        "A template reads an input that is not declared.",
        "Declare the input under `inputs:` or fix the name.",
    ),
    Rule(
        "unknown-stage",
        ERROR,
        "A template reads a stage that does not exist.",
        "Fix the stage id.",
    ),
    Rule(
        "stage-not-ready",
        ERROR,
        "A template reads a stage that has not finished when the template renders.",
        "Read only stages that run before, on every path: not later ones, not parallel branches, not stages "
        "inside another fan-out's per-item pipeline; a stage that `when` may skip, or of a switch's case, only "
        "behind a check such as `{% if stages.<id> %}`; inside a loop, the previous iteration's as "
        "`loop.previous.<id>`, behind `{% if loop.previous %}`.",
    ),
    Rule(
        "stage-maybe-skipped",
        WARNING,
        "A template reads, behind a check, a stage that may have no output.",
        "A stage whose `when` is false has no output (`stages.<id>` is None), nor have the stages of a skipped "
        "fan-out or of a failed branch under `on_error: collect`; the template checks it: make sure every read "
        "is behind the check.",
    ),
    Rule(
        "unknown-var",
        ERROR,
        "A template reads a `vars` name that is not set where it renders.",
        "Set it in the agent's or the stage's `vars`, or name a fan-out's items with `as:`; a system prompt "
        "needs it from every stage that calls the agent.",
    ),
    Rule(
        "no-attribute",
        ERROR,
        "A template reads an attribute that the value cannot have.",
        "`prev` is None in the first stage and text at the start of a branch or per-item pipeline; a fan-out's "
        "output is a list; an agent's output has content, data, error, name, node and usage.",
    ),
    Rule(
        "for-each-not-list",
        ERROR,
        "A fan-out's `for_each` does not give a list.",
        "Write a YAML list, or a single `{{ expression }}` giving a list, such as an input of type array.",
    ),
    Rule(
        "data-field",
        ERROR,
        "A template reads a field of a structured output that its schema does not have.",
        "Fix the field's name (the hint says the closest one), or add the field to the stage's output schema; a "
        "list is read item by item, with a `for` loop or an index.",
    ),
    Rule(
        "scripted-output",
        ERROR,
        "A scripted model cannot answer a structured output: its reply does not match the schema, or no value "
        "can be built from the schema.",
        "Write a reply that matches the schema, or leave `reply` out and give the schema `examples`.",
    ),
    Rule(
        "switch-case",
        ERROR,
        "A switch's case is not a value its `on` can give: the structured field `on` reads lists its values.",
        "Write the case as one of the values (the hint says the closest); a boolean renders as True or False.",
    ),
    Rule(
        "input-default-type",
        ERROR,
        "An input's default does not match its declared type.",
        "Change the default or the type (and `items`).",
    ),
    Rule(
        "set-value",
        ERROR,
        "A `--set` value given to `runner validate` does not fit the workflow's inputs.",
        "Name a declared input and give a value of its type, as `runner run` will parse it.",
    ),
    Rule(
        "unused-agent",
        WARNING,
        "An agent is defined but no stage uses it.",
        "Remove it, or use it in a stage.",
    ),
    Rule(
        "unused-model",
        WARNING,
        "A model is defined but no agent uses it.",
        "Remove it, or use it in an agent.",
    ),
    Rule(
        "unused-tool",
        WARNING,
        "A tool is defined but no agent lists it.",
        "Remove it, or list it in an agent's `tools`.",
    ),
    Rule(
        "data-optional",
        WARNING,
        "A template reads a field of a structured output that its schema does not require.",
        "Add the field to the schema's `required` list, or read it with a fallback: `| default('')`.",
    ),
    Rule(
        "switch-uncovered",
        WARNING,
        "A switch without `default` has no case for some values of the structured field its `on` reads.",
        "Add a case for each value, or a `default` that runs for the rest.",
    ),
    Rule(
        "concurrency-above-pool",
        WARNING,
        "A fan-out may run more calls at once than its model's connection pool holds.",
        "Lower the fan-out's `max_concurrency`, or raise the model's `pool.max_connections`: the extra calls only "
        "wait for a connection and may hit the pool timeout.",
    ),
    Rule(
        "memory-budget",
        WARNING,
        "A working memory's token budget is outside 20-50% of the context window of a model that uses it.",
        "Set `max_total_tokens` to 20-50% of the model's `context_window`: less wastes the window, more leaves "
        "too little room for the reply and the tool definitions.",
    ),
)

RULES: dict[str, Rule] = {rule.id: rule for rule in _RULES}
"""Rule id -> rule, in the order docs/rules.md lists them."""
