"""A cache of the JSON Schema verdicts: which workflow texts already passed the schema.

Importing jsonschema (with referencing, attrs and the bundled meta-schemas) costs about 80 ms, a third of a
one-call ``runner run``, and the schema check is a pure function of three things: the file's bytes, the
schema's bytes and runner's version (which fixes the YAML loader that turns one into the data checked). So,
as ruff and mypy do for their own verdicts, a text that passed is remembered under the SHA-256 of the three,
and the next ``runner validate`` or ``runner run`` of the same bytes skips the import. Only passes are
remembered (a failing file is checked again and its messages printed again), an edited file or schema has a
new key, and the semantic rules, which read other files (modules, prompt files, the environment), always run.

A verdict is an empty file named by its key in ``$RUNNER_CACHE_DIR`` (else ``$XDG_CACHE_HOME/runner``, else
``~/.cache/runner``), under ``schema-ok/``: creating it is atomic, and two processes that write the same one
agree. The folder keeps at most :data:`MAX_VERDICTS` files, the least recently used dropped first (a hit
refreshes the file's time). ``RUNNER_NO_CACHE=1`` turns it off. Every error of the file system is ignored: the
cache only ever saves work, and a read-only home costs the import, nothing else.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

MAX_VERDICTS = 512
"""Files kept in ``schema-ok/`` (each empty: the cost is one directory entry)."""

FOLDER = "schema-ok"


def cache_root() -> Path | None:
    """The user's cache folder for runner, or None when caching is off."""
    if os.environ.get("RUNNER_NO_CACHE", "") not in ("", "0"):
        return None
    explicit = os.environ.get("RUNNER_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg) / "runner"
    try:
        return Path.home() / ".cache" / "runner"
    except RuntimeError:  # no home directory to be found
        return None


def verdict_key(text: bytes, schema: bytes, version: str) -> str:
    """The key of one verdict: every input of the schema check, hashed."""
    digest = hashlib.sha256()
    for part in (version.encode(), schema, text):
        digest.update(len(part).to_bytes(8, "big"))  # length-prefixed: no two splits hash alike
        digest.update(part)
    return digest.hexdigest()


def passed_before(key: str) -> bool:
    """Whether the text with this key passed the schema before (and refresh its place in the cache)."""
    root = cache_root()
    if root is None:
        return False
    path = root / FOLDER / key
    try:
        os.utime(path)  # a hit: the file exists; its new time keeps it among the recently used
    except OSError:
        return False
    return True


def remember_pass(key: str) -> None:
    """Record that the text with this key passed; keep the folder bounded."""
    root = cache_root()
    if root is None:
        return
    folder = root / FOLDER
    try:
        folder.mkdir(parents=True, exist_ok=True)
        os.close(os.open(folder / key, os.O_CREAT | os.O_WRONLY, 0o644))
        _prune(folder)
    except OSError:
        return


def _prune(folder: Path) -> None:
    with os.scandir(folder) as entries:
        files = [entry for entry in entries if entry.is_file(follow_symlinks=False)]
    if len(files) <= MAX_VERDICTS:
        return
    files.sort(key=lambda entry: entry.stat(follow_symlinks=False).st_mtime_ns)
    for entry in files[: len(files) - MAX_VERDICTS // 2]:  # drop to half: pruning is then rare
        try:
            os.unlink(entry.path)
        except OSError:
            pass  # another process pruned it first
