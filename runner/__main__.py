"""``python -m runner``: the signal handlers are already installed (see ``runner/__init__.py``)."""

try:
    from runner.cli import main
except KeyboardInterrupt as exc:  # a signal while the CLI is imported: nothing started yet
    import sys

    from runner import interrupts

    print(f"runner: {interrupts.describe()}", file=sys.stderr)
    raise SystemExit(interrupts.exit_code(exc)) from None

raise SystemExit(main())
