"""The one renderer: a result becomes a table, JSON or CSV on stdout.

Messages, warnings and errors go to stderr. Tables are drawn by
``smtpctl.cli.table``, imported (and rich with it) only when a table is
actually drawn, so ``--json`` runs stay light; a big table written to a file
or a pipe needs only its cell widths (``table._print_plain_table``).
Typer is not imported either (the fast path renders with this module): the
options every command shares (``JsonOption``...) are in
``smtpctl.cli.options`` and are found here too.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Sequence

from smtpctl.core.model.errors import InvalidInput

_OPTIONS = ("JsonOption", "CsvOption", "ExistOkOption", "YesOption")


def __getattr__(name: str) -> Any:
    # ``from smtpctl.cli.output import JsonOption``: the shared typer options
    # are built (typer imported) by the command modules that declare them.
    if name in _OPTIONS:
        from smtpctl.cli import options

        return getattr(options, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


Column = tuple[str, str]  # (key in the record, header for people)


def fmt(json_out: bool, csv_out: bool = False) -> str:
    if json_out and csv_out:
        raise InvalidInput("--json and --csv cannot be used together")
    return "json" if json_out else "csv" if csv_out else "table"


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        from smtpctl.core.model.clock import iso_z

        return iso_z(value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "worded"):  # a core Notice in a result's warnings: its text, worded for the shell
        return word(value)
    if hasattr(value, "as_dict"):
        return value.as_dict()
    raise TypeError(f"cannot render {type(value).__name__}")


def to_json(data: Any, *, pretty: bool = False) -> str:
    return json.dumps(data, indent=2 if pretty else None, default=_plain, ensure_ascii=False)


def print_json(data: Any) -> None:
    """The one JSON document a --json command prints on stdout: indented for a
    person at a terminal, one compact line for a pipe (json's C encoder only
    runs without indentation: 5x faster on a 5,800-row report)."""
    sys.stdout.write(to_json(data, pretty=sys.stdout.isatty()) + "\n")


def _cell(value: Any) -> str:
    kind = type(value)
    if kind is str:  # most cells: answered before the isinstance chain
        return value
    if kind is int:
        return str(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items())
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def _console(stderr: bool = False):
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else int(os.environ.get("COLUMNS", "200"))
    return Console(file=stream, width=width, no_color=bool(os.environ.get("NO_COLOR")), highlight=False,
                   soft_wrap=False, emoji=False)  # data is shown as it is: ":x:" in a note stays ":x:"


def render_list(rows: Sequence[dict[str, Any]], columns: Sequence[Column], *, output: str,
                title: str | None = None, empty: str = "Nothing to show.",
                drop: Sequence[str] | None = None) -> None:
    """Render records: an array of objects, CSV rows, or a table.

    A table never cuts an identifier (a login, a domain, a timestamp): on a
    narrow terminal free text wraps first, then low-value columns are left
    out (``drop``, first to last, else ``table._drop_order``); when the rows
    still do not fit, each row is printed as a block of ``Header: value``
    lines (``smtpctl.cli.table``, imported only when a table is drawn).
    """
    if output == "json":
        print_json(list(rows))
        return
    if output == "csv":
        import csv

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow([key for key, _ in columns])
        for row in rows:
            writer.writerow([_csv_cell(row.get(key)) for key, _ in columns])
        return
    if not rows:
        message(empty)
        return
    from smtpctl.cli import table

    table.draw(rows, columns, title=title, drop=drop)


def dollars(amount: str) -> str:
    """A money string for people: ``12.50`` -> ``$12.50``, ``-0.13`` -> ``-$0.13``."""
    return f"-${amount[1:]}" if amount.startswith("-") else f"${amount}"


def bar_scale(peak: int, length: int = 20) -> int:
    """Emails per block of a bar chart: the smallest 1, 2 or 5 times a power
    of ten that draws ``peak`` in at most ``length`` blocks."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if peak <= factor * step * length:
                return factor * step
        step *= 10


def bar(value: int, unit: int) -> str:
    """``value`` as blocks of ``unit`` (at least one block when not zero)."""
    return "█" * max(1, round(value / unit)) if value else ""


def rounding_note(rounded_rows: Iterable[str], rounded_total: str, exact_total: str) -> str | None:
    """A footnote when rows rounded to the cent one by one do not add up to
    the total rounded once (RULES: sums are taken before rounding), else None."""
    shown = sum((Decimal(r) for r in rounded_rows), Decimal("0"))
    if shown == Decimal(rounded_total):
        return None
    return (f"the rows, each rounded to the cent, add up to ${shown:.2f}; the total ${rounded_total} is the "
            f"exact sum ${exact_total} rounded once, which is what is billed.")


AGENCY_ASSIGNED_LABEL = "(agency-assigned domains)"


def render_credits(credits: dict[str, Any]) -> None:
    """An agency's credits view (``core.credits``): one row per account with
    emails and the amount to pay this month and last, a total, and a note
    when the rounded rows do not add up to the rounded total."""
    this, last = credits["this_month"], credits["last_month"]
    rows = [{
        "account": AGENCY_ASSIGNED_LABEL if r["agency_assigned"] else r["account"],
        "this_emails": r["this_month"]["emails"], "this_cost": f"${r['this_month']['cost_rounded']}",
        "last_emails": r["last_month"]["emails"], "last_cost": f"${r['last_month']['cost_rounded']}",
    } for r in credits["accounts"]]
    total = credits["total"]
    rows.append({"account": "Total", "this_emails": total["this_month"]["emails"],
                 "this_cost": f"${total['this_month']['cost_rounded']}",
                 "last_emails": total["last_month"]["emails"], "last_cost": f"${total['last_month']['cost_rounded']}"})
    sys.stdout.write("\n")
    render_list(rows, [("account", "Account"), ("this_emails", f"{this['month']}\nemails"),
                       ("this_cost", f"{this['month']}\ncost"), ("last_emails", f"{last['month']}\nemails"),
                       ("last_cost", f"{last['month']}\ncost")], output="table",
                title=f"Credits: {this['since']} to {this['until']} and {last['month']} "
                      f"({credits['timezone']}) at ${credits['price_per_1000']}/1,000")
    for key in ("this_month", "last_month"):
        note = rounding_note([r[key]["cost_rounded"] for r in credits["accounts"]], total[key]["cost_rounded"],
                             total[key]["cost"])
        if note:
            message(f"Note ({credits[key]['month']}): {note}")


def _csv_cell(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ";".join(_cell(v) for v in value)
    return _cell(value)


def render_record(record: dict[str, Any], *, output: str, fields: Iterable[Column] | None = None) -> None:
    """Render one object: a JSON object, or a two-column table for people."""
    if output == "json":
        print_json(record)
        return
    if output == "csv":
        render_list([record], list(fields or [(k, k) for k in record]), output="csv")
        return
    from rich.table import Table

    table = Table(show_header=False, show_edge=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")  # lists wrap between items; one long word folds only past the edge
    for key, label in fields or [(k, k.replace("_", " ")) for k in record]:
        table.add_row(label, _escape(_cell(record.get(key))))
    _console().print(table)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def report_outcome(kind: str, outcome: Any, label: str, json_out: bool) -> None:
    """Say what a create or change did: the object as JSON, or one line for people."""
    if json_out:
        print_json(outcome.as_dict())
    elif outcome.status == "unchanged":
        message(f"{kind} {label} already exists (unchanged).")
    else:
        message(f"{kind} {label} {outcome.status}.")


def report_rename(kind: str, outcome: Any, json_out: bool) -> None:
    """Say what a rename did: the object (with ``old_name``) as JSON, or one line."""
    if json_out:
        print_json(outcome.as_dict())
    elif outcome.status == "unchanged":
        message(f"{kind} {outcome.object.name!r} already has that name (unchanged).")
    else:
        message(f"{kind} {outcome.extra['old_name']!r} renamed to {outcome.object.name!r}; its history follows.")


def report_removal(kind: str, outcome: Any, json_out: bool) -> None:
    """Say what a removal did: the object with ``"status": "deleted"``, or one line."""
    if json_out:
        print_json(outcome.as_dict())
    else:
        message(f"{kind} {outcome.object.name!r} removed.")


def message(text: str) -> None:
    """A line for people, on stderr."""
    sys.stderr.write(text + "\n")


def shell_command(fix: Any) -> str:
    """A core fix (``model.errors.Fix``) as the command a person types: each argument shell-quoted."""
    import shlex

    return "smtpctl " + shlex.join(fix.args)


def word(item: Any) -> str:
    """A core error's or notice's text, its fix written as a shell command (the CLI words the core)."""
    if hasattr(item, "worded"):
        return item.worded(shell_command)
    return str(item)


def warning(text: Any) -> None:
    """A warning for people, on stderr: text, or a core ``Notice``."""
    sys.stderr.write(f"Warning: {word(text)}\n")


def confirm_destructive(question: str, yes: bool) -> None:
    """Ask before a destructive change; without a TTY, ``--yes`` is required."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise InvalidInput(f"{question} Refusing without --yes (no terminal to confirm on); nothing was changed")
    import typer

    if not typer.confirm(question, default=False, err=True):
        raise InvalidInput("not confirmed; nothing was changed")
