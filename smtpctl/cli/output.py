"""The one renderer: a result becomes a table, JSON or CSV on stdout.

Messages, warnings and errors go to stderr; a core error or notice is worded
here (``word``: its fix written as a shell command). Tables are drawn by
``smtpctl.cli.table``, which imports rich only when it draws, so ``--json``
and ``--csv`` runs never load it.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import typer

from smtpctl.cli import table
from smtpctl.cli.table import Column
from smtpctl.core.model.clock import iso_z
from smtpctl.core.model.errors import Fix, InvalidInput, Notice, SmtpctlError


def fmt(json_out: bool, csv_out: bool = False) -> str:
    if json_out and csv_out:
        raise InvalidInput("--json and --csv cannot be used together")
    return "json" if json_out else "csv" if csv_out else "table"


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return iso_z(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Notice):  # in a result's warnings: its text, worded for the shell
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


def render_list(rows: Sequence[dict[str, Any]], columns: Sequence[Column], *, output: str,
                title: str | None = None, empty: str = "Nothing to show.",
                drop: Sequence[str] | None = None) -> None:
    """Render records: an array of objects, CSV rows, or a table.

    A table never cuts an identifier (a login, a domain, a timestamp): on a
    narrow terminal free text wraps first, then low-value columns are left
    out (``drop``, first to last, else ``table._drop_order``); when the rows
    still do not fit, each row is printed as a block of ``Header: value``
    lines (``smtpctl.cli.table``).
    """
    if output == "json":
        print_json(list(rows))
        return
    if output == "csv":
        import csv  # here, not at the top: with shlex (shell_command) ~0.6 ms of every command's start-up

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow([key for key, _ in columns])
        for row in rows:
            writer.writerow([_csv_cell(row.get(key)) for key, _ in columns])
        return
    if not rows:
        message(empty)
        return
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


LIMIT_KEYS = frozenset({"daily_limit", "old", "new"})  # None there means "the store's default"
_DEFAULT_OF = re.compile(r"default \((\d+)\)")  # how a plan names the default in force: "default (1500)"


def details_text(details: dict[str, Any] | None, default_limit: int | None = None) -> str:
    """A plan's or an audit entry's details for people: ``key=value`` pairs
    with figures as figures (``daily_limit=1,500 (default)``, ``daily_limit=3,000
    → 2,500``), a value left unset named as the default (with its number
    when ``default_limit`` is known, or the entry kept it as
    ``default_daily_limit``), yes/no for flags."""
    if not details:
        return ""
    if "default_daily_limit" in details:  # an audit entry keeps the default then in force: shown where it applied
        details = dict(details)
        default_limit = details.pop("default_daily_limit")

    def shown(key: str, value: Any) -> str:
        if value is None and key in LIMIT_KEYS:
            return f"{default_limit:,} (default)" if default_limit is not None else "default"
        if isinstance(value, str):
            match = _DEFAULT_OF.fullmatch(value)
            return f"{int(match.group(1)):,} (default)" if match else value
        if isinstance(value, int) and not isinstance(value, bool):
            return f"{value:,}"
        return table.cell_text(value)

    parts = []
    for key, value in details.items():
        if isinstance(value, list) and len(value) == 2 and key in LIMIT_KEYS:  # a change: [before, after]
            parts.append(f"{key}={shown(key, value[0])} → {shown(key, value[1])}")
        else:
            parts.append(f"{key}={shown(key, value)}")
    return ", ".join(parts)


def _csv_cell(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ";".join(table.cell_text(v) for v in value)
    return table.cell_text(value)


def render_record(record: dict[str, Any], *, output: str, fields: Iterable[Column] | None = None) -> None:
    """Render one object: a JSON object, or a two-column table for people."""
    if output == "json":
        print_json(record)
        return
    if output == "csv":
        render_list([record], list(fields or [(k, k) for k in record]), output="csv")
        return
    table.draw_record(record, fields or [(k, k.replace("_", " ")) for k in record])


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


def shell_command(fix: Fix) -> str:
    """A core fix (``model.errors.Fix``) as the command a person types: each argument shell-quoted."""
    import shlex  # here, not at the top: with csv (render_list) ~0.6 ms of every command's start-up

    return "smtpctl " + shlex.join(fix.args)


def word(item: SmtpctlError | Notice | str) -> str:
    """A core error's or notice's text, its fix written as a shell command (the CLI words the core)."""
    if isinstance(item, (SmtpctlError, Notice)):
        return item.worded(shell_command)
    return str(item)


def warning(text: Notice | str) -> None:
    """A warning for people, on stderr: text, or a core ``Notice``."""
    sys.stderr.write(f"Warning: {word(text)}\n")


def confirm_destructive(question: str, yes: bool) -> None:
    """Ask before a destructive change; without a TTY, ``--yes`` is required."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise InvalidInput(f"{question} Refusing without --yes (no terminal to confirm on); nothing was changed")
    if not typer.confirm(question, default=False, err=True):
        raise InvalidInput("not confirmed; nothing was changed")
