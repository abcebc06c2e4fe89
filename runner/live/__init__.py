"""A run's events as they happen, for a program: the typed events (:mod:`.events`), the feed that joins recorded
events and streamed text (:mod:`.feed`), and :class:`~runner.live.stream.RunStream` (``runner.stream``).

The engine records events by appending tuples to its :class:`~runner.events.Recorder` list and hands streamed
text to a per-node callback; neither ever waits for a reader. A stream joins the two into one ordered sequence
for one consumer, on the run's own loop:

* **Recorded events** are read from the recorder's list with a cursor (the list the report is built from, kept
  anyway), so a consumer that falls behind costs no memory of its own. While a stream is open the list is one
  that wakes a waiting consumer when an event is appended: about 0.15 µs more per event than a plain list's
  append (one method call and one attribute test); a run nobody streams records exactly as before.
* **Streamed text** is queued with the position in that list at which it arrived, so each token comes after
  the events recorded before it (a node's text after its :class:`NodeStarted`, before its
  :class:`NodeFinished`). Text a consumer has not taken yet joins the node's pending :class:`Token` when
  nothing came in between. Past ``token_buffer`` pending tokens (a consumer that cannot keep up), a node's new
  text joins its pending token whatever came in between: nothing is dropped and nothing blocks the run; the
  queue holds at most ``token_buffer`` tokens plus two per streaming node, and only the interleaving of
  different nodes' text with other events becomes coarser. Backpressure was the other choice; it would make
  the engine's hot path wait for a reader, and a slow consumer would slow the run it watches.
"""
