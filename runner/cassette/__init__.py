"""Record a run's model traffic once and replay it exactly (``runner run --record DIR`` / ``--replay DIR``).

A cassette is a folder of recorded answers keyed by their requests (:mod:`runner.cassette.keys`, the files:
:mod:`runner.cassette.folder`); a :class:`Tape` wraps every endpoint's transport for the run
(:mod:`runner.cassette.tape`). ``runner cassette stats|prune`` read and tidy a cassette
(:mod:`runner.cassette.stats`).
"""

from runner.cassette.folder import Cassette, CassetteError, Entry
from runner.cassette.keys import RequestKey, describe, request_key
from runner.cassette.tape import CassetteMiss, Tape

__all__ = ["Cassette", "CassetteError", "CassetteMiss", "Entry", "RequestKey", "Tape", "describe", "request_key"]
