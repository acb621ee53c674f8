"""smtpctl account: sub-accounts, their daily limits and blocks."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from smtpctl.cli.deferred import deferred_import
from smtpctl.cli.output import (
    CsvOption,
    ExistOkOption,
    JsonOption,
    YesOption,
    confirm_destructive,
    fmt,
    message,
    print_json,
    render_list,
    render_record,
    report_outcome,
)
from smtpctl.cli.state import store_of

services = deferred_import("smtpctl.core.services")

app = typer.Typer(help="Sub-accounts: they own dedicated domains and SMTP credentials.", no_args_is_help=True)

COLUMNS = [
    ("name", "Account"), ("agency", "Agency"), ("effective_daily_limit", "Daily limit"),
    ("domains", "Domains"), ("blocked", "Blocked"), ("created_at", "Created (UTC)"),
]


@app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Account name.")],
    agency: Annotated[str, typer.Option("--agency", help="The agency that owns the account.")],
    daily_limit: Annotated[Optional[int], typer.Option(
        "--daily-limit", help="Emails per day (default: the store's default_daily_limit).")] = None,
    exist_ok: ExistOkOption = False,
    json_out: JsonOption = False,
) -> None:
    """Create a sub-account under an agency."""
    outcome = services.add_account(store_of(ctx), name, agency, daily_limit=daily_limit, exist_ok=exist_ok)
    report_outcome("Account", outcome, repr(outcome.object.name), json_out)


@app.command("list")
def list_(
    ctx: typer.Context,
    agency: Annotated[Optional[str], typer.Option("--agency", help="Only this agency's accounts.")] = None,
    json_out: JsonOption = False,
    csv_out: CsvOption = False,
) -> None:
    """List accounts."""
    output = fmt(json_out, csv_out)
    rows = services.list_accounts(store_of(ctx, read_only=True), agency=agency)
    render_list(rows, COLUMNS, output=output, empty="No accounts.")


@app.command("show")
def show(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Account name.")],
         json_out: JsonOption = False) -> None:
    """Show an account: agency, limit, block state and domains."""
    render_record(services.account_detail(store_of(ctx, read_only=True), name), output=fmt(json_out))


@app.command("set-limit")
def set_limit(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Account name.")],
    limit: Annotated[str, typer.Argument(help="Emails per day, or 'default' for the store's default.")],
    json_out: JsonOption = False,
) -> None:
    """Set an account's daily email limit."""
    outcome = services.set_account_limit(store_of(ctx), name, limit)
    report_outcome("Account", outcome, f"{outcome.object.name!r} daily limit", json_out)


@app.command("block")
def block(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Account name.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept with the block and in the audit trail).")],
    revoke: Annotated[bool, typer.Option("--revoke", help="Also delete all the account's SMTP credentials.")] = False,
    yes: YesOption = False,
    json_out: JsonOption = False,
) -> None:
    """Block credential creation for an account (and revoke its credentials with --revoke)."""
    from smtpctl.core import usage

    store = store_of(ctx)
    if revoke:
        account = services.get_account(store, name)
        logins = store.account_logins(account.id)
        if logins:
            confirm_destructive(f"Block {account.name} and delete its {len(logins)} SMTP credential"
                                f"{'s' if len(logins) != 1 else ''}?", yes)
    result = usage.block_account(store, name, reason, revoke=revoke)
    if json_out:
        print_json(result)
        return
    if result["status"] == "blocked":
        message(f"Credential creation blocked for {result['name']}: {result['block_reason']}.")
    else:
        message(f"{result['name']} was already blocked ({result['block_kind']}, since {result['blocked_at']}); "
                "the block is unchanged.")
    if revoke:
        n = len(result["revoked_credentials"])
        message(f"Revoked {n} SMTP credential{'s' if n != 1 else ''}"
                f"{': ' + ', '.join(result['revoked_credentials']) if n else ''}.")


@app.command("unblock")
def unblock(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Account name.")],
            json_out: JsonOption = False) -> None:
    """Lift a block (automatic or manual). Deleted credentials are not restored."""
    from smtpctl.core import usage

    result = usage.unblock_account(store_of(ctx), name)
    if json_out:
        print_json(result)
    elif result["status"] == "unblocked":
        message(f"Credential creation unblocked for {result['name']}. "
                "Credentials deleted by the block are not restored; create new ones.")
    else:
        message(f"{result['name']} is not blocked (unchanged).")
