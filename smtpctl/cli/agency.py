"""smtpctl agency: the agencies that own sub-accounts."""

from __future__ import annotations

from typing import Annotated

import typer

from smtpctl.cli.deferred import deferred_import
from smtpctl.cli.output import CsvOption, ExistOkOption, JsonOption, fmt, render_list, render_record, report_outcome
from smtpctl.cli.state import store_of

services = deferred_import("smtpctl.core.services")

app = typer.Typer(help="Agencies: they own sub-accounts and agency-assigned domains.", no_args_is_help=True)

COLUMNS = [("name", "Agency"), ("accounts", "Accounts"), ("domains", "Domains"), ("created_at", "Created (UTC)")]


@app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Agency name.")],
    exist_ok: ExistOkOption = False,
    json_out: JsonOption = False,
) -> None:
    """Create an agency."""
    outcome = services.add_agency(store_of(ctx), name, exist_ok=exist_ok)
    report_outcome("Agency", outcome, repr(outcome.object.name), json_out)


@app.command("list")
def list_(ctx: typer.Context, json_out: JsonOption = False, csv_out: CsvOption = False) -> None:
    """List agencies with their account and domain counts."""
    output = fmt(json_out, csv_out)
    rows = services.list_agencies(store_of(ctx, read_only=True))
    render_list(rows, COLUMNS, output=output, empty="No agencies yet. Add one with: smtpctl agency add NAME")


@app.command("show")
def show(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Agency name.")],
         json_out: JsonOption = False) -> None:
    """Show an agency, its accounts and its domains."""
    render_record(services.agency_detail(store_of(ctx, read_only=True), name), output=fmt(json_out))
