from __future__ import annotations

import pytest

from runner.validate.check import check_file
from runner.workflow.document import LoadError, Span, load_document


def lines(problems: list) -> list[str]:
    return [p.format_line() for p in problems]


def test_positions_of_keys_and_values() -> None:
    doc = load_document("a: 1\nb:\n  c: [1, 2]\n  d: x\n", "f.yaml")
    assert doc.data == {"a": 1, "b": {"c": [1, 2], "d": "x"}}
    assert doc.keys[("b", "d")] == Span(4, 3, 4, 4)
    assert doc.values[("b", "d")] == Span(4, 6, 4, 7)
    assert doc.values[("b", "c", 1)] == Span(3, 10, 3, 11)
    assert doc.span(("b", "c", 7)) == doc.values[("b", "c")]  # missing index: nearest located parent


def test_duplicate_key_is_an_error_with_both_positions() -> None:
    with pytest.raises(LoadError) as info:
        load_document("a: 1\nb:\n  x: 1\n  x: 2\n", "f.yaml")
    assert lines(info.value.diagnostics) == [
        "f.yaml:4:3: error: duplicate key 'x' (first defined at line 3, column 3) [duplicate-key]"
    ]


def test_merge_keys_may_be_overridden_without_a_duplicate_error() -> None:
    doc = load_document("base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  y: 3\n", "f.yaml")
    assert doc.data["c"] == {"x": 1, "y": 3}


def test_python_tags_are_refused(write_wf) -> None:
    path = write_wf("version: !!python/object/apply:os.system ['true']\n")
    _, problems = check_file(path)
    assert [(p.line, p.column, p.rule) for p in problems] == [(1, 10, "yaml-syntax")]
    assert "could not determine a constructor" in problems[0].message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: [1\n", "1:4: error: unclosed '[': the list opened here is still open at the end of the file"),
        ("a:\n\tb: 1\n", "2:1: error: a tab character: YAML indents and separates with spaces only"),
        ("", "1:1: error: the file is empty [empty-file]"),
        ("# only a comment\n", "1:1: error: the file is empty [empty-file]"),
        ("- a\n- b\n", "1:1: error: a workflow must be a mapping, not a list [schema]"),
        ("just text\n", "1:1: error: a workflow must be a mapping, not a single value [schema]"),
    ],
)
def test_broken_files_get_one_located_message(write_wf, text: str, expected: str) -> None:
    path = write_wf(text)
    wf, problems = check_file(path)
    assert wf is None
    assert len(problems) == 1
    assert problems[0].format_line().startswith(f"{path}:{expected}")


def test_non_utf8_bytes_are_located(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"version: 1\nname: caf\xe9\n")
    _, problems = check_file(path)
    assert lines(problems) == [f"{path}:2:10: error: the file is not valid UTF-8 (byte 0xe9 at offset 20) [encoding]"]


def test_alias_bomb_fails_fast_with_bounded_work(monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.workflow import document as yamlpos
    from runner.workflow.limits import MAX_NODES

    text = "a: &a [x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, 10):
        prev, name = chr(96 + i), chr(97 + i)
        text += f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]\n"
    # the work counted, not timed: the values built before the loader stops (the bomb holds 9**10)
    built = 0
    build = yamlpos._Builder.build

    def counted(self, node, path, depth):  # type: ignore[no-untyped-def]
        nonlocal built
        built += 1
        assert built <= 2 * MAX_NODES, "the loader does not stop at its limit"
        return build(self, node, path, depth)

    monkeypatch.setattr(yamlpos._Builder, "build", counted)
    with pytest.raises(LoadError) as info:
        load_document(text, "bomb.yaml")
    assert built == MAX_NODES + 1
    (problem,) = info.value.diagnostics
    assert problem.rule == "yaml-too-large"
    assert problem.message == "the document expands to more than 200,000 values"


def test_deep_nesting_is_refused() -> None:
    text = "a: " + "[" * 300 + "]" * 300 + "\n"
    with pytest.raises(LoadError) as info:
        load_document(text, "deep.yaml")
    assert info.value.diagnostics[0].message == "the document nests deeper than 200 levels"
