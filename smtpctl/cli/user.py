"""smtpctl user: SMTP credentials (logins name@domain with a password)."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from smtpctl.cli.output import (CsvOption, ExistOkOption, JsonOption, YesOption, confirm_destructive, fmt, message,
                                render_list, render_record, print_json)
from smtpctl.cli.password_input import GenerateOption, PasswordFileOption, PasswordStdinOption, read_password
from smtpctl.cli.settings import render_settings
from smtpctl.cli.state import store_of
from smtpctl.cli.deferred import deferred_import
services = deferred_import("smtpctl.core.services")

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
    store = store_of(ctx)
    password = read_password(stdin=password_stdin, file=password_file, generate=generate)
    outcome = services.create_credential(store, login, password, exist_ok=exist_ok)
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
    rows = [c.as_dict() for c in services.list_credentials(store_of(ctx, read_only=True), domain=domain, account=account,
                                                            agency=agency)]
    render_list(rows, COLUMNS, output=output, empty="No SMTP credentials.")


@app.command("show")
def show(ctx: typer.Context, login: Login, json_out: JsonOption = False) -> None:
    """Show a credential and the SMTP settings to use it."""
    detail = services.credential_detail(store_of(ctx, read_only=True), login)
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
    services.get_credential(store, login)  # a typo'd login fails before the prompt
    password = read_password(stdin=password_stdin, file=password_file, generate=generate)
    outcome = services.reset_credential(store, login, password)
    _report(outcome, json_out, "reset")


@app.command("delete")
def delete(ctx: typer.Context, login: Login, yes: YesOption = False, json_out: JsonOption = False) -> None:
    """Delete a credential (asks first; --yes to skip)."""
    store = store_of(ctx)
    credential = services.get_credential(store, login)
    confirm_destructive(f"Delete SMTP credential {credential.login}? Apps using it will stop sending.", yes)
    outcome = services.delete_credential(store, login)
    if json_out:
        print_json(outcome.as_dict())
    else:
        message(f"SMTP credential {outcome.object.login} deleted.")


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
    services.get_credential(store, login)
    password = read_password(stdin=password_stdin, file=password_file, allow_generate=False, confirm=False)
    credential = services.verify_credential(store, login, password or "")
    if json_out:
        print_json({"login": credential.login, "match": True, "hash_scheme": credential.scheme})
    else:
        message(f"Password matches {credential.login}.")
