"""Every check of the settings parsers reaches the user as a located diagnostic, never a bare ValueError
(issue 14: ``max_tool_message_tokens`` above ``max_total_tokens`` was an exit 3 from ``runner validate``).

The checks the schema can state are schema rules, located at the key with a hint; the ones it cannot (one
setting against another, a size under one byte) are ``invalid-setting`` diagnostics from the parsers, at the
offending key, reported with every other problem by ``runner validate`` and by ``runner run`` before any
call. The parsers themselves raise :class:`ConfigError`, which names the key and says how to fix it.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.config.embeddings import parse_embedding_config, parse_long_term, parse_size
from runner.config.memory import parse_working_memory
from runner.config.openai import parse_openai_embedding, parse_openai_model
from runner.errors import ConfigError
from runner.validate.check import check_file
from tests.conftest import ROOT, run_cli
from tests.oai_server import OAIServer

PARSERS = [
    ROOT / "runner" / "config" / "openai.py",
    ROOT / "runner" / "config" / "memory.py",
    ROOT / "runner" / "config" / "embeddings.py",
]

BASE = """\
version: 1
name: settings
models:
  m: {provider: scripted, reply: "hi"}
  o:
    provider: openai
    base_url: http://127.0.0.1:9/v1
    model: x
MODEL
embeddings:
  e:
    provider: hashing
EMBEDDING
memory:
  w:
    max_total_tokens: 2000
WORKING
  lt:
    long_term:
      embedding: e
      store: .runner/memory/settings
LONG_TERM
agents:
  a: {model: m, memory: w}
  b: {model: o, memory: lt}
stages:
  - {id: s, agent: a}
  - {id: t, agent: b}
"""


def workflow(**parts: str) -> str:
    text = BASE
    for name in ("MODEL", "EMBEDDING", "WORKING", "LONG_TERM"):
        text = text.replace(name + "\n", parts.get(name.lower(), "") + ("\n" if name.lower() in parts else ""))
    return text


OPENAI_EMBEDDING = "    provider: openai\n    base_url: http://127.0.0.1:9/v1\n"
_SIZE = "(B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
_RETRY_ON = "is not an HTTP status worth retrying (408, 409, 425, 429, 5xx) nor one of timeout, connect, read, protocol"
_RETRY_ON_HINT = "use a status such as 429 or 503, or an error kind: timeout, connect, read, protocol"
_PARAMS_HINT = (
    "remove it from params: the runner sets model, messages, stream, stream_options and tools "
    "(stream: false on the model turns streaming off)"
)

# (what is wrong, the workflow, where, rule, message, hint): one case per check of the three parsers, as a
# user meets it. The schema states most of them; the parsers keep the rest.
CASES = [
    ("timeout 0", {"model": "    timeout: {read: 0}"}, "9:21", "schema",
     "models.o.timeout.read: must be > 0, got 0", "use a value > 0"),
    ("timeout null", {"model": "    timeout: {connect: null}"}, "9:24", "schema",
     "models.o.timeout.connect: expected a number, got null", "write a number"),
    ("timeout not a mapping", {"model": "    timeout: fast"}, "9:14", "schema",
     "models.o.timeout: expected a mapping, got a string", "write a mapping"),
    ("pool 0", {"model": "    pool: {max_connections: 0}"}, "9:29", "schema",
     "models.o.pool.max_connections: must be >= 1, got 0", "use a value >= 1"),
    ("keepalive -1", {"model": "    pool: {keepalive_expiry: -1}"}, "9:30", "schema",
     "models.o.pool.keepalive_expiry: must be >= 0, got -1", "use a value >= 0"),
    ("jitter", {"model": "    retry: {jitter: some}"}, "9:21", "schema",
     "models.o.retry.jitter: 'some' is not one of full, none", "use one of: full, none"),
    ("retry_on not a list", {"model": "    retry: {retry_on: timeout}"}, "9:23", "schema",
     "models.o.retry.retry_on: expected a list, got a string", "write a list"),
    ("retry_on entry", {"model": "    retry: {retry_on: [429, sometimes]}"}, "9:29", "schema",
     f"models.o.retry.retry_on[1]: 'sometimes' {_RETRY_ON}", _RETRY_ON_HINT),
    ("retry_on status", {"model": "    retry: {retry_on: [99]}"}, "9:24", "schema",
     f"models.o.retry.retry_on[0]: 99 {_RETRY_ON}", _RETRY_ON_HINT),
    ("headers value", {"model": "    headers: {X-Team: 1}"}, "9:23", "schema",
     "models.o.headers.X-Team: expected a string, got an integer", "write a string"),
    ("headers authorization", {"model": "    headers: {authorization: '{{ token }}'}"}, "9:15", "schema",
     "models.o.headers.authorization: the Authorization header is not set here: keys never go in workflow files",
     "remove it and set api_key_env to the name of the environment variable that holds the key"),
    ("stream", {"model": "    stream: sometimes"}, "9:13", "schema",
     "models.o.stream: expected true or false, got a string", "write true or false"),
    ("params stream", {"model": "    params: {temperature: 0.2, stream: false}"}, "9:32", "schema",
     "models.o.params.stream: 'stream' is set by the runner, not by params", _PARAMS_HINT),
    ("api_key_env", {"model": "    api_key_env: my-key"}, "9:18", "schema",
     "models.o.api_key_env: 'my-key' does not match the pattern ^[A-Za-z_][A-Za-z0-9_]*$",
     "name an environment variable: letters, digits and '_', not starting with a digit, e.g. OPENAI_API_KEY"),
    ("base_url", {"replace": ("base_url: http://127.0.0.1:9/v1", "base_url: 127.0.0.1:9/v1")}, "7:15", "schema",
     "models.o.base_url: '127.0.0.1:9/v1' does not match the pattern ^https?://[^\\s]+$",
     "write the endpoint's URL up to and including /v1, e.g. https://api.openai.com/v1"),
    ("model empty", {"replace": ("    model: x\n", "    model: ''\n")}, "8:12", "schema",
     "models.o.model: must not be empty", "write a value, or leave the key out"),
    ("embedding model missing", {"embedding": OPENAI_EMBEDDING + "    dimensions: 8"}, "11:5", "schema",
     "embeddings.e: missing required key 'model'", "add 'model'"),
    ("dimensions missing", {"embedding": OPENAI_EMBEDDING + "    model: e"}, "11:5", "schema",
     "embeddings.e: missing required key 'dimensions'", "add 'dimensions'"),
    ("send_dimensions", {"embedding": OPENAI_EMBEDDING + "    model: e\n    dimensions: 8\n    send_dimensions: 1"},
     "15:22", "schema", "embeddings.e.send_dimensions: expected true or false, got an integer", "write true or false"),
    ("max_concurrency", {"embedding": OPENAI_EMBEDDING + "    model: e\n    dimensions: 8\n    max_concurrency: 0"},
     "15:22", "schema", "embeddings.e.max_concurrency: must be >= 1, got 0", "use a value >= 1"),
    ("model on hashing", {"embedding": "    model: x"}, "12:5", "schema",
     "embeddings.e.model: applies only to provider openai", "remove model, or set provider: openai"),
    ("dimensions 0", {"embedding": "    dimensions: 0"}, "12:17", "schema",
     "embeddings.e.dimensions: must be >= 1, got 0", "use a value >= 1"),
    ("cache not a mapping", {"embedding": "    cache: .cache"}, "12:12", "schema",
     "embeddings.e.cache: expected a mapping, got a string", "write a mapping"),
    ("cache without dir", {"embedding": "    cache: {max_file_number: 3}"}, "12:12", "schema",
     "embeddings.e.cache: missing required key 'dir'", "add 'dir'"),
    ("cache dir empty", {"embedding": "    cache: {dir: ''}"}, "12:18", "schema",
     "embeddings.e.cache.dir: must not be empty", "write a value, or leave the key out"),
    ("size not a size", {"embedding": "    cache: {dir: c, max_cache_size: lots}"}, "12:37", "schema",
     f"embeddings.e.cache.max_cache_size: 'lots' is not a size: use bytes (at least 1) or a number with a unit {_SIZE}",
     "write e.g. 256MB, 1.5GiB or 1048576"),
    ("size 0", {"embedding": "    cache: {dir: c, max_cache_size: 0}"}, "12:37", "schema",
     f"embeddings.e.cache.max_cache_size: 0 is not a size: use bytes (at least 1) or a number with a unit {_SIZE}",
     "write e.g. 256MB, 1.5GiB or 1048576"),
    ("size under a byte", {"embedding": "    cache: {dir: c, max_cache_size: 0.1B}"}, "12:21", "invalid-setting",
     "embeddings.e: cache.max_cache_size: a size must be at least 1 byte, not '0.1B'",
     "bytes (4096) or a number with a unit, such as '256MB' or '1.5GiB'"),
    ("max_file_number 0", {"embedding": "    cache: {dir: c, max_file_number: 0}"}, "12:38", "schema",
     "embeddings.e.cache.max_file_number: must be >= 1, got 0", "use a value >= 1"),
    ("ttl 0", {"embedding": "    cache: {dir: c, ttl: 0}"}, "12:26", "schema",
     "embeddings.e.cache.ttl: must be > 0, got 0", "use a value > 0"),
    ("keep_recent_count", {"working": "    keep_recent_count: -1"}, "15:24", "schema",
     "memory.w.keep_recent_count: must be >= 0, got -1", "use a value >= 0"),
    ("mode", {"working": "    working_summary_mode: shrink"}, "15:27", "schema",
     "memory.w.working_summary_mode: 'shrink' is not one of compact, compress, auto",
     "use one of: compact, compress, auto"),
    ("token_counter", {"working": "    token_counter: exact"}, "15:20", "schema",
     "memory.w.token_counter: 'exact' is not one of approx, tiktoken", "use one of: approx, tiktoken"),
    ("ratio 0", {"working": "    compact_ratio_threshold: 0"}, "15:30", "schema",
     "memory.w.compact_ratio_threshold: must be > 0, got 0", "use a value > 0"),
    ("ratio 1.5", {"working": "    compact_ratio_threshold: 1.5"}, "15:30", "schema",
     "memory.w.compact_ratio_threshold: must be <= 1, got 1.5", "use a value <= 1"),
    ("tool tokens 63", {"working": "    max_tool_message_tokens: 63"}, "15:30", "schema",
     "memory.w.max_tool_message_tokens: must be >= 64, got 63", "use a value >= 64"),
    ("tool tokens above the budget", {"working": "    max_tool_message_tokens: 3000"}, "15:5", "invalid-setting",
     "memory.w: max_tool_message_tokens (3000) must be below max_total_tokens (2000): "
     "a single tool result could otherwise fill the whole budget",
     "lower max_tool_message_tokens below 2000 (a tenth of the budget is typical), or raise max_total_tokens"),
    ("summary_model empty", {"working": "    summary_model: ''"}, "15:20", "schema",
     "memory.w.summary_model: must not be empty", "write a value, or leave the key out"),
    ("summary_group_tokens", {"working": "    summary_group_tokens: 10"}, "15:27", "schema",
     "memory.w.summary_group_tokens: must be >= 256, got 10", "use a value >= 256"),
    ("retrieval", {"long_term": "      retrieval: always"}, "19:18", "schema",
     "memory.lt.long_term.retrieval: 'always' is not one of auto, tool", "use one of: auto, tool"),
    ("top_k", {"long_term": "      top_k: 0"}, "19:14", "schema",
     "memory.lt.long_term.top_k: must be >= 1, got 0", "use a value >= 1"),
]  # fmt: skip


def _write(tmp_path: Path, parts: dict[str, Any]) -> Path:
    old, new = parts.pop("replace", ("", ""))
    text = workflow(**parts).replace(old, new) if old else workflow(**parts)
    if "provider: openai" in parts.get("embedding", ""):
        text = text.replace("    provider: hashing\n    provider: openai\n", "    provider: openai\n")
    path = tmp_path / "wf.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("parts", "where", "rule", "message", "hint"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_settings_check_is_a_located_diagnostic_with_a_hint(
    tmp_path: Path, parts: dict[str, Any], where: str, rule: str, message: str, hint: str
) -> None:
    wf, problems = check_file(_write(tmp_path, dict(parts)))
    assert wf is None
    assert [(f"{p.line}:{p.column}", p.rule, p.message, p.hint) for p in problems if p.severity == "error"] == [
        (where, rule, message, hint)
    ]


def test_the_exit_3_of_issue_14_is_a_located_error_in_validate(tmp_path: Path) -> None:
    path = _write(tmp_path, {"working": "    max_tool_message_tokens: 3000"})
    result = run_cli("validate", str(path))
    assert (result.returncode, result.stderr) == (1, "")
    assert result.stdout == (
        f"{path}:15:5: error: memory.w: max_tool_message_tokens (3000) must be below max_total_tokens (2000): "
        "a single tool result could otherwise fill the whole budget [invalid-setting]\n"
        "    15 |     max_tool_message_tokens: 3000\n"
        "       |     ^^^^^^^^^^^^^^^^^^^^^^^\n"
        "       = hint: lower max_tool_message_tokens below 2000 (a tenth of the budget is typical), "
        "or raise max_total_tokens\n"
        "1 error(s), 0 warning(s) in 1 file(s)\n"
    )


def test_settings_problems_come_with_every_other_problem(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        {
            "working": "    max_tool_message_tokens: 3000",
            "embedding": "    cache: {dir: c, max_cache_size: 0B}",
            "replace": ("  - {id: s, agent: a}", "  - {id: s, agent: a, input: '{{ inputs.nope }}'}"),
        },
    )
    _, problems = check_file(path)
    assert [(p.line, p.column, p.rule) for p in problems] == [
        (12, 21, "invalid-setting"),
        (16, 5, "invalid-setting"),
        (25, 34, "unknown-input"),
    ]


def test_run_reports_a_refused_setting_before_any_call(tmp_path: Path) -> None:
    with OAIServer() as server:
        text = workflow(working="    max_tool_message_tokens: 3000").replace("http://127.0.0.1:9/v1", server.url)
        path = tmp_path / "wf.yaml"
        path.write_text(text)
        result = run_cli("run", str(path), "--report-dir", str(tmp_path / "reports"))
        assert server.requests == []
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == (  # as `runner validate` prints it: one renderer for both
        f"{path}:15:5: error: memory.w: max_tool_message_tokens (3000) must be below "
        "max_total_tokens (2000): a single tool result could otherwise fill the whole budget [invalid-setting]"
    )
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "reports").exists()


# --- the parsers themselves ------------------------------------------------------------------------------

MODEL = {"provider": "openai", "base_url": "http://h/v1", "model": "m"}
EMBEDDER = {"provider": "openai", "base_url": "http://h/v1", "model": "e", "dimensions": 8}
WORKING = {"max_total_tokens": 1000}
LONG_TERM = {"embedding": "e", "store": "s"}

# (parser, raw, the key it names, the message): every check of the three parsers (39 in all).
PARSER_CASES: list[tuple[Callable[[Any], Any], dict[str, Any], tuple[str | int, ...], str]] = [
    (parse_openai_model, {**MODEL, "timeout": {"read": 0}}, ("timeout", "read"),
     "timeout.read must be a number greater than 0, not 0"),
    (parse_openai_model, {**MODEL, "pool": {"max_connections": 0}}, ("pool", "max_connections"),
     "pool.max_connections must be a positive integer, not 0"),
    (parse_openai_model, {**MODEL, "model": ""}, ("model",), "model must be a non-empty string, not ''"),
    (parse_openai_model, {**MODEL, "retry": "often"}, ("retry",), "retry must be a mapping, not 'often'"),
    (parse_openai_model, {**MODEL, "retry": {"jitter": "some"}}, ("retry", "jitter"),
     "retry.jitter must be one of full, none, not 'some'"),
    (parse_openai_model, {**MODEL, "retry": {"retry_on": "timeout"}}, ("retry", "retry_on"),
     "retry.retry_on must be a list, not 'timeout'"),
    (parse_openai_model, {**MODEL, "retry": {"retry_on": [429, "never"]}}, ("retry", "retry_on", 1),
     "retry.retry_on entries are HTTP statuses or one of timeout, connect, read, protocol, not 'never'"),
    (parse_openai_model, {**MODEL, "headers": {"X-A": 1}}, ("headers", "X-A"),
     "headers must map names to strings, not 'X-A': 1"),
    (parse_openai_model, {**MODEL, "headers": {"Authorization": "x"}}, ("headers", "Authorization"),
     "headers must not set Authorization: name the key's variable in api_key_env"),
    (parse_openai_model, {**MODEL, "stream": "yes"}, ("stream",), "stream must be true or false, not 'yes'"),
    (parse_openai_model, {**MODEL, "params": {"tools": []}}, ("params", "tools"),
     "params must not set 'tools': the runner sets it"),
    (parse_openai_model, {**MODEL, "params": {"extra_body": "x"}}, ("params", "extra_body"),
     "params.extra_body must be a mapping, not 'x'"),
    (parse_openai_model, {**MODEL, "params": {"extra_body": {"stream": True}}}, ("params", "extra_body", "stream"),
     "params.extra_body must not set 'stream': the runner sets it"),
    (parse_openai_model, {**MODEL, "params": {"n": 4}}, ("params", "n"),
     "params.n must be 1, not 4: runner reads one choice of each reply"),
    (parse_openai_model, {**MODEL, "structured_output": "grammar"}, ("structured_output",),
     "structured_output must be one of json_schema, json_object, prompt, not 'grammar'"),
    (parse_openai_embedding, {**EMBEDDER, "send_dimensions": 1}, ("send_dimensions",),
     "send_dimensions must be true or false, not 1"),
    (parse_openai_embedding, {k: v for k, v in EMBEDDER.items() if k != "dimensions"}, (),
     "dimensions is required: the length of the vectors the model returns"),
    (parse_working_memory, {**WORKING, "keep_recent_count": -1}, ("keep_recent_count",),
     "keep_recent_count must be an integer of at least 0, not -1"),
    (parse_working_memory, {}, (), "max_total_tokens is required for a working memory (e.g. 20000)"),
    (parse_working_memory, {**WORKING, "working_summary_mode": "x"}, ("working_summary_mode",),
     "working_summary_mode must be one of compact, compress, auto, not 'x'"),
    (parse_working_memory, {**WORKING, "token_counter": "x"}, ("token_counter",),
     "token_counter must be one of approx, tiktoken, not 'x'"),
    (parse_working_memory, {**WORKING, "compact_ratio_threshold": 2}, ("compact_ratio_threshold",),
     "compact_ratio_threshold must be a number above 0 and at most 1, not 2"),
    (parse_working_memory, {**WORKING, "summary_model": ""}, ("summary_model",),
     "summary_model must be the name of an entry under models:, not ''"),
    (parse_working_memory, {**WORKING, "max_tool_message_tokens": 1000}, ("max_tool_message_tokens",),
     "max_tool_message_tokens (1000) must be below max_total_tokens (1000): "
     "a single tool result could otherwise fill the whole budget"),
    (parse_size, True, (), "a size must be an integer or a string such as '256MB', not True"),  # type: ignore[list-item]
    (parse_size, "lots", (), "'lots' is not a size: use bytes (4096) or a number with a unit "  # type: ignore[list-item]
     "(B, KB, MB, GB, TB, KiB, MiB, GiB, TiB), such as '256MB' or '1.5GiB'"),
    (parse_size, "0.5B", (), "a size must be at least 1 byte, not '0.5B'"),  # type: ignore[list-item]
    (parse_embedding_config, {"provider": "hashing", "dimensions": 0}, ("dimensions",),
     "dimensions must be a positive integer, not 0"),
    (parse_embedding_config, {"provider": "openai", "model": ""}, ("model",),
     "model must be a non-empty string, not ''"),
    (parse_embedding_config, {"provider": "hashing", "cache": {"dir": ""}}, ("cache", "dir"),
     "cache.dir must be a non-empty string, not ''"),
    (parse_embedding_config, {"provider": "hashing", "cache": {"dir": "c", "max_cache_size": "0B"}},
     ("cache", "max_cache_size"), "cache.max_cache_size: a size must be at least 1 byte, not '0B'"),
    (parse_embedding_config, {"provider": "hashing", "cache": {"dir": "c", "ttl": 0}}, ("cache", "ttl"),
     "cache.ttl must be a positive number of seconds, not 0"),
    (parse_embedding_config, {"provider": "word2vec"}, ("provider",),
     "provider must be one of hashing, openai, not 'word2vec'"),
    (parse_embedding_config, {"provider": "openai"}, (),
     "model is required for provider openai (e.g. text-embedding-3-small)"),
    (parse_embedding_config, {"provider": "hashing", "base_url": "http://h/v1"}, ("base_url",),
     "base_url applies only to provider openai, not hashing"),
    (parse_embedding_config, {"provider": "hashing", "cache": "c"}, ("cache",),
     "cache must be a mapping with at least 'dir', not 'c'"),
    (parse_long_term, {"store": "s"}, (), "embedding is required: the name of an entry under embeddings:"),
    (parse_long_term, {"embedding": "e"}, (), "store is required: the folder that keeps the memory between runs"),
    (parse_long_term, {**LONG_TERM, "retrieval": "always"}, ("retrieval",),
     "retrieval must be one of auto, tool, not 'always'"),
]  # fmt: skip


@pytest.mark.parametrize(("parse", "raw", "key", "message"), PARSER_CASES)
def test_every_parser_check_names_its_key_and_gives_a_hint(
    parse: Callable[[Any], Any], raw: Any, key: tuple[str | int, ...], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse(raw)
    assert (str(info.value), info.value.key) == (message, key)
    assert info.value.hint
    assert isinstance(info.value, ValueError)  # what the parsers raised before, for callers that catch it


def _raises(path: Path) -> list[ast.Raise]:
    return [node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Raise)]


def test_the_settings_parsers_raise_no_bare_value_error() -> None:
    sites = 0
    for path in PARSERS:
        for node in _raises(path):
            call = node.exc
            assert isinstance(call, ast.Call) and isinstance(call.func, ast.Name), ast.unparse(node)
            assert call.func.id == "ConfigError", f"{path.name}:{node.lineno}: {ast.unparse(node)}"
            assert len(call.args) == 3, f"{path.name}:{node.lineno}: a ConfigError needs its key and a hint"
            sites += 1
    assert sites == len(PARSER_CASES)  # each check has its case above


# --- issue 21: inputs are bounded like workflow files ----------------------------------------------------

DEEP_WF = """\
version: 1
name: deep
inputs:
  data: {type: object, default: {}}
models:
  m: {provider: scripted, reply: "{{ inputs.data | tojson | length }}"}
agents:
  a: {model: m}
stages:
  - {id: s, agent: a, input: "{{ inputs.data }}"}
"""


def _nested(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


@pytest.mark.parametrize("levels", [201, 500, 5000])
def test_deep_json_in_set_is_a_located_error_in_validate(tmp_path: Path, levels: int) -> None:
    from runner.commands.validate import check_paths

    path = tmp_path / "wf.yaml"
    path.write_text(DEEP_WF)
    problems, _ = check_paths([str(path)], sets=[f"data={_nested(levels)}"])
    assert [(p.line, p.column, p.rule, p.message) for p in problems] == [
        (
            4,
            3,
            "set-value",
            f"--set data={_nested(levels)[:77]}...: the value nests deeper than 200 levels, the most an input may "
            "(as in a workflow file) (input 'data' has type object)",
        )
    ]


def test_deep_json_in_set_stops_run_before_it_starts(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(DEEP_WF)
    result = run_cli("run", str(path), "--set", f"data={_nested(500)}", "--report-dir", str(tmp_path / "r"))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "runner: error: --set data: the value nests deeper than 200 levels, the most an input may "
        "(as in a workflow file)\n"
    )
    assert not (tmp_path / "r").exists()
    validate = run_cli("validate", str(path), "--set", f"data={_nested(5000)}")
    assert validate.returncode == 1 and "[set-value]" in validate.stdout and not validate.stderr


def test_the_deepest_input_allowed_runs_and_is_reported(tmp_path: Path) -> None:
    """200 levels: the limit is where nothing downstream (templates, report, trace) runs out of stack."""
    path = tmp_path / "wf.yaml"
    path.write_text(DEEP_WF.replace("stages:", "report: {formats: [json, markdown, trace]}\nstages:"))
    result = run_cli("run", str(path), "--set", f"data={_nested(199)}", "--report-dir", str(tmp_path / "r"), "-q")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{len(_nested(199).replace(':', ': '))}\n"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(
            '{"data": ' + _nested(500) + "}\n",
            "{path}:1:1010: error: the document nests deeper than 200 levels [yaml-too-large]",
            id="deep",
        ),
        pytest.param(
            "a: &a [x, x, x, x, x, x, x, x, x]\n"
            + "".join(f"{c}: &{c} [{', '.join([f'*{chr(ord(c) - 1)}'] * 9)}]\n" for c in "bcdefghij")
            + "data: {k: *j}\n",
            "{path}:1:32: error: the document expands to more than 200,000 values [yaml-too-large]",
            id="alias bomb",
        ),
        pytest.param(
            '{"data": {"x": "' + "y" * (1 << 20) + '"}}\n',
            "--input {path}: the file is 1,048,596 bytes, over the limit of 1,048,576 bytes for inputs; "
            "pass large data as a file path in an input, and read it in a tool or a python stage",
            id="huge",
        ),
    ],
)
def test_input_files_are_bounded_like_workflow_files(tmp_path: Path, content: str, expected: str) -> None:
    from runner.errors import RunnerError
    from runner.workflow.inputs import read_input_file

    path = tmp_path / "inputs.json"
    path.write_text(content)
    with pytest.raises(RunnerError) as info:
        read_input_file(str(path))
    assert str(info.value) == expected.format(path=path)


@pytest.mark.parametrize("libyaml", [True, False], ids=["libyaml", "pure Python"])
@pytest.mark.parametrize(("levels", "closed"), [(300, 300), (3000, 3000), (3000, 2999)])
def test_deep_workflows_are_refused_where_the_limit_is_crossed(
    monkeypatch: pytest.MonkeyPatch, libyaml: bool, levels: int, closed: int
) -> None:
    """PyYAML's own composer recurses once per level (a RecursionError past about 330); libyaml stops at 1,000
    levels. Either way the error is at the level where the limit is crossed (without libyaml, or when it
    finds a problem and the pure-Python loader runs for the messages, found from the parser's events)."""
    import yaml

    from runner.workflow.document import LoadError, load_document

    if not libyaml:
        monkeypatch.delattr(yaml, "CSafeLoader")
    text = "version: 1\nname: deep\nstages: " + "[" * levels + "]" * closed + "\n"
    with pytest.raises(LoadError) as info:
        load_document(text, "wf.yaml")
    assert [d.format_line() for d in info.value.diagnostics] == [
        "wf.yaml:3:209: error: the document nests deeper than 200 levels [yaml-too-large]"
    ]


# --- which files `runner validate` checks (issues 14 and 21) ---------------------------------------------

QUICKSTART = (ROOT / "workflows" / "quickstart.yaml").read_text(encoding="utf-8")
NOT_WORKFLOWS = {
    ".pre-commit-config.yaml": "repos:\n  - repo: local\n    hooks: []\n",
    ".pre-commit-hooks.yaml": "- id: x\n  name: x\n  entry: x\n  language: system\n",
    "docker-compose.yml": 'version: "3"\nservices: {web: {image: nginx}}\n',
    "ci.yml": "name: ci\non: [push]\njobs: {}\n",
    "data.yaml": "items: [1, 2]\nversion: 2\n",
    "empty.yaml": "",
}


def _validate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from runner.cli import main

    code = main(["validate", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_folder_without_workflows_fails_unless_allowed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _validate(capsys, str(tmp_path)) == (
        1,
        "",
        f"runner: error: no workflow files found in {tmp_path}: a workflow has a top-level 'version:' beside "
        "'stages:', 'agents:' or 'models:', or the schema modeline; pass --allow-empty if finding none is fine\n",
    )
    assert _validate(capsys, "--allow-empty", str(tmp_path)) == (0, "0 file(s) valid\n", "")
    for name, text in NOT_WORKFLOWS.items():
        (tmp_path / name).write_text(text)
    code, out, err = _validate(capsys, "--format", "json", str(tmp_path))
    assert (code, out) == (1, "")
    assert err.startswith(f"runner: error: no workflow files found in {tmp_path} (6 YAML file(s) there are not ")


def test_the_no_workflow_error_through_a_subprocess(tmp_path: Path) -> None:
    result = run_cli("validate", str(tmp_path))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith("runner: error: no workflow files found in ")


def test_a_folder_holds_workflows_by_their_keys_or_modeline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, text in NOT_WORKFLOWS.items():
        (tmp_path / name).write_text(text)
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    (tmp_path / ".github" / "workflows" / "ci.yml").write_text(NOT_WORKFLOWS["ci.yml"])
    (tmp_path / "a.yaml").write_text(QUICKSTART)
    modeline = "# yaml-language-server: $schema=../schemas/workflow.schema.json\nname: only-a-name\n"
    (tmp_path / "b.yml").write_text(modeline)  # recognised by its modeline, and so reported
    (tmp_path / "c.yaml").write_text('{"version": 1, "name": "c", "stages": []}\n')
    typo = "# a workflow whose stages key has a typo\nversion: 1\nname: d\nmodels: {}\nstage: []\n"
    (tmp_path / "d.yaml").write_text(typo)
    code, out, err = _validate(capsys, str(tmp_path))
    lines = out.splitlines()
    assert (code, err) == (1, "")
    assert [line.split(": error: ")[0].removeprefix(f"{tmp_path}/") for line in lines if ": error: " in line] == [
        "b.yml:2:1",
        "b.yml:2:1",
        "c.yaml:1:39",
        "d.yaml:2:1",
        "d.yaml:5:1",
    ]
    assert lines[-2] == "5 error(s), 0 warning(s) in 4 file(s)"
    assert lines[-1] == (
        f"skipped 6 YAML file(s) that are not workflows: {tmp_path}/.pre-commit-config.yaml, "
        f"{tmp_path}/.pre-commit-hooks.yaml, {tmp_path}/ci.yml and 3 more"
    )
    # named on the command line, a file is checked whatever it holds
    code, out, _ = _validate(capsys, str(tmp_path / "ci.yml"))
    assert code == 1 and f"{tmp_path / 'ci.yml'}:2:1: error: unknown key 'on' in the top level [schema]" in out


def test_runnerignore_skips_what_it_lists_below_its_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = "version: 1\nname: broken\nstages: []\nagents: {}\nmodels: {}\n"
    for rel in ("flows/good.yaml", "flows/sub/also.yaml"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(QUICKSTART)
    for rel in ("fixtures/bad.yaml", "flows/wip.draft.yaml", "flows/sub/deep/fixtures/bad.yml", "flows/sub/x.yaml"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(broken)
    (tmp_path / ".runnerignore").write_text("# comment\n\nfixtures/\n*.draft.yaml\n")
    (tmp_path / "flows" / "sub" / ".runnerignore").write_text("/x.yaml\n")
    assert _validate(capsys, str(tmp_path)) == (0, "2 file(s) valid\n", "")
    # not read above a folder named on the command line: the folder's own contents are what was asked for
    code, out, _ = _validate(capsys, str(tmp_path / "fixtures"))
    assert code == 1 and out.endswith("in 1 file(s)\n")


HOOKS = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))


def _selected_by_the_hook(path: str) -> bool:
    """pre-commit's own test: `files` and `exclude` searched in the path relative to the repository."""
    (hook,) = HOOKS
    return bool(re.search(hook["files"], path)) and not re.search(hook["exclude"], path)


@pytest.mark.parametrize(
    ("path", "selected"),
    [
        ("workflows/quickstart.yaml", True),
        ("workflows/nested/review.yml", True),
        ("services/billing/workflows/digest.yaml", True),
        (".pre-commit-config.yaml", False),
        (".pre-commit-hooks.yaml", False),
        (".github/workflows/ci.yml", False),
        ("services/billing/.github/workflows/ci.yaml", False),
        ("docker-compose.yml", False),
        ("tests/invalid/empty.yaml", False),
        ("workflows/README.md", False),
        ("myworkflows/x.yaml", False),
    ],
)
def test_the_hook_selects_workflow_folders_only(path: str, selected: bool) -> None:
    assert _selected_by_the_hook(path) is selected


def test_the_hook_on_this_checkout_checks_the_examples_and_passes(capsys: pytest.CaptureFixture[str]) -> None:
    (hook,) = HOOKS
    assert (hook["id"], hook["entry"], hook["language"], hook["types"]) == (
        "runner-validate",
        "runner validate",
        "python",
        ["yaml"],
    )
    tracked = sorted(
        p.relative_to(ROOT).as_posix()
        for p in ROOT.rglob("*")
        if p.suffix in (".yaml", ".yml") and not {".venv", ".git"} & set(p.relative_to(ROOT).parts)
    )
    chosen = [p for p in tracked if _selected_by_the_hook(p)]
    assert chosen == sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "workflows").glob("*.yaml"))
    code, out, err = _validate(capsys, *(str(ROOT / p) for p in chosen))
    assert (code, err) == (0, ""), out


def test_validate_dot_on_this_checkout_is_clean(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    code, out, err = _validate(capsys, ".")
    examples = len(list((ROOT / "workflows").glob("*.yaml")))
    assert (code, err) == (0, ""), out
    assert out == f"{examples} file(s) valid\nskipped 1 YAML file(s) that are not workflows: .pre-commit-hooks.yaml\n"


# --- issue 14: what an editor shows from the schema reads as words ----------------------------------------

SCHEMA = json.loads((ROOT / "schemas" / "workflow.schema.json").read_text(encoding="utf-8"))
_IDENTIFIER = re.compile(r"\b[a-z]+[A-Z]\w*\b")  # openaiModel, longTerm: names for code, not for people
_TITLE = re.compile(r"^[A-Z][A-Za-z0-9-]*( [A-Za-z0-9()-]+)*$")


def _shown(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every schema an editor describes: the definitions, named entries and properties, not the conditions
    (``if``, ``not``) that only steer validation."""
    out: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("if", "not"):
                continue
            if key in ("properties", "$defs") and isinstance(value, dict):
                out.extend((f"{path}/{key}/{name}", sub) for name, sub in value.items() if isinstance(sub, dict))
            out.extend(_shown(value, f"{path}/{key}"))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out.extend(_shown(value, f"{path}[{i}]"))
    return out


@pytest.mark.parametrize("name", sorted(SCHEMA["$defs"]))
def test_every_definition_has_a_title_and_description_in_words(name: str) -> None:
    definition = SCHEMA["$defs"][name]
    title = definition.get("title", "")
    assert _TITLE.match(title) and not _IDENTIFIER.search(title) and title != name, title
    assert definition.get("description", "").endswith("."), definition.get("description")


def test_every_named_entry_has_a_title_and_description() -> None:
    """`models.<name>`, `agents.<name>`, ...: what an editor shows for an entry it cannot name by key."""
    for key, prop in SCHEMA["properties"].items():
        entry = prop.get("additionalProperties")
        if not isinstance(entry, dict):
            continue
        shown = SCHEMA["$defs"][entry["$ref"].rsplit("/", 1)[1]] if "$ref" in entry else entry
        assert _TITLE.match(shown.get("title", "")), key
        assert shown.get("description", "").endswith("."), key


def test_every_property_an_editor_shows_has_a_description_in_words() -> None:
    shown = _shown(SCHEMA)
    assert len(shown) > 100
    for path, schema in shown:
        if "$ref" in schema and set(schema) <= {"$ref"}:
            continue  # the definition's own title and description are shown
        description = schema.get("description")
        assert isinstance(description, str) and description.endswith("."), (path, description)
        for named in re.findall(r"[\w-]+\.schema\.json", description):  # no file that does not exist
            assert (ROOT / "schemas" / named).is_file(), (path, named)


def test_no_internal_definition_name_reaches_the_editor() -> None:
    text = json.dumps([(s.get("title", ""), s.get("description", "")) for _, s in _shown(SCHEMA)])
    for name in SCHEMA["$defs"]:
        if _IDENTIFIER.fullmatch(name):
            assert name not in text, name


def test_the_schema_with_its_titles_is_still_a_valid_schema() -> None:
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(SCHEMA)
