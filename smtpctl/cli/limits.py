"""What ``account``, ``user`` and ``agency set-limit`` share: the
``--window`` and ``--clear`` options and how a limit in a window is reported."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from smtpctl.cli.output import message, print_json
from smtpctl.core.model.errors import InvalidInput
from smtpctl.core.model.rules import WINDOW_ADJECTIVE

ClearOption = Annotated[bool, typer.Option("--clear", help="Remove the limit in this window.")]


def window_option(choices: str, default: str) -> Any:
    return typer.Option("--window", metavar="WINDOW", help=f"The window: {choices} (default {default}); hours, days "
                        "and months are the store time zone's.")


def limit_or_clear(limit: str | None, clear: bool) -> str | None:
    """The limit given, or None with ``--clear``; exactly one of them."""
    if clear and limit is not None:
        raise InvalidInput("give a limit N or --clear, not both")
    if not clear and limit is None:
        raise InvalidInput("missing the limit N (or --clear to remove it)")
    return limit


def report_window_limit(result: dict[str, Any], json_out: bool) -> None:
    if json_out:
        print_json(result)
        return
    what = f"{result['scope'].capitalize()} {result['subject']!r} {WINDOW_ADJECTIVE[result['window']]} limit"

    def shown(n: int | None) -> str:
        return "none" if n is None else f"{n:,} email{'' if n == 1 else 's'}"

    if result["status"] == "unchanged":
        message(f"{what} is already {shown(result['limit'])} (unchanged).")
    elif result["status"] == "cleared":
        message(f"{what} removed (was {shown(result['previous_limit'])}).")
    else:
        message(f"{what} set to {shown(result['limit'])} (was {shown(result['previous_limit'])}); "
                f"{result['used']:,} used in this window, which resets at {result['resets_at']}.")
