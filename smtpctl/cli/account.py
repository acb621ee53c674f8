"""smtpctl account: sub-accounts, their daily limits and blocks."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from smtpctl.cli.limits import ClearOption, limit_or_clear, report_window_limit, window_option
from smtpctl.cli.options import Count, CsvOption, ExistOkOption, JsonOption, YesOption
from smtpctl.cli.output import (
    confirm_destructive,
    fmt,
    message,
    print_json,
    render_list,
    render_record,
    report_outcome,
    report_removal,
    report_rename,
    warning,
)
from smtpctl.cli.state import store_of
from smtpctl.core.directory.settings import effective_settings
from smtpctl.core.model import rules
from smtpctl.core.directory.accounts import (
    account_detail,
    account_removal_check,
    add_account,
    get_account,
    list_accounts,
    remove_account,
    rename_account,
    set_account_limit,
)

app = typer.Typer(help="Sub-accounts: they own dedicated domains and SMTP credentials.", no_args_is_help=True)

COLUMNS = [
    ("name", "Account"), ("agency", "Agency"), ("effective_daily_limit", "Daily limit"),
    ("domains", "Domains"), ("blocked", "Blocked"), ("created_at", "Created (UTC)"),
]
BLOCKED_COLUMNS = [
    ("name", "Account"), ("agency", "Agency"), ("blocked_at", "Blocked since (UTC)"), ("block_kind", "By"),
    ("block_reason", "Why"),
]


@app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Account name.")],
    agency: Annotated[str, typer.Option("--agency", help="The agency that owns the account.")],
    daily_limit: Annotated[Optional[int], typer.Option(
        "--daily-limit", click_type=Count(1, rules.MAX_DAILY_LIMIT, "daily limit"), metavar="N", help="Emails per day (default: the store's default_daily_limit).")] = None,
    exist_ok: ExistOkOption = False,
    json_out: JsonOption = False,
) -> None:
    """Create a sub-account under an agency."""
    outcome = add_account(store_of(ctx), name, agency, daily_limit=daily_limit, exist_ok=exist_ok)
    report_outcome("Account", outcome, repr(outcome.object.name), json_out)


@app.command("list")
def list_(
    ctx: typer.Context,
    agency: Annotated[Optional[str], typer.Option("--agency", help="Only this agency's accounts.")] = None,
    blocked: Annotated[bool, typer.Option(
        "--blocked", help="Only blocked accounts, with since when, by whom (limit or manual) and why.")] = False,
    json_out: JsonOption = False,
    csv_out: CsvOption = False,
) -> None:
    """List accounts."""
    output = fmt(json_out, csv_out)
    rows = list_accounts(store_of(ctx, read_only=True), agency=agency, blocked=blocked)
    if output == "table":  # whether each limit is the account's own or the store's default
        rows = [{**r, "effective_daily_limit": f"{r['effective_daily_limit']:,}"
                 + (" (default)" if r["daily_limit"] is None else "")} for r in rows]
    render_list(rows, BLOCKED_COLUMNS if blocked else COLUMNS, output=output,
                empty="No blocked accounts." if blocked else "No accounts.",
                drop=("agency", "block_kind") if blocked else None)


@app.command("show")
def show(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Account name.")],
         json_out: JsonOption = False) -> None:
    """Show an account: agency, limit, block state and domains."""
    render_record(account_detail(store_of(ctx, read_only=True), name), output=fmt(json_out))


@app.command("set-limit")
def set_limit(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Account name.")],
    limit: Annotated[Optional[str], typer.Argument(
        help="Emails per window; for the day, 'default' for the store's default.")] = None,
    window: Annotated[str, window_option("hour, day or month", "day")] = "day",
    clear: ClearOption = False,
    json_out: JsonOption = False,
) -> None:
    """Set an account's email limit per day (the default), hour or month.

    Setting the daily limit warns when today's count already reaches it. The daily limit is the service's rule: crossing it revokes the account's credentials. An hourly or monthly limit
    refuses mail until the window resets and deletes nothing.
    """
    from smtpctl.core.directory.limits import set_window_limit  # here: ~5 ms of start-up (credentials, windows)

    store = store_of(ctx)
    limit = limit_or_clear(limit, clear)
    if window != "day":
        report_window_limit(set_window_limit(store, "account", name, window, limit), json_out)
        return
    outcome = set_account_limit(store, name, "default" if limit is None else limit)
    if json_out:
        print_json(outcome.as_dict())
    else:
        message(_limit_line(outcome, int(effective_settings(store)["default_daily_limit"])))
    for text in outcome.extra["warnings"]:
        warning(text)


def _limit_line(outcome, default_limit: int) -> str:
    def emails(n: int) -> str:
        return f"{n:,} email{'' if n == 1 else 's'}"

    def shown(own: int | None) -> str:
        return emails(own) if own is not None else f"the default ({emails(outcome.extra['effective_daily_limit'])})"

    account = outcome.object
    if outcome.status == "unchanged":
        return f"Account {account.name!r} daily limit is already {shown(account.daily_limit)} (unchanged)."
    previous = outcome.extra["previous_daily_limit"]
    was = emails(previous) if previous is not None else f"the default, {emails(default_limit)}"
    return f"Account {account.name!r} daily limit set to {shown(account.daily_limit)} a day (was {was})."


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
    from smtpctl.core.metering.enforcement import block_account  # here: ~2 ms of start-up (credentials)

    store = store_of(ctx)
    if revoke:
        account = get_account(store, name)
        logins = store.account_logins(account.id)
        if logins:
            confirm_destructive(f"Block {account.name} and delete its {len(logins)} SMTP credential"
                                f"{'s' if len(logins) != 1 else ''}?", yes)
    result = block_account(store, name, reason, revoke=revoke)
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
    from smtpctl.core.metering.enforcement import unblock_account  # here: ~2 ms of start-up (credentials)

    result = unblock_account(store_of(ctx), name)
    if json_out:
        print_json(result)
    elif result["status"] == "unblocked":
        message(f"Credential creation unblocked for {result['name']}. "
                "Credentials deleted by the block are not restored; create new ones.")
    else:
        message(f"{result['name']} is not blocked (unchanged).")
    for text in result["warnings"]:
        warning(text)


@app.command("rename")
def rename(
    ctx: typer.Context,
    old: Annotated[str, typer.Argument(help="The account's name now.")],
    new: Annotated[str, typer.Argument(help="Its new name (not taken by another account).")],
    json_out: JsonOption = False,
) -> None:
    """Rename an account; its domains, credentials, usage and audit history follow."""
    outcome = rename_account(store_of(ctx), old, new)
    report_rename("Account", outcome, json_out)


def remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Account name.")],
    yes: YesOption = False,
    json_out: JsonOption = False,
) -> None:
    """Remove an account that owns nothing and has no usage history (asks first; --yes to skip)."""
    store = store_of(ctx)
    account = account_removal_check(store, name)
    confirm_destructive(f"Remove account {account.name!r}?", yes)
    outcome = remove_account(store, name)
    report_removal("Account", outcome, json_out)


app.command("remove")(remove)
app.command("delete", hidden=True)(remove)  # the other verb, for people who type it
