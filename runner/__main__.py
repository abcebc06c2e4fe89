"""``python -m runner``. The signal handlers were installed as the package was imported (``runner/__init__.py``);
a signal that came since is raised by ``arm()``, inside the ``try``, as is one while the CLI is imported."""

from runner import interrupts

try:
    interrupts.arm()
    from runner.cli import main

    interrupts.disarm()  # main() arms them again inside its own try
except KeyboardInterrupt as exc:  # nothing has started yet
    import sys

    print(f"runner: {interrupts.describe()}", file=sys.stderr)
    raise SystemExit(interrupts.exit_code(exc)) from None

raise SystemExit(main())
