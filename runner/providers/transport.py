"""The HTTP transport every OpenAI-compatible model and embedder sends through: httpx's types over aiohttp.

**One path, measured (issue 15, "Two HTTP stacks").** The code above this module speaks httpx: it builds an
``httpx.Request``, reads an ``httpx.Response`` and catches httpx's exceptions, and it takes any
``httpx.AsyncBaseTransport`` through ``transport=``. What sends the bytes is
:class:`~runner.providers.aiohttp_transport.AiohttpTransport`: aiohttp's connection pool and HTTP/1.1 parser
behind httpx's transport interface, in a module of its own, imported only when a network transport is made
(:func:`~runner.providers.aiohttp_transport.make_transport`). There is no other built-in mode:
``bench/http_fanout.py --stock-httpx`` measured the provider on httpx's own transport (httpcore) at
4.7-35x raw aiohttp for 100 concurrent requests and 15-21x for 1,000, against 1.1-1.6x on this one
(README, "HTTP fan-out"; a loaded 2-core machine, three runs).

We keep httpx's types rather than a transport Protocol of our own because they are the seam users already
know: ``httpx.MockTransport`` fakes an endpoint in a program's tests with no server,
``httpx.AsyncHTTPTransport`` or any third-party httpx transport can be passed as is (they work inside fan-out
branches, which are real asyncio tasks), and httpx's exception tree is the vocabulary this module translates
aiohttp's errors into. Their price on the hot path is one ``httpx.Request`` and one ``httpx.Response`` per
call, about 35 us together, of the ~350 us of client CPU a JSON request costs end to end (1,000 requests to
the loopback server): a tenth, which a Protocol of our own would save but not remove (it would build its own
request and response records), against a second vocabulary for every user who fakes an endpoint.

Why not httpcore (issue 4; httpcore 1.0.9): ``AsyncConnectionPool._assign_requests_to_connections()`` runs
each time a request is queued and each time a response closes, and each run walks every connection,
building for each idle one a list of all connections (whose length, not the idle count, it then compares
with ``max_keepalive_connections``), rescans every connection twice for each queued request, and calls
``has_expired()`` (a ``poll()`` syscall) on each idle connection. Profiled with 100 concurrent requests on
100 connections: 588 runs, 5.4 million ``is_idle()`` calls and 53,000 ``poll()`` calls, 1.4 s of CPU for
100 requests of 50 ms; with 1,000 requests queued each run also grows with the queue. We write our own
transport rather than depend on ``httpx-aiohttp`` because that package maps errors imprecisely (a
connection dropped mid-stream becomes ``httpx.ConnectTimeout``, a read timeout a bare
``TimeoutException``), which would make our messages name the wrong timeout, and it reports no pool waits.

**Answers without the network (issue 19).** A wrapper's transport may answer a request itself, before any
HTTP object is built (:class:`Answering`): a replay hands its recording to the provider's parsers as an
:class:`Answer` (a JSON body as its parsed value, a :class:`Body`; a stream as its chunks). The request is an
:class:`Outgoing` (path, body, bytes) until it is sent; the endpoint makes its httpx client only then, so a
replay whose every request is in its cassette imports neither httpx nor aiohttp (about 200 ms of start-up).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # httpx's types are only named here
    import httpx


POOL_WAIT = "runner.pool_wait"
"""Response extension set by :class:`~runner.providers.aiohttp_transport.AiohttpTransport`: seconds the request
waited for a connection."""

READ_ALL = "runner.read_all"
"""Request extension: the caller reads the whole body anyway, so
:class:`~runner.providers.aiohttp_transport.AiohttpTransport` reads it in one aiohttp call and frees the
connection before returning, rather than passing it through httpx's layers of async byte-stream generators.
Other transports ignore it."""


NODE = "runner.node"
"""Request extension set by :class:`~runner.providers.endpoint.Endpoint` while a :class:`TransportWrapper` is in
use: the id of the node (stage, fan-out branch) that sends the request, for the wrapper's messages."""


@dataclass(frozen=True)
class Source:
    """Who sends through a wrapped transport: ``kind`` ``model`` or ``embeddings``, the workflow's ``name`` for
    it, its wire ``provider``, and ``base_path``, the path of its base URL (requests' paths are read relative
    to it, so a recording does not depend on the host it was made against)."""

    kind: str
    name: str
    provider: str
    base_path: str


class Outgoing:
    """One request a provider makes, the same for every attempt of it: ``path`` relative to the endpoint's base
    URL (``/chat/completions``), the JSON ``body`` as the provider built it and ``payload``, the bytes sent.
    ``memo``: what a wrapper worked out from it once (a cassette's key), kept for the request's attempts."""

    __slots__ = ("body", "memo", "path", "payload")

    def __init__(self, path: str, body: dict[str, Any], payload: bytes) -> None:
        self.path = path
        self.body = body
        self.payload = payload
        self.memo: Any = None


class Body:
    """A whole answer's body as the provider reads it: the bytes received (parsed when asked), or a value a
    cassette kept as JSON, which is handed on as it was read rather than serialised again to be parsed again.
    ``content`` (the bytes, for an error's snippet) is made from that value only when asked."""

    __slots__ = ("_content", "_value", "_parsed")

    def __init__(self, content: bytes | None = None, *, value: Any = None, parsed: bool = False) -> None:
        self._content = content
        self._value = value
        self._parsed = parsed

    @classmethod
    def of(cls, value: Any) -> Body:
        """The body whose JSON is ``value``, already parsed."""
        return cls(value=value, parsed=True)

    @property
    def parsed(self) -> bool:
        """Whether the JSON value is at hand (a kept answer), so the bytes were never seen."""
        return self._parsed

    @property
    def content(self) -> bytes:
        if self._content is None:
            self._content = json.dumps(self._value, ensure_ascii=False).encode()
        return self._content

    def json(self) -> Any:
        """The body's JSON value; ``ValueError`` when it is not JSON."""
        if not self._parsed:
            self._value = json.loads(self.content)
            self._parsed = True
        return self._value


class Answer(Protocol):
    """An answer a wrapped transport gives itself, without the network (a cassette's recording): what the
    endpoint and the provider read in place of an ``httpx.Response``. ``headers``: the kept ones, names in
    lower case. Read it once, whole (:meth:`read`) or as a stream (:meth:`stream`), each at its recorded pace
    when the replay keeps the recorded timing."""

    status: int
    headers: Mapping[str, str]

    async def read(self) -> Body: ...

    def stream(self) -> AsyncIterator[bytes]: ...


class Answering(Protocol):
    """A wrapped transport that may answer a request itself (:class:`TransportWrapper`'s ``wrap`` may return one).

    ``answers``: whether it will answer ``request`` without the network (asked before the rate limiter: such
    an answer costs no budget). ``answer``: the answer, or None when the request is to be sent through the
    transport after all (then its ``handle_async_request`` gets it, as any transport's would). The endpoint
    looks for each method on its own: a transport with only ``answers`` (the response cache) answers its hits
    through ``handle_async_request``."""

    def answers(self, request: Outgoing) -> bool: ...

    async def answer(self, request: Outgoing, node: str) -> Answer | None: ...


class Transport(Protocol):
    """What an endpoint sends through: httpx's transport interface. Every ``httpx.AsyncBaseTransport`` is one
    (a program's ``transport=``, :class:`~runner.providers.aiohttp_transport.AiohttpTransport`); a cassette's
    is one without httpx's base class, so that making it imports no HTTP library."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response: ...

    async def aclose(self) -> None: ...


class TransportWrapper(Protocol):
    """What wraps every endpoint's transport for a run (a cassette recording or replaying: ``runner.cassette``).

    ``wrap`` is called once per endpoint as it is made, with ``make_inner``, which makes the transport the
    endpoint would have used (its pool, its proxy, or the transport a program gave): call it only when the
    network is needed, so a replay opens nothing. ``needs_key``: False when requests may never reach the
    network (a replay): an endpoint whose key variable is not set then fails only if one does."""

    needs_key: bool

    def wrap(self, make_inner: Callable[[], Transport], source: Source) -> Transport: ...


_WRAPPER: contextvars.ContextVar[TransportWrapper | None] = contextvars.ContextVar(
    "runner_transport_wrapper", default=None
)


@contextlib.contextmanager
def wrapping(wrapper: TransportWrapper | None) -> Iterator[None]:
    """Endpoints made inside this block send through ``wrapper`` (nothing changes when it is None).

    A context variable rather than one more argument on every provider and embedder factory: the wrapper is
    a property of the run, not of a model, and the factories' signature is the public seam programs
    implement (``runner.providers.base.ProviderFactory``)."""
    token = _WRAPPER.set(wrapper)
    try:
        yield
    finally:
        _WRAPPER.reset(token)


def current_wrapper() -> TransportWrapper | None:
    """The wrapper set by :func:`wrapping` around this point, if any."""
    return _WRAPPER.get()
