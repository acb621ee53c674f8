"""The options many commands share, declared once: ``--json``, ``--csv``,
``--exist-ok`` and ``--yes``; and ``Count``, the type of every option that
takes a number of things."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from smtpctl.core.model import rules
from smtpctl.core.model.errors import InvalidInput

try:  # recent typer (0.28 here) vendors click as typer._click: its ParamType, not the click package's
    from typer._click.types import ParamType
except ImportError:  # pragma: no cover - an older typer (pyproject allows >= 0.20) uses the click package
    from click.types import ParamType

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
CsvOption = Annotated[bool, typer.Option("--csv", help="Print CSV with a header row on stdout.")]
ExistOkOption = Annotated[
    bool, typer.Option("--exist-ok", help="Succeed (exit 0, 'unchanged') when a matching object exists.")
]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


class Count(ParamType):
    """A count as people type it (``1500``, ``1,500``, ``1_500``), read by the
    one rule for whole numbers (``rules.whole_number``), so ``--daily-limit
    1,500`` is taken as ``set-limit NAME 1,500`` is. With ``low`` and
    ``high`` the range is checked here, worded as the core words it (``what``,
    else the option's name); without them the command's core call checks it."""

    name = "N"

    def __init__(self, low: int | None = None, high: int | None = None, what: str | None = None) -> None:
        self.low, self.high, self.what = low, high, what

    def get_metavar(self, param: Any, ctx: Any = None) -> str:
        return "N"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value  # a default
        what = self.what or (param.opts[0] if param is not None else "the count")
        if self.low is not None and self.high is not None:
            return rules.whole_number(value, what, self.low, self.high)
        try:
            return rules.whole_number(value, what, -_ANY, _ANY)
        except InvalidInput:
            raise InvalidInput(f"{what} must be a whole number, not {rules.shown(value)}") from None


_ANY = 10**30 - 1  # past what whole_number reads: only the form is checked here
