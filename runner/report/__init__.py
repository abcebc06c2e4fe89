"""The timing report: a run's events -> one JSON document (``schemas/report.schema.json``) -> each format's
writer. Everything derives from the document, so ``runner report FILE`` shows a saved run as the run itself did.

The modules, in the order the data flows:

* :mod:`~runner.report.layout`: the workflow's shape as the report needs it (stages, fan-outs, model limits);
* :mod:`~runner.report.spans`: events -> one span per node (queued, started, first token, attempts, waits);
* :mod:`~runner.report.critical_path`: the chain of steps that set the wall time, split into categories;
* :mod:`~runner.report.stats`: per-model latency percentiles, waits, the achieved concurrency;
* :mod:`~runner.report.advice`: the bottlenecks, one advice function per cause;
* :mod:`~runner.report.document`: all of the above as the report document (``build_report``) and its JSON;
* :mod:`~runner.report.formats`: the registry of report formats, each with its writer (``summary``, ``markdown``,
  ``trace``, ``html``), shared by the schema, ``runner run`` and ``runner report --format``;
* :mod:`~runner.report.files`: writing a run's files atomically (``write_outputs``);
* :mod:`~runner.report.nodes`: reading a document's nodes (statuses, fan-out branches folded), for the writers;
* :mod:`~runner.report.diff`: two runs of a workflow compared.

Import names from the module that defines them; this package's face holds none.
"""
