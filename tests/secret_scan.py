"""The secret-marker scan: marker secrets set in the environment, and, after a test, every file it wrote and
everything printed searched for each marker in every form a secret can travel in.

Used through the ``secret_scan`` fixture (tests/conftest.py). The forms searched: plain; percent-encoded
(``quote`` with and without ``/`` kept, ``quote_plus``, either case of hex digits); JSON-escaped (with and
without ``ensure_ascii``, and escaped twice); base64 of each secret and of ``user:password`` at each of the
three alignments it can have inside a longer base64 text (standard and URL-safe alphabets); ``Bearer <key>``;
and each of these with the text's line folds removed (a secret split across a folded line).
"""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

# Markers: unlike any real value, and holding characters that each encoding changes (/ + " @ and a space
# are percent-encoded, " is JSON-escaped), so every form differs from the plain text.
API_KEY = 'sk-marker/API+key="7Q9zR4"'
API_KEY_ENV = "RUNNER_MARKER_API_KEY"
PROXY_USER = "marker-proxy-user"
PROXY_PASSWORD = 'pr0xy p4ss/"w@rd"+x'
PROXY_ENV = "RUNNER_MARKER_PROXY"
MIN_FORM = 6  # shorter forms (a base64 core of a short value) would match by chance


def proxy_url(port: int | str, host: str = "127.0.0.1") -> str:
    """An HTTP proxy URL with the marker credentials, percent-encoded as a URL must carry them."""
    user = urllib.parse.quote(PROXY_USER, safe="")
    password = urllib.parse.quote(PROXY_PASSWORD, safe="")
    return f"http://{user}:{password}@{host}:{port}"


def base64_cores(value: bytes) -> list[str]:
    """``value``'s base64 text inside any longer base64 text, at each of the three byte alignments."""
    cores = []
    for k in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"\0" * k + value).decode()
            cores.append(encoded[-(-8 * k // 6) : 8 * (k + len(value)) // 6])
    return cores


def forms(secret: str) -> set[str]:
    """Every form of ``secret`` the scan looks for (see the module's docstring)."""
    found = {secret, f"Bearer {secret}"}
    for quoted in (
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote(secret),
        urllib.parse.quote_plus(secret),
    ):
        found.add(quoted)
        found.add(re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quoted))
    for ascii_only in (True, False):
        once = json.dumps(secret, ensure_ascii=ascii_only)[1:-1]
        found.add(once)
        found.add(json.dumps(once, ensure_ascii=ascii_only)[1:-1])
    found.update(base64_cores(secret.encode()))
    return {form for form in found if len(form) >= MIN_FORM}


_FOLD = re.compile(r"(?:\r\n|\r|\n|\\r\\n|\\n|\\r)[ \t]*")


@dataclass
class Leak:
    where: str
    secret: str
    form: str

    def __str__(self) -> str:
        return f"{self.where}: the secret {self.secret!r} as {self.form!r}"


@dataclass
class SecretScan:
    """The markers of one test and what it wrote and printed; :meth:`leaks` lists every marker found."""

    secrets: set[str] = field(default_factory=set)
    texts: list[tuple[str, str]] = field(default_factory=list)  # (where, text) printed or captured
    folders: list[Path] = field(default_factory=list)

    api_key = API_KEY
    api_key_env = API_KEY_ENV
    proxy_user = PROXY_USER
    proxy_password = PROXY_PASSWORD

    def add_secret(self, *values: str) -> None:
        self.secrets.update(v for v in values if v)

    def add_text(self, where: str, text: str | bytes | None) -> None:
        if text:
            self.texts.append((where, text.decode("utf-8", "replace") if isinstance(text, bytes) else text))

    def add_folder(self, path: Path) -> None:
        self.folders.append(path)

    @staticmethod
    def proxy_url(port: int | str) -> str:
        return proxy_url(port)

    def all_forms(self) -> dict[str, set[str]]:
        secrets = set(self.secrets)
        secrets.add(f"{PROXY_USER}:{PROXY_PASSWORD}")
        for secret in list(secrets):
            user, sep, password = secret.partition(":")
            if sep and secret not in (API_KEY,):
                secrets.update({user, password})
        return {secret: forms(secret) for secret in secrets if len(secret) >= 4}

    def files(self) -> Iterable[tuple[str, str]]:
        for folder in self.folders:
            if not folder.is_dir():
                continue
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    yield str(path), path.read_bytes().decode("utf-8", "replace")

    def leaks(self) -> list[Leak]:
        found: list[Leak] = []
        every = self.all_forms()
        for where, text in [*self.texts, *self.files()]:
            unfolded = _FOLD.sub("", text)
            for secret, secret_forms in every.items():
                for form in secret_forms:
                    if form in text or form in unfolded:
                        found.append(Leak(where, secret, form))
                        break
        return found
