"""smtpctl audit: read the append-only audit trail."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from smtpctl.cli.options import Count, CsvOption, JsonOption
from smtpctl.cli.output import details_text, fmt, render_list
from smtpctl.cli.state import store_of
from smtpctl.core.directory.audit import audit_entries


def audit_command(
    ctx: typer.Context,
    since: Annotated[Optional[str], typer.Option("--since", help="From this date (store zone) or ISO time.")] = None,
    until: Annotated[Optional[str], typer.Option("--until", help="Up to this date (inclusive) or ISO time.")] = None,
    account: Annotated[Optional[str], typer.Option("--account", help="Only changes concerning this account.")] = None,
    action: Annotated[Optional[str], typer.Option("--action", help="e.g. credential.create, or credential for all.")] = None,
    actor: Annotated[Optional[str], typer.Option("--actor", help="Only changes made by this actor.")] = None,
    limit: Annotated[int, typer.Option("--limit", click_type=Count(what="--limit"), metavar="N", help="At most this many entries (0: all).")] = 100,
    json_out: JsonOption = False,
    csv_out: CsvOption = False,
) -> None:
    """Show the audit trail, newest first."""
    output = fmt(json_out, csv_out)
    rows = audit_entries(store_of(ctx, read_only=True), since=since, until=until, account=account, action=action,
                                  actor=actor, limit=limit)
    columns = [("at", "When (UTC)"), ("actor", "Actor"), ("action", "Action"), ("object_name", "Object"),
               ("account", "Account"), ("details", "Details")]
    if output == "csv":  # every field, details as JSON
        columns = [(k, k) for k in ("id", "at", "actor", "action", "object_type", "object_name", "account", "details")]
        rows = [{**r, "details": json.dumps(r["details"], sort_keys=True)} for r in rows]
    elif output == "table":
        rows = [{**r, "details": details_text(r["details"])} for r in rows]
    render_list(rows, columns, output=output, empty="No audit entries.")
