"""smtpctl user: SMTP credentials (logins name@domain with a password)."""

from __future__ import annotations

import sys
from enum import Enum
from typing import Annotated, Optional

import typer

from smtpctl.cli.limits import ClearOption, limit_or_clear, report_window_limit, window_option
from smtpctl.cli.options import CsvOption, ExistOkOption, JsonOption, YesOption
from smtpctl.cli.output import confirm_destructive, fmt, message, print_json, render_list, render_record
from smtpctl.cli.password_input import GenerateOption, PasswordFileOption, PasswordStdinOption, read_password
from smtpctl.cli.settings import render_settings
from smtpctl.cli.state import store_of
from smtpctl.core.directory.credentials import (
    create_credential,
    credential_deletion_plan,
    credential_detail,
    delete_credentials,
    get_credential,
    list_credentials,
    reset_credential,
    verify_credential,
)
from smtpctl.core.model.errors import InvalidInput
from smtpctl.core.model.rules import parse_login
from smtpctl.core.store.paths import read_source

app = typer.Typer(help="SMTP credentials: create, list, show, reset, delete, verify.", no_args_is_help=True)

Login = Annotated[str, typer.Argument(help="The login, name@domain.", metavar="LOGIN@DOMAIN")]

COLUMNS = [
    ("login", "Login"), ("domain", "Domain"), ("account", "Account"), ("agency", "Agency"),
    ("hash_scheme", "Hash"), ("created_at", "Created (UTC)"), ("updated_at", "Updated (UTC)"),
]


def _report(outcome, json_out: bool, verb: str) -> None:
    """JSON on stdout, or a line for people; a generated password is shown once."""
    password = outcome.extra.get("password")
    if json_out:
        print_json(outcome.as_dict())
        return
    if outcome.status == "unchanged":
        message(f"SMTP credential {outcome.object.login} already exists (unchanged; password left as it is).")
        return
    message(f"SMTP credential {outcome.object.login} {verb}.")
    if password is not None:
        # The only time this secret is ever shown: data on stdout, alone on its line.
        message("Generated password (shown once; store it now):")
        sys.stdout.write(password + "\n")


@app.command("create")
def create(
    ctx: typer.Context,
    login: Login,
    password_stdin: PasswordStdinOption = False,
    password_file: PasswordFileOption = None,
    generate: GenerateOption = False,
    exist_ok: ExistOkOption = False,
    json_out: JsonOption = False,
) -> None:
    """Create an SMTP credential on a sub-account's dedicated domain."""
    parse_login(login)  # a malformed login fails before a password is asked for or read
    store = store_of(ctx)
    password = read_password(stdin=password_stdin, file=password_file, generate=generate)
    outcome = create_credential(store, login, password, exist_ok=exist_ok)
    _report(outcome, json_out, "created")


@app.command("list")
def list_(
    ctx: typer.Context,
    domain: Annotated[Optional[str], typer.Option("--domain", help="Only this domain's credentials.")] = None,
    account: Annotated[Optional[str], typer.Option("--account", help="Only this account's credentials.")] = None,
    agency: Annotated[Optional[str], typer.Option("--agency", help="Only this agency's credentials.")] = None,
    json_out: JsonOption = False,
    csv_out: CsvOption = False,
) -> None:
    """List SMTP credentials (never their passwords or hashes)."""
    output = fmt(json_out, csv_out)
    rows = [c.as_dict() for c in list_credentials(store_of(ctx, read_only=True), domain=domain, account=account,
                                                            agency=agency)]
    render_list(rows, COLUMNS, output=output, empty="No SMTP credentials.")


@app.command("show")
def show(ctx: typer.Context, login: Login, json_out: JsonOption = False) -> None:
    """Show a credential and the SMTP settings to use it."""
    detail = credential_detail(store_of(ctx, read_only=True), login)
    if json_out:
        print_json(detail)
        return
    render_record({k: v for k, v in detail.items() if k != "settings"}, output="table")
    sys.stdout.write("\n")
    render_settings(detail["settings"])


@app.command("reset")
def reset(
    ctx: typer.Context,
    login: Login,
    password_stdin: PasswordStdinOption = False,
    password_file: PasswordFileOption = None,
    generate: GenerateOption = False,
    json_out: JsonOption = False,
) -> None:
    """Set a new password for a credential."""
    store = store_of(ctx)
    get_credential(store, login)  # a typo'd login fails before the prompt
    password = read_password(stdin=password_stdin, file=password_file, generate=generate)
    outcome = reset_credential(store, login, password)
    _report(outcome, json_out, "reset")


def delete(
    ctx: typer.Context,
    logins: Annotated[list[str], typer.Argument(help="One or more logins, name@domain.", metavar="LOGIN@DOMAIN...")],
    missing_ok: Annotated[bool, typer.Option(
        "--missing-ok", help="A login that does not exist is no error (idempotent teardown).")] = False,
    yes: YesOption = False,
    json_out: JsonOption = False,
) -> None:
    """Delete credentials, all in one transaction (asks first; --yes to skip)."""
    store = store_of(ctx)
    present, _ = credential_deletion_plan(store, logins, missing_ok=missing_ok)
    if len(present) == 1:
        confirm_destructive(f"Delete SMTP credential {present[0]}? Apps using it will stop sending.", yes)
    elif present:
        confirm_destructive(f"Delete {len(present)} SMTP credentials ({', '.join(present)})? Apps using them "
                            "will stop sending.", yes)
    outcomes = delete_credentials(store, logins, missing_ok=missing_ok, expected=present)
    if json_out:
        # One login: one object, as before several could be given (CLI.md: extend, never break).
        documents = [outcome.as_dict() for outcome in outcomes]
        print_json(documents[0] if len(logins) == 1 else documents)
        return
    for outcome in outcomes:
        if outcome.status == "missing":
            message(f"SMTP credential {outcome.object.login} does not exist (unchanged).")
        else:
            message(f"SMTP credential {outcome.object.login} deleted.")


app.command("delete")(delete)
app.command("remove", hidden=True)(delete)  # the other verb, for people who type it


@app.command("set-limit")
def set_limit(
    ctx: typer.Context,
    login: Login,
    limit: Annotated[Optional[str], typer.Argument(help="Emails per window for this credential alone.")] = None,
    window: Annotated[str, window_option("hour or day", "day")] = "day",
    clear: ClearOption = False,
    json_out: JsonOption = False,
) -> None:
    """Cap one SMTP credential's emails per hour or day; --clear removes the cap.

    Reaching it refuses that credential's mail until the window resets; the account and its other credentials go
    on sending, and nothing is deleted.
    """
    from smtpctl.core.directory.limits import set_window_limit  # here: ~3 ms of start-up (windows)

    report_window_limit(set_window_limit(store_of(ctx), "credential", login, window, limit_or_clear(limit, clear)),
                        json_out)


@app.command("verify")
def verify(
    ctx: typer.Context,
    login: Login,
    password_stdin: PasswordStdinOption = False,
    password_file: PasswordFileOption = None,
    json_out: JsonOption = False,
) -> None:
    """Check a password against a credential: exit 0 on a match, 8 if not."""
    store = store_of(ctx, read_only=True)
    get_credential(store, login)
    password = read_password(stdin=password_stdin, file=password_file, allow_generate=False, confirm=False)
    credential = verify_credential(store, login, password or "")
    if json_out:
        print_json({"login": credential.login, "match": True, "hash_scheme": credential.scheme})
    else:
        message(f"Password matches {credential.login}.")


class AccountsFormat(str, Enum):
    dovecot = "dovecot"
    dms = "dms"


@app.command("import")
def import_(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="The accounts file, or - for stdin.", metavar="FILE|-")],
    accounts_format: Annotated[AccountsFormat, typer.Option(
        "--format", help="dovecot (passwd-file, user@domain:{SCHEME}hash:...) or dms "
                         "(docker-mailserver postfix-accounts.cf, user@domain|{SCHEME}hash).")],
    update: Annotated[bool, typer.Option(
        "--update", help="Replace the password of a login that exists with another hash.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")] = False,
    json_out: JsonOption = False,
) -> None:
    """Adopt logins and their password hashes from Dovecot or docker-mailserver.

    Exit 0 when every line was created, updated or unchanged, 2 when any line was
    rejected (the good lines are imported either way). Hashes are never printed.
    """
    from smtpctl.core.provisioning import adopt  # here: ~1.5 ms of start-up, for import only

    raw = read_source(source, "the accounts file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{source} is not UTF-8 text") from None
    summary = adopt.import_accounts(store_of(ctx), text, accounts_format.value, update=update, dry_run=dry_run)
    counts = summary.as_dict()
    if json_out:
        print_json(counts)
    else:
        rows = [{"line": r.line, "login": r.login, "status": ("would be " if dry_run else "") + r.status,
                 "hash_scheme": r.hash_scheme} for r in summary.lines if r.status in ("created", "updated")]
        render_list(rows, [("line", "Line"), ("login", "Login"), ("status", "Status"), ("hash_scheme", "Hash")],
                    output="table", empty="Nothing to change.")
        verb = "Plan" if dry_run else "Imported"
        message(f"{verb}: {counts['created']} created, {counts['updated']} updated, {counts['unchanged']} "
                f"unchanged, {counts['lines_rejected']} line{'s' if counts['lines_rejected'] != 1 else ''} rejected"
                f"{' (nothing was written)' if dry_run else ''}.")
        for bad in counts["rejected"]:
            message(f"  line {bad['line']}: {bad['login'] + ': ' if bad['login'] else ''}{bad['reason']}")
        if counts["lines_rejected"] > len(counts["rejected"]):
            message(f"  ... and {counts['lines_rejected'] - len(counts['rejected']):,} more")
    if counts["lines_rejected"]:
        # The last line says why the exit is 2, as usage import's does.
        rejected = counts["lines_rejected"]
        where = "in the JSON summary" if json_out else "listed above"
        rest = "nothing was written" if dry_run else "every other line was imported"
        sys.stderr.write(f"Error: {rejected:,} line{'s' if rejected != 1 else ''} rejected ({where}); {rest}\n")
        raise typer.Exit(code=2)
