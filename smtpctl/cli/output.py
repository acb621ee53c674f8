"""The one renderer: a result becomes a table, JSON or CSV on stdout.

Messages, warnings and errors go to stderr. Rich is imported only when a
table is actually drawn, so ``--json`` runs stay light.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Iterable, Sequence

import typer

from smtpctl.core.errors import InvalidInput

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
CsvOption = Annotated[bool, typer.Option("--csv", help="Print CSV with a header row on stdout.")]
ExistOkOption = Annotated[
    bool, typer.Option("--exist-ok", help="Succeed (exit 0, 'unchanged') when a matching object exists.")
]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]

Column = tuple[str, str]  # (key in the record, header for people)


def fmt(json_out: bool, csv_out: bool = False) -> str:
    if json_out and csv_out:
        raise InvalidInput("--json and --csv cannot be used together")
    return "json" if json_out else "csv" if csv_out else "table"


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        from smtpctl.core.clock import iso_z

        return iso_z(value)
    if isinstance(value, Path):
        return str(value)
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
                   soft_wrap=False)


def render_list(rows: Sequence[dict[str, Any]], columns: Sequence[Column], *, output: str,
                title: str | None = None, empty: str = "Nothing to show.") -> None:
    """Render records: an array of objects, CSV rows, or a table."""
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
    from rich.table import Table

    table = Table(title=title, show_edge=False, header_style="bold")
    for _, header in columns:
        table.add_column(header)
    for row in rows:
        table.add_row(*[_escape(_cell(row.get(key))) for key, _ in columns])
    _console().print(table)


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
    table.add_column(style="bold")
    table.add_column()
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


def warning(text: str) -> None:
    sys.stderr.write(f"Warning: {text}\n")


def confirm_destructive(question: str, yes: bool) -> None:
    """Ask before a destructive change; without a TTY, ``--yes`` is required."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise InvalidInput(f"{question} Refusing without --yes (no terminal to confirm on); nothing was changed")
    if not typer.confirm(question, default=False, err=True):
        raise InvalidInput("not confirmed; nothing was changed")
