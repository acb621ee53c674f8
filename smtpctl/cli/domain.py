"""smtpctl domain: dedicated and agency-assigned sending domains."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from smtpctl.cli.options import CsvOption, ExistOkOption, JsonOption, YesOption
from smtpctl.cli.output import (
    confirm_destructive,
    fmt,
    message,
    print_json,
    render_list,
    render_record,
    report_outcome,
)
from smtpctl.cli.state import store_of
from smtpctl.core.directory.domains import add_domain, domain_detail, domain_removal_plan, list_domains, remove_domain

app = typer.Typer(help="Sending domains: dedicated (an account's) or agency-assigned (shared).", no_args_is_help=True)

COLUMNS = [
    ("name", "Domain"), ("unicode_name", "Unicode"), ("kind", "Kind"), ("account", "Account"),
    ("agency", "Agency"), ("credentials", "Credentials"), ("created_at", "Created (UTC)"),
]


@app.command("add")
def add(
    ctx: typer.Context,
    domain: Annotated[str, typer.Argument(help="Domain name (Unicode names are stored as IDNA A-labels).")],
    account: Annotated[Optional[str], typer.Option("--account", help="Make it a dedicated domain of this account.")] = None,
    agency: Annotated[Optional[str], typer.Option("--agency", help="Make it an agency-assigned domain.")] = None,
    exist_ok: ExistOkOption = False,
    json_out: JsonOption = False,
) -> None:
    """Add a domain: dedicated with --account, agency-assigned with --agency."""
    outcome = add_domain(store_of(ctx), domain, account=account, agency=agency, exist_ok=exist_ok)
    report_outcome("Domain", outcome, f"{outcome.object.display_name} ({outcome.object.kind})", json_out)


@app.command("list")
def list_(
    ctx: typer.Context,
    account: Annotated[Optional[str], typer.Option("--account", help="Only this account's domains.")] = None,
    agency: Annotated[Optional[str], typer.Option("--agency", help="Only this agency's domains.")] = None,
    json_out: JsonOption = False,
    csv_out: CsvOption = False,
) -> None:
    """List domains."""
    output = fmt(json_out, csv_out)
    rows = list_domains(store_of(ctx, read_only=True), account=account, agency=agency)
    render_list(rows, COLUMNS, output=output, empty="No domains.")


@app.command("show")
def show(ctx: typer.Context, domain: Annotated[str, typer.Argument(help="Domain name.")],
         json_out: JsonOption = False) -> None:
    """Show a domain: kind, owner and credentials."""
    render_record(domain_detail(store_of(ctx, read_only=True), domain), output=fmt(json_out))


def remove(
    ctx: typer.Context,
    domain: Annotated[str, typer.Argument(help="Domain name.")],
    yes: YesOption = False,
    json_out: JsonOption = False,
) -> None:
    """Remove a domain and every SMTP credential on it."""
    store = store_of(ctx)
    plan = domain_removal_plan(store, domain)
    count = len(plan["credentials"])
    if count:
        confirm_destructive(
            f"Remove domain {plan['domain']} and delete its {count} SMTP credential{'s' if count != 1 else ''}?",
            yes,
        )
    outcome = remove_domain(store, domain, expected=plan["credentials"])
    if json_out:
        print_json(outcome.as_dict())
    else:
        message(f"Domain {outcome.object.name} removed; {count} credential{'s' if count != 1 else ''} deleted.")


app.command("remove")(remove)
app.command("delete", hidden=True)(remove)  # the other verb, for people who type it
