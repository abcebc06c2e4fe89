"""The sandbox templates compile and render in: Jinja2's immutable sandbox, bounded so that no template can
block the event loop (issue 21: templates are untrusted input).

Jinja's sandbox stops templates from reaching Python internals, but not from asking for a lot of work:
``{{ 9**(9**9) }}`` hung ``runner run`` at full CPU (Jinja folds constant expressions while compiling),
``'x' * 10**10`` asked for 10 GB and a loop doubling a nested list (``[ns.l, ns.l]``) builds a value whose
text is 2**60 characters long. A render runs on the event loop, so while it runs no timeout can fire. Every
way a template can build something large or spin goes through one of these bounds:

- **sizes:** a value a template builds (text by ``*``, ``+``, ``~``, ``%``, ``format``, padding and
  joining; lists and tuples by ``*`` and ``+``; the text of nested lists, counted with their repetitions)
  is at most ``MAX_LENGTH`` characters or items, checked *before* it is built; numbers have at most
  ``MAX_INT_DIGITS`` digits; ``range()`` gives at most ``MAX_RANGE`` items;
- **work:** each render may take ``MAX_STEPS`` steps (loop iterations, calls, filters, one more per
  KiB of text built or output) and ``MAX_SECONDS`` of time, whichever comes first, and its output is
  at most ``MAX_LENGTH`` characters.

The binary operators are intercepted (``intercepted_binops``), which also stops Jinja from folding them at
compile time; every filter takes the render's context, which stops Jinja from calling filters at compile
time; so compiling a template does no work that depends on its numbers. The validator runs the same checks
on the constant parts of templates (``runner.validate.rules.folding``), so a file that breaks one fails
``runner validate`` at its line and column.

Values a template only reads (inputs, stage outputs) are data, not built by the template: they are not
limited, except when a template repeats or stringifies them.

Four modules, each importing only the ones before it:

- ``fields``: the registry of data fields templates may read directly, with no Jinja in it (so that a run
  whose templates are all constant text never imports jinja2);
- ``limits``: the numbers above, :class:`~runner.sandbox.limits.TemplateLimitError` and the weigher that
  measures the text of nested values;
- ``checks``: the bound of each operation (operators, ``%`` and ``format``, ``range()``, methods of text and
  numbers, filters), refused before it runs; shared by the sandbox and the validator;
- ``environment``: Jinja's sandbox with every operator, call, filter, loop and output routed through those
  checks and charged to the render's budget.
"""
