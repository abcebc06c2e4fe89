"""The SSE parser, fed every possible chunk boundary."""

from __future__ import annotations

import itertools

import pytest

from runner.providers.sse import ServerSentEvent, SSEDecoder

pytestmark = pytest.mark.timeout(20)

E = ServerSentEvent


def decode_all(chunks: list[bytes]) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    events.extend(decoder.flush())
    return events


def every_split(stream: bytes) -> list[list[bytes]]:
    """The stream whole, byte by byte, and cut at every pair of positions (three pieces)."""
    n = len(stream)
    splits = [[stream], [stream[i : i + 1] for i in range(n)]]
    for i, j in itertools.combinations(range(n + 1), 2):
        splits.append([stream[:i], stream[i:j], stream[j:]])
    return splits


OPENAI_STREAM = (
    b'data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n'
    b": keep-alive comment\n\n"
    + 'data: {"choices":[{"delta":{"content":"lo wörld ☃"}}]}\r\n\r\n'.encode()
    + b"event: ping\r"
    b"data: a\r"
    b"data:b\r\r"
    b"id: 7\n"
    b"retry: 1500\n"
    b"data: [DONE]\n\n"
)

OPENAI_EVENTS = [
    E('{"choices":[{"delta":{"content":"Hel"}}]}'),
    E('{"choices":[{"delta":{"content":"lo wörld ☃"}}]}'),
    E("a\nb", event="ping"),
    E("[DONE]", id="7", retry=1500),
]


def test_every_chunk_boundary_gives_the_same_events() -> None:
    for chunks in every_split(OPENAI_STREAM):
        assert decode_all(chunks) == OPENAI_EVENTS, chunks


def test_crlf_split_between_chunks_is_one_line_end() -> None:
    # "\r" ends one chunk and "\n" starts the next: one line end, not an empty line in between
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\r") == []
    assert decoder.feed(b"\ndata: y\r\n") == []
    assert decoder.feed(b"\r\n") == [E("x\ny")]


def test_bom_is_skipped_at_start_only_in_any_split() -> None:
    stream = b"\xef\xbb\xbfdata: one\n\ndata: \xef\xbb\xbftwo\n\n"
    for chunks in every_split(stream):
        assert decode_all(chunks) == [E("one"), E("\ufefftwo")], chunks


def test_fields_without_data_are_not_dispatched() -> None:
    assert decode_all([b"event: x\nid: 3\n\n: only a comment\n\n\n\n"]) == []


def test_field_rules() -> None:
    stream = (
        b"data\n\n"  # a bare field name: empty data, dispatched as ""
        b"data:  two spaces\n\n"  # only one space is stripped
        b"retry: soon\ndata: r\n\n"  # a non-numeric retry is ignored
        b"id: a\0b\ndata: i\n\n"  # an id with NUL is ignored
        b"unknown: z\ndata: u\n\n"
    )
    assert decode_all([stream]) == [E(""), E(" two spaces"), E("r"), E("i"), E("u")]


def test_last_event_id_persists() -> None:
    assert decode_all([b"id: 1\ndata: a\n\ndata: b\n\nid\ndata: c\n\n"]) == [
        E("a", id="1"),
        E("b", id="1"),
        E("c", id=""),
    ]


def test_flush_dispatches_a_final_event_without_blank_line() -> None:
    for chunks in every_split(b"data: x\n\ndata: [DONE]"):
        assert decode_all(chunks) == [E("x"), E("[DONE]")], chunks
    for chunks in every_split(b"data: x\n\ndata: [DONE]\n"):
        assert decode_all(chunks) == [E("x"), E("[DONE]")], chunks


def test_invalid_utf8_is_replaced_not_raised() -> None:
    assert decode_all([b"data: \xff\xfe ok\n\n"]) == [E("\ufffd\ufffd ok")]


def test_flush_twice_and_feed_empty() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"") == []
    assert decoder.feed(b"data: 1\n") == []
    assert decoder.flush() == [E("1")]
    assert decoder.flush() == []
