"""smtpctl agency: the agencies that own sub-accounts."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from smtpctl.cli.limits import ClearOption, limit_or_clear, report_window_limit, window_option
from smtpctl.cli.options import CsvOption, ExistOkOption, JsonOption, YesOption
from smtpctl.cli.output import (
    confirm_destructive,
    dollars,
    fmt,
    print_json,
    render_credits,
    render_list,
    render_record,
    report_outcome,
    report_removal,
    report_rename,
    warning,
)
from smtpctl.cli.state import store_of
from smtpctl.core.directory.agencies import (
    add_agency,
    agency_removal_check,
    list_agencies,
    remove_agency,
    rename_agency,
)

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
    outcome = add_agency(store_of(ctx), name, exist_ok=exist_ok)
    report_outcome("Agency", outcome, repr(outcome.object.name), json_out)


@app.command("list")
def list_(ctx: typer.Context, json_out: JsonOption = False, csv_out: CsvOption = False) -> None:
    """List agencies with their account and domain counts."""
    output = fmt(json_out, csv_out)
    rows = list_agencies(store_of(ctx, read_only=True))
    render_list(rows, COLUMNS, output=output, empty="No agencies yet. Add one with: smtpctl agency add NAME")


@app.command("show")
def show(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Agency name.")],
         json_out: JsonOption = False) -> None:
    """Show an agency, its accounts and domains, and the credits each account spent this month and last."""
    from smtpctl.core.reporting import credits  # here: ~4 ms of start-up (billing), for show only

    view = credits.agency_view(store_of(ctx, read_only=True), name)
    if json_out:
        print_json(view)
        return
    render_record({k: v for k, v in view.items() if k not in ("credits", "billing", "statements")}, output="table")
    render_credits(view["credits"])
    billing = view["billing"]
    sys.stdout.write(f"\nBilling: {billing['mode']}; credits {dollars(billing['credits'])}, charges to date "
                     f"{dollars(billing['charges'])}, balance {dollars(billing['balance_rounded'])}"
                     + (f" (warns below {dollars(billing['warn_below'])})" if billing["warn_below"] else "") + "\n")
    if view["statements"]:
        sys.stdout.write("Statements: " + ", ".join(f"{s['number']} ({s['month']}, {dollars(s['total'])})"
                                                    for s in view["statements"]) + "\n")
    for notice in billing["warnings"]:
        warning(notice)


@app.command("set-limit")
def set_limit(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Agency name.")],
    limit: Annotated[Optional[str], typer.Argument(help="Emails per month, all the agency's accounts together.")] = None,
    window: Annotated[str, window_option("month", "month")] = "month",
    clear: ClearOption = False,
    json_out: JsonOption = False,
) -> None:
    """Set an agency's monthly email limit (its accounts together); --clear removes it.

    Reaching it refuses its accounts' mail until the month ends; it deletes nothing.
    """
    from smtpctl.core.directory.limits import set_window_limit  # here: ~5 ms of start-up (credentials, windows)

    report_window_limit(set_window_limit(store_of(ctx), "agency", name, window, limit_or_clear(limit, clear)),
                        json_out)


@app.command("rename")
def rename(
    ctx: typer.Context,
    old: Annotated[str, typer.Argument(help="The agency's name now.")],
    new: Annotated[str, typer.Argument(help="Its new name (not taken by another agency).")],
    json_out: JsonOption = False,
) -> None:
    """Rename an agency; its accounts, domains and usage history follow."""
    outcome = rename_agency(store_of(ctx), old, new)
    report_rename("Agency", outcome, json_out)


def remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Agency name.")],
    yes: YesOption = False,
    json_out: JsonOption = False,
) -> None:
    """Remove an agency that owns nothing and has no usage history (asks first; --yes to skip)."""
    store = store_of(ctx)
    agency = agency_removal_check(store, name)
    confirm_destructive(f"Remove agency {agency.name!r}?", yes)
    outcome = remove_agency(store, name)
    report_removal("Agency", outcome, json_out)


app.command("remove")(remove)
app.command("delete", hidden=True)(remove)  # the other verb, for people who type it

