"""YAML syntax errors said the way a person fixes them: at the mistake, in words, with a hint.

PyYAML reports where its parser stopped (the *problem* mark), which for the commonest mistakes is not where
the mistake is: an unclosed quote or bracket stops at the end of the stream (the line after the file), a
key without ':' stops on the next line. It also reports where the construct it was reading started (the
*context* mark): the opening quote, the bracket, the key. Each recogniser below picks the mark that points
at the mistake and says what is wrong; anything not recognised keeps PyYAML's own words at its marks,
never past the end of the file (issue 14).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import yaml

_TOKEN_NAMES = {
    "<block end>": "the end of the block",
    "<block mapping start>": "a more indented mapping",
    "<block sequence start>": "a more indented list",
    "<scalar>": "more text",
    "<stream end>": "the end of the file",
    "<document start>": "'---'",
    "'?'": "a key",
    "'-'": "a list item ('-')",
    "']'": "']'",
    "'}'": "'}'",
    "','": "','",
    "':'": "':'",
}
_EXPECTED_FOUND = re.compile(r"expected (.+?), but (?:found|got) (.+)$")
# `name {type: string}`, `reply "text"`, `- tools [a, b]`: a key, then a value that a ':' should have introduced.
_KEY_WITHOUT_COLON = re.compile(r"^\s*(?:-\s+)*([A-Za-z_][\w-]*) +[{\[\"']")
# A quoted text ending in `, name: ` swallowed the next entry of a flow mapping up to that entry's own quote.
# A plain `key value` line: words, no ':' (the key of a mapping whose ':' was dropped).
_PLAIN_WORDS = re.compile(r"^(\s*)(?:-\s+)*([A-Za-z_][\w-]*) +\S")
_SWALLOWED_KEY = re.compile(r",\s*[A-Za-z_][\w-]*:\s*$")
_QUOTE_TEMPLATE = 'a template that starts a value must be quoted: input: "{{ ... }}"'


@dataclass(frozen=True, slots=True)
class SyntaxProblem:
    """Where (1-based, end exclusive), what and how to fix one YAML syntax error."""

    line: int
    column: int
    end_line: int
    end_column: int
    message: str
    hint: str


class _Text:
    def __init__(self, text: str) -> None:
        self.lines = text.split("\n")

    def line(self, line: int) -> str:
        """Line ``line`` (1-based) without its line break; empty past the end."""
        return self.lines[line - 1].rstrip("\r") if 0 < line <= len(self.lines) else ""

    @property
    def last(self) -> int:
        """The last line that holds anything (a file ends with a line break, so the final split is empty)."""
        n = len(self.lines)
        while n > 1 and not self.line(n).strip():
            n -= 1
        return n

    def indentation(self, line: int) -> int:
        text = self.line(line)
        return len(text) - len(text.lstrip(" "))


def _at(mark: yaml.Mark | None) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)


def _describe_token(token: str) -> str:
    if token.startswith("'<") and token.endswith(">'"):
        token = token[1:-1]
    return _TOKEN_NAMES.get(token, token)


def _levels(src: _Text, line: int) -> list[tuple[int, int]]:
    """``(column, line)`` of the blocks the lines above ``line`` open, innermost first: the columns a line may
    start at to continue one of them, and the line that sets each."""
    levels: list[tuple[int, int]] = []
    for above in range(line - 1, 0, -1):
        text = src.line(above)
        stripped = text.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            continue
        columns = [len(text) - len(stripped) + 1]
        rest = stripped
        while rest.startswith("- "):  # "- key: v" opens a mapping after the dash too
            after = rest[2:].lstrip(" ")
            columns.append(columns[-1] + len(rest) - len(after))
            rest = after
        for column in reversed(columns):
            if not levels or column < levels[-1][0]:
                levels.append((column, above))
        if levels[-1][0] == 1:
            break
    return levels


def _tokens_before(text: str, line: int, column: int) -> list[yaml.Token]:
    """The tokens PyYAML's scanner reads before the 1-based position, including those still queued when it
    failed there (a multi-line plain scalar waits in the queue while the scanner looks for its ':')."""
    loader = yaml.SafeLoader(text)
    limit = (line - 1, column - 1)
    out: list[yaml.Token] = []
    try:
        while loader.check_token():
            token: yaml.Token = loader.get_token()  # type: ignore[no-untyped-call]
            if (token.start_mark.line, token.start_mark.column) >= limit:
                break
            out.append(token)
    except yaml.YAMLError:
        pending = loader.tokens  # public attribute of PyYAML's Scanner: the tokens read ahead
        out.extend(t for t in pending if (t.start_mark.line, t.start_mark.column) < limit)
    finally:
        loader.dispose()
    return out


def _last_quoted(tokens: list[yaml.Token]) -> yaml.ScalarToken | None:
    for token in reversed(tokens):
        if isinstance(token, yaml.ScalarToken) and token.style in ("'", '"'):
            return token
    return None


def _last_scalar(tokens: list[yaml.Token]) -> yaml.ScalarToken | None:
    for token in reversed(tokens):
        if isinstance(token, yaml.ScalarToken):
            return token
    return None


def _swallowed_structure(src: _Text, token: yaml.ScalarToken) -> bool:
    """Whether a quoted scalar spanning lines runs over lines indented no deeper than the line it starts on:
    YAML accepts that in quotes, but people write it only when a closing quote is missing."""
    first = token.start_mark.line + 1
    last = token.end_mark.line + 1
    base = src.indentation(first)
    return any(src.line(n).strip() and src.indentation(n) <= base for n in range(first + 1, last + 1))


def _without_comment(line: str) -> str:
    """A line without its trailing comment: from the first `` #`` outside quotes (a comment's own ``:`` or
    apostrophe must not hide the key that lacks its ``:``)."""
    for match in re.finditer(r"\s#", line):
        before = line[: match.start()]
        if before.count('"') % 2 == 0 and before.count("'") % 2 == 0:
            return before.rstrip()
    return line


def _line_above(src: _Text, line: int) -> int | None:
    """The nearest line above ``line`` that holds more than blanks or a comment."""
    for n in range(line - 1, 0, -1):
        text = src.line(n).strip()
        if text and not text.startswith("#"):
            return n
    return None


def _missing_colon(src: _Text, line: int, column: int) -> SyntaxProblem:
    """The line's first word is a key without its ':'."""
    key = src.line(line)[column - 1 :].split(None, 1)[0] if src.line(line)[column - 1 :].strip() else ""
    return SyntaxProblem(
        line,
        column,
        line,
        column + max(len(key), 1),
        f"missing ':' after '{key}'",
        f"write '{key}: value', with a space after the ':'",
    )


def _blocks(levels: list[tuple[int, int]]) -> str:
    """``line 12 at column 6 and line 10 at column 3``: the two innermost blocks around a line."""
    return " and ".join(f"line {line} at column {column}" for column, line in levels[:2])


def describe(exc: yaml.MarkedYAMLError, text: str) -> SyntaxProblem:
    """The located, worded problem for a PyYAML syntax error raised while reading ``text``."""
    src = _Text(text)
    problem = str(exc.problem or "invalid YAML")
    context = str(exc.context or "")
    ctx_line, ctx_col = _at(exc.context_mark)
    line, col = _at(exc.problem_mark or exc.context_mark)
    found = _EXPECTED_FOUND.search(problem)

    def at_problem(message: str, hint: str, width: int = 1) -> SyntaxProblem:
        return SyntaxProblem(line, col, line, col + width, message, hint)

    def at_context(message: str, hint: str, width: int = 1) -> SyntaxProblem:
        return SyntaxProblem(ctx_line, ctx_col, ctx_line, ctx_col + width, message, hint)

    if "cannot start any token" in problem and src.line(line)[col - 1 : col] == "\t":
        # Before the guesses below: a tab that indents `else 'x' ...` in a block scalar is not a missing ':'.
        return at_problem("a tab character: YAML indents and separates with spaces only", "replace the tab with spaces")
    for suspect in (line, ctx_line) if exc.context_mark is not None else (line,):
        key = _KEY_WITHOUT_COLON.match(src.line(suspect))
        if key is not None:
            return _missing_colon(src, suspect, key.start(1) + 1)
    tokens: list[yaml.Token] | None = None

    def scanned() -> list[yaml.Token]:
        nonlocal tokens
        if tokens is None:
            tokens = _tokens_before(text, line, col)
        return tokens

    # A quote left open runs on to the next quote in the file, which closes it; the error shows up after that
    # (on a later line, or later on the line): blame the quote when the text it opened swallowed structure.
    last = _last_quoted(scanned())
    if last is not None and (
        (last.start_mark.line < last.end_mark.line == line - 1 and _swallowed_structure(src, last))
        or _SWALLOWED_KEY.search(str(last.value))
    ):
        q_line, q_col = last.start_mark.line + 1, last.start_mark.column + 1
        quote = str(last.style)
        end_line, end_col = last.end_mark.line + 1, last.end_mark.column
        where = f"line {end_line}, column {end_col}" if end_line != q_line else f"column {end_col}"
        return SyntaxProblem(
            q_line,
            q_col,
            q_line,
            q_col + 1,
            f"unclosed quote: the text opened with {quote} here runs on to {where}, where the next {quote} ends it",
            f"end it with {quote} where the text ends",
        )
    if (
        "quoted scalar" in context
        and exc.context_mark is not None
        and ("end of stream" in problem or "document separator" in problem)
    ):
        quote = src.line(ctx_line)[ctx_col - 1 : ctx_col] or '"'
        inner = "\\" + quote if quote == '"' else "''"
        return at_context(
            f"unclosed quote: the text opened with {quote} here never ends",
            f"end it with {quote} on this line; a {quote} inside the text is written {inner}",
        )
    if "simple key" in context and "could not find expected ':'" in problem and exc.context_mark is not None:
        return _missing_colon(src, ctx_line, ctx_col)
    flow = "flow sequence" in context or "flow mapping" in context
    if flow and found is not None and exc.context_mark is not None:
        opener, closer, what = ("[", "]", "list") if "sequence" in context else ("{", "}", "mapping")
        if line != ctx_line or found.group(2) == "'<stream end>'":
            hint = f"close it with '{closer}'"
            if "{{" in src.line(ctx_line):
                hint = _QUOTE_TEMPLATE
            stop = "the end of the file" if found.group(2) == "'<stream end>'" else f"line {line}, column {col}"
            return at_context(f"unclosed '{opener}': the {what} opened here is still open at {stop}", hint)
        hint = f"separate its items with ', '; quote an item that holds ':', '{opener}' or '{closer}'"
        if "{{" in src.line(line):
            hint = _QUOTE_TEMPLATE
        got = _describe_token(found.group(2))
        if found.group(2) in ("']'", "'}'"):  # the other kind of closer: this one is missing just before it
            return at_problem(f"missing '{closer}': the {what} opened at column {ctx_col} is still open here", hint)
        return at_problem(f"expected ',' or '{closer}' in the {what} opened at column {ctx_col}, found {got}", hint)
    if "duplicate anchor" in context:
        name = context.split("'")[1] if "'" in context else ""
        return at_problem(
            f"duplicate anchor '&{name}' (first defined at line {ctx_line}, column {ctx_col})",
            "give each anchor its own name; an alias (*name) refers to one anchor",
            len(name) + 1,
        )
    if "undefined alias" in problem:
        name = problem.split("'")[1] if "'" in problem else ""
        return at_problem(
            f"unknown alias '*{name}': no anchor '&{name}' is defined before it",
            f"put '&{name}' on the value to repeat, above this line, or write the value here",
            len(name) + 1,
        )
    if "double-quoted scalar" in context and ("escape" in problem):
        before = src.line(line)[: col - 1]
        slash = before.rfind("\\") + 1 or col
        digits = re.search(r"of (\d+) hexadecimal", problem)
        size = 2 + int(digits.group(1)) if digits else 2
        escape = src.line(line)[slash - 1 : slash - 1 + size].split('"')[0]
        if digits is None:
            message = f"unknown escape '{escape}' in a double-quoted string"
        else:
            message = f"the escape '{escape}' needs {digits.group(1)} hexadecimal digits after '{escape[:2]}'"
        return SyntaxProblem(
            line,
            slash,
            line,
            slash + max(len(escape), 1),
            message,
            "write '\\\\' for a backslash, or use single quotes, where a backslash is plain text",
        )
    if "cannot start any token" in problem:
        ch = src.line(line)[col - 1 : col]
        if ch == "\t":
            return at_problem(
                "a tab character: YAML indents and separates with spaces only",
                "replace the tab with spaces",
            )
        return at_problem(f"'{ch}' cannot start a value", f'quote the value: "{src.line(line)[col - 1 :].strip()}"')
    if problem == "mapping values are not allowed here":
        # The ':' ends a plain scalar that is not a key. When that scalar begins its line (`provider scripted`
        # then `reply: ...` below, or `name {type: string}`), the line lacks the ':' after its first word.
        scalar = _last_scalar(scanned())
        if scalar is not None and scalar.plain:
            k_line, k_col = scalar.start_mark.line + 1, scalar.start_mark.column + 1
            if not src.line(k_line)[: k_col - 1].replace("-", " ").strip():
                return _missing_colon(src, k_line, k_col)
        text_line = src.line(line)
        head = text_line[: col - 1]
        if ": " in head or head.rstrip().endswith(":") or head.lstrip().startswith("- "):
            value = text_line[head.index(": ") + 2 :].strip() if ": " in head else text_line[col - 1 :].strip()
            return at_problem(
                "':' followed by a space is not allowed inside a plain value",
                f'quote the value: "{value}"' if value else "quote the value",
            )
        start = src.indentation(line) + 1
        key_column, key_line = next(((c, n) for c, n in _levels(src, line) if c < start), (1, 1))
        return SyntaxProblem(
            line,
            start,
            line,
            col + 1,
            f"this line is indented more than the key on line {key_line} (column {key_column}), so it continues "
            "that key's value, where ':' is not allowed",
            f"if it is the next key, indent it to column {key_column}, like line {key_line}",
        )
    if found is not None and found.group(1) == "<block end>" and line <= src.last:
        token = found.group(2)
        text_line = src.line(line)
        stripped = text_line.lstrip(" ")
        if token == "'?'" and re.match(r"-[^\s-]", stripped):
            return at_problem("'-' starts a list item only when a space follows it", "write '- ' (a dash, a space)")
        if token == "'<block mapping start>'":
            # `provider scripted  # a comment` then `reply: ...` below it: the line above lacks its ':', so the
            # mapping below it looks more indented than the block it is in.
            above = _line_above(src, line)
            if above is not None:
                code = _without_comment(src.line(above))
                key = _PLAIN_WORDS.match(code)
                if key is not None and ":" not in code and len(key.group(1)) <= col - 1:
                    return _missing_colon(src, above, key.start(2) + 1)
        if token in ("'<block mapping start>'", "'<block sequence start>'") or (
            token == "'?'" and col == src.indentation(line) + 1
        ):
            levels = _levels(src, line)
            if levels and col not in [c for c, _ in levels]:
                return SyntaxProblem(
                    line,
                    col,
                    line,
                    col + 1,
                    f"bad indentation: column {col} continues no block above it ({_blocks(levels)})",
                    "indent the lines of one block to the same column, with spaces",
                )
        if token == "'<scalar>'" and col > src.indentation(line) + 1:
            hint = 'put the whole value in one pair of quotes, e.g. "x" y becomes "x y"'
            return at_problem("unexpected text after the value", _QUOTE_TEMPLATE if "{{" in text_line else hint)
        if token in ("']'", "'}'"):
            return at_problem(f"unexpected {token}: nothing is open for it to close", "remove it, or quote the value")
        if token == "'-'":
            return at_problem(
                "a list item where a key is expected",
                "put the list under a key (key:, then '  - item' indented below it), or write 'key: value'",
            )
    if "expected a single document" in context:
        return at_problem(
            "a second YAML document: a workflow file holds one",
            "remove the '---' line and what follows it, or split the file in two",
            3,
        )
    # Not recognised: PyYAML's words, at its marks, never past the last line.
    message = f"YAML syntax error: {problem}" if not context else f"YAML syntax error: {problem} ({context})"
    hint = "fix the YAML syntax at this position"
    if "{{" in src.line(line) or "{{" in src.line(ctx_line):
        hint = _QUOTE_TEMPLATE
    if line > src.last:
        if exc.context_mark is not None:
            line, col = ctx_line, ctx_col
        else:
            line = src.last
            col = len(src.line(line)) + 1
    if found is not None:
        expected, got = _describe_token(found.group(1)), _describe_token(found.group(2))
        message = f"YAML syntax error: expected {expected}, found {got}"
        if context:
            message = f"{message} ({context})"
    return SyntaxProblem(line, col, line, col + 1, message, hint)
