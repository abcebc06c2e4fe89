"""Every secret runner holds, and the one redactor that keeps them out of everything runner prints or writes.

Secrets come only from the environment: the API keys named by ``api_key_env`` (models and embedders), the
user-info of the proxy URLs in ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``ALL_PROXY`` (lower case too), and the values
of headers whose names say they carry credentials. Whoever reads one registers it in :data:`SECRETS`; every
boundary where text leaves the process (the report document and each report writer, the log formatters,
messages on stderr, errors raised to the CLI) passes the text through :func:`redact`.

A secret travels in more forms than its plain text, and each is redacted:

* plain, percent-encoded (``%2F``, ``+`` for a space, either case of hex digits), JSON-escaped (``\\"``,
  ``\\/``, ``\\u00e9``, escaped again inside a nested JSON string) and split across a line fold (an HTTP header
  folded onto a continuation line, or ``\\n`` escaped in JSON), in any mix: one pattern per secret matches
  them all;
* base64: a credential's encoding inside a longer base64 text depends on where it falls modulo 3 bytes, so
  the three alignments are registered (each trimmed of the characters its neighbours would change);
* whatever the registry holds, the credentials of ``Authorization`` / ``Proxy-Authorization`` / ``api-key``
  headers echoed back (``Proxy-Authorization: Basic <token>`` becomes ``Basic [redacted]``), ``Bearer``
  tokens, and ``Basic`` tokens (those that decode to ``user:password``) are redacted by their shape.

Redaction is safe to apply twice: the placeholders (``[redacted]``, ``[api key]``, ...) match nothing.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import string
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

__all__ = ["API_KEY", "PROXY_CREDENTIALS", "REDACTED", "SECRETS", "SecretRegistry", "one_line", "redact"]

REDACTED = "[redacted]"
API_KEY = "[api key]"
PROXY_CREDENTIALS = "[proxy credentials]"
MIN_LENGTH = 6
"""Shorter values are not treated as secrets: redacting them would blank ordinary words."""
CREDENTIAL_MIN_LENGTH = 4
"""A proxy's user name or password is known to be one: redacted from 4 characters."""
PROXY_VARIABLES = ("https_proxy", "http_proxy", "all_proxy")

_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
_FOLD = r"(?:(?:\r\n|\r|\n|\\+r\\+n|\\+n|\\+r)[ \t]*)?"
_LINE_FOLD = r"(?:\r\n|\r|\n|\\+r\\+n|\\+n|\\+r)[ \t]+"
"""A header's continuation line (obs-fold: a line break then white space), raw or JSON-escaped."""
"""Between any two characters of a secret: a line fold, raw or JSON-escaped (once or more)."""
_LARGE = 1 << 16
"""Texts longer than this (whole reports) are pre-checked with two pieces per form, not all of them."""
_SECRET_HEADER = re.compile(r"(?i)key|token|secret|passw|auth|credential|cookie|signature")

_HEADER = re.compile(
    r"(?i)(\b(?:proxy-)?authorization|\bx-api-key|\bapi-key)"  # the header's name, as echoed back
    r"(\\*[\"']?[ \t]*[:=][ \t]*\\*[\"']?)"  # its separator, quoted or not (JSON, a Python dict, a header line)
    r"((?:[^\r\n\"'\\,;}\]]|\\+/|" + _LINE_FOLD + r")*)"  # its value, to the end of its (folded) line or string
)
_SCHEME = re.compile(r"(?i)\b(bearer|basic)((?:[ \t]|%20)+)((?:[A-Za-z0-9._~+=-]|\\*/)+)")


def _hex(value: int, digits: int) -> str:
    """A hex number matched in either case: ``2F`` and ``2f``."""
    return "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in f"{value:0{digits}x}")


def _char(c: str) -> str:
    """A pattern for one character of a secret in any of the forms it may travel in."""
    if c in _UNRESERVED:
        return re.escape(c)  # no encoding changes these
    alternatives = [r"\\+" if c == "\\" else r"\\*" + re.escape(c)]  # plain or JSON-escaped (\" \\ \/)
    code = ord(c)
    if code < 0x10000:
        alternatives.append(r"\\+u" + _hex(code, 4))
    else:  # a JSON surrogate pair
        high, low = 0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)
        alternatives.append(r"\\+u" + _hex(high, 4) + r"\\+u" + _hex(low, 4))
    alternatives.append("".join("%" + _hex(byte, 2) for byte in c.encode()))
    if c == " ":
        alternatives.append(r"\+")
    return "(?:" + "|".join(alternatives) + ")"


def _pieces(form: str) -> tuple[str, ...]:
    """Literal pieces of ``form`` that every encoding of it keeps: runs of unreserved characters, cut into
    chunks. A line fold can break one chunk, so a text holding the form in any shape holds one of them."""
    runs = re.findall(r"[A-Za-z0-9._~-]+", form)
    size = max(3, min(8, sum(len(r) for r in runs) // 3))
    return tuple(run[i : i + size] for run in runs for i in range(0, len(run) - size + 1, size))


def base64_cores(value: str) -> list[str]:
    """The base64 text of ``value`` as it appears inside a longer base64 encoding, at each of the three byte
    alignments: the characters that depend on ``value``'s bytes alone."""
    data = value.encode()
    cores = []
    for k in range(3):
        encoded = base64.b64encode(b"\0" * k + data).decode("ascii")
        start, end = -(-8 * k // 6), 8 * (k + len(data)) // 6
        cores.append(encoded[start:end])
    return cores


@dataclass(frozen=True, slots=True)
class _Form:
    """One form a secret can take in text (raw, quoted, encoded), and how to find it."""

    pattern: re.Pattern[str]
    pieces: tuple[str, ...]
    anchor: str
    label: str
    encoded: bool


def _basic_credential(token: str) -> str | None:
    """What a ``Basic`` token decodes to when that is ``user:password`` (so "basic checks" is left alone)."""
    token = token.replace("\\", "")
    try:
        decoded = base64.b64decode(token + "=" * (-len(token) % 4), validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return None
    return decoded if ":" in decoded else None


class SecretRegistry:
    """The secret values of this process, each with the placeholder that replaces it, and the redactor.

    Thread-safe: the log listener's thread redacts while the event loop registers keys. Registering is rare
    (once per endpoint) and rebuilds an immutable tuple of patterns; :meth:`redact` reads that tuple."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._labels: dict[str, str] = {}
        self._plain_only: set[str] = set()  # values registered without their base64 forms
        self._forms: tuple[_Form, ...] = ()

    def add(
        self, value: str | None, label: str = REDACTED, *, min_length: int = MIN_LENGTH, encoded: bool = True
    ) -> None:
        """Register ``value`` and, unless ``encoded`` is false, its base64 forms. A value registered again
        with a more specific label than ``[redacted]`` takes that label."""
        value = (value or "").strip()
        if len(value) < min_length:
            return
        with self._lock:
            known = self._labels.get(value)
            if known is not None and (known != REDACTED or label == REDACTED):
                if encoded and value in self._plain_only:
                    self._plain_only.discard(value)
                    self._rebuild()
                return
            self._labels[value] = label
            if not encoded:
                self._plain_only.add(value)
            self._rebuild()

    def add_env(self, name: str, label: str = REDACTED) -> str | None:
        """Register the value of the environment variable ``name``; returns it stripped (None if unset)."""
        value = os.environ.get(name, "").strip()
        self.add(value, label)
        return value or None

    def add_url_credentials(self, url: str | None, label: str = PROXY_CREDENTIALS) -> None:
        """Register the user-info of ``url`` (``http://user:pass@host``): the user, the password and
        ``user:password``, each as written (percent-encoded) and decoded, as a Basic credential carries it."""
        if not url or "@" not in url:
            return
        try:
            parts = urlsplit(url if "://" in url else "http://" + url)
            user, password = parts.username, parts.password
        except ValueError:
            return
        if user is None:
            return
        password = password or ""
        # decoded, as the Basic credential carries them (with its base64 forms); as written, plain only
        for decoded in (unquote(user), unquote(password), f"{unquote(user)}:{unquote(password)}"):
            self.add(decoded, label, min_length=CREDENTIAL_MIN_LENGTH)
        for written in (user, password, f"{user}:{password}"):
            self.add(written, label, min_length=CREDENTIAL_MIN_LENGTH, encoded=False)

    def add_proxy_environment(self, environ: Mapping[str, str] | None = None) -> None:
        """Register the credentials of every proxy variable set, used or not."""
        env = os.environ if environ is None else environ
        for name in PROXY_VARIABLES:
            for key in (name, name.upper()):
                self.add_url_credentials(env.get(key))

    def add_headers(self, headers: Mapping[str, str]) -> None:
        """Register the values of headers whose names say they carry credentials (``X-Api-Key``, ...)."""
        for name, value in headers.items():
            if _SECRET_HEADER.search(name):
                self.add(value)

    def _rebuild(self) -> None:
        forms: dict[str, tuple[str, bool]] = {}  # form -> (label, whether it is a base64 form)
        for value, label in self._labels.items():
            forms.setdefault(value, (label, False))
        for value, label in self._labels.items():
            if value in self._plain_only:
                continue
            for core in base64_cores(value):
                if len(core) >= MIN_LENGTH:
                    forms.setdefault(core, (label, True))
        built = []
        for form, (label, encoded) in sorted(forms.items(), key=lambda item: -len(item[0])):  # longest first
            pattern = re.compile(_FOLD.join(_char(c) for c in form))
            pieces = _pieces(form)
            built.append(_Form(pattern, pieces, max(pieces, key=len, default=""), label, encoded))
        self._forms = tuple(built)

    def _token_label(self, token: str) -> str:
        return self._labels.get(token.replace("\\", ""), REDACTED)

    def _scheme(self, match: re.Match[str]) -> str:
        scheme, space, token = match.groups()
        if scheme.lower() == "basic":
            credential = _basic_credential(token)
            if credential is None:
                return match.group(0)
            return f"{scheme}{space}{self._labels.get(credential, REDACTED)}"
        return f"{scheme}{space}{self._token_label(token)}"

    def _header(self, match: re.Match[str]) -> str:
        name, separator, value = match.groups()
        words = re.sub(_LINE_FOLD, " ", value).strip().split(None, 1)
        if not words:
            return match.group(0)
        if len(words) == 2 and words[0].isalpha():  # "Basic <token>": keep the scheme, it is no secret
            scheme, token = words[0], words[1].replace(" ", "")  # a token folded onto the next line, joined
            if token.startswith("["):
                return match.group(0)
            credential = _basic_credential(token) if scheme.lower() == "basic" else token
            return f"{name}{separator}{scheme} {self._labels.get(credential or '', REDACTED)}"
        token = words[0]
        return match.group(0) if token.startswith("[") else f"{name}{separator}{self._token_label(token)}"

    def redact(self, text: str) -> str:
        """``text`` with every registered secret, in every form, and every credential-shaped token replaced.

        In three passes: the secrets as such (so a key that holds a quote is replaced whole before a header's
        value is cut at that quote), then credential-shaped tokens (whole: a Basic token is one secret,
        whatever the alignment of the parts inside it), then the base64 forms left elsewhere."""
        large = len(text) > _LARGE
        forms = self._forms
        text = self._replace(text, [f for f in forms if not f.encoded], large)
        lower = text.lower()
        if "authorization" in lower or "api-key" in lower:
            text = _HEADER.sub(self._header, text)
        if "bearer" in lower or "basic" in lower:
            text = _SCHEME.sub(self._scheme, text)
        return self._replace(text, [f for f in forms if f.encoded], large)

    @staticmethod
    def _replace(text: str, forms: list[_Form], large: bool) -> str:
        for form in forms:
            # A whole report is checked for the longest piece of each form only (its strings were redacted
            # in full when the document was built); anything shorter for every piece, so that a line fold
            # inside one piece still leaves another to find.
            if large:
                if form.anchor and form.anchor not in text:
                    continue
            elif form.pieces and not any(piece in text for piece in form.pieces):
                continue
            text = form.pattern.sub(form.label, text)
        return text

    __call__ = redact

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(self._labels)

    def snapshot(self) -> tuple[dict[str, str], set[str]]:
        return dict(self._labels), set(self._plain_only)

    def restore(self, snapshot: tuple[dict[str, str], set[str]]) -> None:
        """Back to a :meth:`snapshot` (tests keep one test's secrets from the next)."""
        with self._lock:
            self._labels = dict(snapshot[0])
            self._plain_only = set(snapshot[1])
            self._rebuild()


SECRETS = SecretRegistry()
"""The process's registry: secrets are values of this process's environment, whichever run read them."""


def redact(text: object) -> str:
    """``str(text)`` with every secret :data:`SECRETS` knows (and credential-shaped tokens) replaced."""
    return SECRETS.redact(text if isinstance(text, str) else str(text))


def add_all(values: Iterable[str], label: str = REDACTED) -> None:
    for value in values:
        SECRETS.add(value, label)


_LINE_BREAK = re.compile(r"[ \t]*(?:\r\n|\r|\n)\s*")


def one_line(text: str) -> str:
    """A message folded onto one line for the terminal and the log (a server's message may span several):
    lines are joined by ``; `` (by a space after a line that ends a sentence). Reports keep the whole text."""
    text = text.strip()
    if "\n" not in text and "\r" not in text:
        return text
    out: list[str] = []
    for index, piece in enumerate(_LINE_BREAK.split(text)):
        if index and out:
            out.append(" " if out[-1][-1:] in ".;:,!?" else "; ")
        out.append(piece)
    return "".join(out)
