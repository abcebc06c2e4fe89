"""Jinja2 templates rendered in the sandbox, with undefined names as errors located in the YAML file.

Templates see only what the engine passes (``inputs``, ``stages``, ``prev``, ``vars``, ``agent``, ``run``,
``input``), never the environment. Text without any ``{{``/``{%``/``{#`` is returned as is, without Jinja.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from runner.errors import TemplateError
from runner.spec.records import TemplateSrc


@cache
def environment() -> Any:
    from jinja2 import StrictUndefined  # noqa: PLC0415 - imported on first use: validate's cold start
    from jinja2.sandbox import ImmutableSandboxedEnvironment  # noqa: PLC0415

    return ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


def is_constant(text: str) -> bool:
    return "{{" not in text and "{%" not in text and "{#" not in text


class Template:
    """A compiled template; ``render`` raises :class:`TemplateError` naming the file position."""

    __slots__ = ("src", "_template", "_constant")

    def __init__(self, src: TemplateSrc) -> None:
        from jinja2 import TemplateSyntaxError  # noqa: PLC0415

        self.src = src
        self._constant: str | None = src.text if is_constant(src.text) else None
        self._template: Any = None
        if self._constant is None:
            try:
                self._template = environment().from_string(src.text)
            except TemplateSyntaxError as exc:
                raise TemplateError(
                    f"{src.loc_of_line(exc.lineno or 1)}: template syntax error: {exc.message}"
                ) from None

    def render(self, context: Mapping[str, Any]) -> str:
        if self._constant is not None:
            return self._constant
        try:
            out: str = self._template.render(context)
        except Exception as exc:  # noqa: BLE001 - any failure inside a user's template is the user's to fix
            raise TemplateError(f"{self._where(exc)}: template error: {_describe(exc)}") from None
        return out

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        """The value of a template that is a single ``{{ expression }}`` (for ``for_each``), else its text."""
        text = self.src.text.strip()
        if self._constant is None and text.startswith("{{") and text.endswith("}}") and text.count("{{") == 1:
            try:
                expr = environment().compile_expression(text[2:-2], undefined_to_none=False)
                return expr(**context)
            except Exception as exc:  # noqa: BLE001 - as in render
                raise TemplateError(f"{self._where(exc)}: template error: {_describe(exc)}") from None
        return self.render(context)

    def _where(self, exc: BaseException) -> str:
        lineno = 1
        tb = exc.__traceback__
        while tb is not None:  # Jinja maps template frames to '<template>' with the template's line
            if tb.tb_frame.f_code.co_filename == "<template>":
                lineno = tb.tb_lineno
            tb = tb.tb_next
        return str(self.src.loc_of_line(lineno))


def _describe(exc: BaseException) -> str:
    from jinja2 import UndefinedError  # noqa: PLC0415
    from jinja2.exceptions import SecurityError  # noqa: PLC0415

    if isinstance(exc, UndefinedError):
        return f"{exc.message}"
    if isinstance(exc, SecurityError):
        return f"unsafe operation refused by the sandbox: {exc}"
    return f"{type(exc).__name__}: {exc}"
