"""Running a workflow over a dataset (issue 17): rows read as a stream (:mod:`.read`), made into inputs
(:mod:`.rows`), run through one set of shared providers at a bounded concurrency (:mod:`.batch`), their results
appended to ``results.jsonl`` (:mod:`.results`), their states kept in a SQLite ledger (:mod:`.ledger`) so a
batch resumes exactly where it stopped, and summed up in the batch report (:mod:`.report`).

``runner run WF --dataset FILE`` is ``runner/commands/dataset.py``; ``runner.each`` is the same from Python.
"""
