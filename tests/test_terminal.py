from __future__ import annotations

import io

from runner.terminal import TerminalSink


def test_one_stream_passes_through_and_parallel_streams_do_not_interleave_mid_line() -> None:
    out = io.StringIO()
    sink = TerminalSink(out)
    a, b = sink.for_node("n[0]", "x"), sink.for_node("n[1]", "x")
    a("hel")
    b("wor")  # waits: a owns the line
    a("lo")
    b("ld")
    assert out.getvalue() == "[n[0] x] hello"
    a("")  # a ends: b's buffered text follows under its label
    assert out.getvalue() == "[n[0] x] hello\n[n[1] x] world"
    b("!")
    b("")
    sink.close()
    assert out.getvalue() == "[n[0] x] hello\n[n[1] x] world!\n"


def test_hand_over_at_line_ends() -> None:
    out = io.StringIO()
    sink = TerminalSink(out)
    a, b = sink.for_node("a", "a"), sink.for_node("b", "b")
    a("line one\n")
    b("other")
    a("line two")
    b("")
    a("")
    sink.close()
    assert out.getvalue() == "[a] line one\n[b] other\n[a] line two\n"
