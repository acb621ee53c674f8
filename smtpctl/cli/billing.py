"""smtpctl billing: prices in force, prepaid credits, and closed monthly statements."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from smtpctl.cli.options import CsvOption, JsonOption
from smtpctl.cli.output import AGENCY_ASSIGNED_LABEL, dollars, fmt, message, print_json, render_list, warning
from smtpctl.cli.state import store_of
from smtpctl.core.billing import credits, prices, statements
from smtpctl.core.model.errors import InvalidInput

app = typer.Typer(help="Billing: prices in force, prepaid credits, and closed monthly statements.",
                  no_args_is_help=True)

Agency = Annotated[str, typer.Argument(help="Agency name.")]
Month = Annotated[str, typer.Argument(help="A month, YYYY-MM.", metavar="YYYY-MM")]


# A negative amount ("-5") reaches the amount's own check (a clear error) instead of "No such option: -5".
AMOUNTS = {"ignore_unknown_options": True}


def _warn(outcome: Any) -> None:
    for notice in outcome.extra.get("warnings", []):
        warning(notice)


@app.command("prices")
def prices_(
    ctx: typer.Context,
    agency: Annotated[Optional[str], typer.Option("--agency", help="This agency's resale prices instead.")] = None,
    json_out: JsonOption = False,
    csv_out: CsvOption = False,
) -> None:
    """List the prices in force per 1,000 emails, oldest first (the service's, or an agency's resale prices)."""
    rows = [p.as_dict() for p in prices.history(store_of(ctx, read_only=True), agency=agency)]
    output = fmt(json_out, csv_out)
    if output == "table":
        rows = [{**row, "from": row["from"] or "(the beginning)"} for row in rows]
    render_list(rows, [("from", "From"), ("price_per_1000", "Per 1,000")], output=output,
                empty="No resale price set: the agency resells at the service's prices.")


@app.command("set-price", context_settings=AMOUNTS)
def set_price(
    ctx: typer.Context,
    price: Annotated[str, typer.Argument(help="USD per 1,000 emails, at most 4 decimals (e.g. 0.675).")],
    from_day: Annotated[str, typer.Option("--from", help="First day it applies, YYYY-MM-DD (store time zone).",
                                          metavar="DATE")],
    json_out: JsonOption = False,
) -> None:
    """Set the service's price per 1,000 emails from a day on; earlier days keep their price."""
    _price_outcome(prices.set_price(store_of(ctx), price, from_day), json_out)


@app.command("set-resale", context_settings=AMOUNTS)
def set_resale(
    ctx: typer.Context,
    agency: Agency,
    price: Annotated[str, typer.Argument(help="USD per 1,000 emails the agency charges its clients.")],
    from_day: Annotated[str, typer.Option("--from", help="First day it applies, YYYY-MM-DD.", metavar="DATE")],
    json_out: JsonOption = False,
) -> None:
    """Set the price an agency resells email to its clients at, from a day on (client statements use it)."""
    _price_outcome(prices.set_price(store_of(ctx), price, from_day, agency=agency), json_out)


def _price_outcome(outcome: Any, json_out: bool) -> None:
    if json_out:
        print_json(outcome.as_dict())
    else:
        price = outcome.object
        whose = f"{price.agency}'s resale price" if price.agency else "The price"
        was = f"; before: ${outcome.extra['was']}" if outcome.extra["was"] is not None else ""
        message(f"{whose} is ${outcome.as_dict()['price_per_1000']} per 1,000 emails from {price.from_day} on "
                f"({outcome.status}{was}).")
    _warn(outcome)


@app.command("credit", context_settings=AMOUNTS)
def credit(
    ctx: typer.Context,
    agency: Agency,
    amount: Annotated[str, typer.Argument(help="USD to add, e.g. 100 or 25.50.")],
    note: Annotated[Optional[str], typer.Option("--note", help="Kept with the entry (an invoice, who paid).")] = None,
    ref: Annotated[Optional[str], typer.Option(
        "--ref", help="A payment id: the same --ref again is a no-op, so a retried script never adds twice.")] = None,
    json_out: JsonOption = False,
) -> None:
    """Add prepaid credits to an agency (append-only ledger, audited)."""
    outcome = credits.add_credit(store_of(ctx), agency, amount, note=note, ref=ref)
    if json_out:
        print_json(outcome.as_dict())
    else:
        entry = outcome.object
        if outcome.status == "unchanged":
            message(f"Credit {entry.ref!r} is already in {entry.agency}'s ledger (unchanged); balance "
                    f"{dollars(_cents(outcome.extra['balance']))}.")
        else:
            message(f"Added {dollars(outcome.as_dict()['amount'])} to {entry.agency}; balance "
                    f"{dollars(_cents(outcome.extra['balance']))}.")
        if outcome.extra["resumed"]:
            message(f"{entry.agency} is above zero again: its accounts may send.")
    _warn(outcome)


@app.command("balance")
def balance(
    ctx: typer.Context,
    agency: Annotated[Optional[str], typer.Argument(help="One agency (default: all).")] = None,
    json_out: JsonOption = False,
    csv_out: CsvOption = False,
) -> None:
    """Credits, charges to date (each day at the price in force) and the balance, per agency."""
    found = credits.balances(store_of(ctx, read_only=True), agency)
    output = fmt(json_out, csv_out)
    rows = [b.as_dict() for b in found]
    if output == "table":
        for row in rows:
            for key in ("credits", "charges", "balance_rounded"):
                row[key] = dollars(f"{_cents(row[key])}")
            row["warn_below"] = dollars(_cents(row["warn_below"])) if row["warn_below"] else ""
    render_list(rows, [("agency", "Agency"), ("mode", "Mode"), ("credits", "Credits"), ("charges", "Charges"),
                       ("balance_rounded" if output == "table" else "balance", "Balance"),
                       ("warn_below", "Warn below")], output=output, empty="No agencies.")
    for found_balance in found:
        notice = credits.low_notice(found_balance)
        if notice:
            warning(notice)


def _cents(amount: str) -> str:
    from decimal import Decimal

    from smtpctl.core.model import money

    return format(money.to_cents(Decimal(amount)), "f")


@app.command("set-mode")
def set_mode(
    ctx: typer.Context,
    agency: Agency,
    mode: Annotated[str, typer.Argument(help="prepaid (sends while its balance is above zero) or postpaid.",
                                        metavar="prepaid|postpaid")],
    json_out: JsonOption = False,
) -> None:
    """Make an agency prepaid or postpaid (the default: billed afterwards)."""
    outcome = credits.set_mode(store_of(ctx), agency, mode)
    if json_out:
        print_json({**outcome.object.as_dict(), "status": outcome.status})
    else:
        message(f"{outcome.object.agency} is {outcome.object.mode} ({outcome.status}); balance "
                f"{dollars(_cents(outcome.object.as_dict()['balance']))}.")
    _warn(outcome)


@app.command("set-warn", context_settings=AMOUNTS)
def set_warn(
    ctx: typer.Context,
    agency: Agency,
    amount: Annotated[str, typer.Argument(help="Warn when the balance is below this (USD), or 'none'.")],
    json_out: JsonOption = False,
) -> None:
    """Warn (billing balance, usage status, agency show) when an agency's balance is below AMOUNT."""
    outcome = credits.set_warn(store_of(ctx), agency, amount)
    if json_out:
        print_json({**outcome.object.as_dict(), "status": outcome.status})
    else:
        level = outcome.object.warn_below
        message(f"{outcome.object.agency}: " + (f"warns below {dollars(_cents(str(level)))}" if level is not None
                                                else "no low-balance warning") + f" ({outcome.status}).")
    _warn(outcome)


@app.command("close")
def close(
    ctx: typer.Context,
    month: Month,
    agency: Annotated[Optional[str], typer.Option("--agency", help="Close this agency's statement only.")] = None,
    json_out: JsonOption = False,
) -> None:
    """Close an ended month: one numbered statement per agency, written once and never changed."""
    outcomes = statements.close(store_of(ctx), month, agency=agency)
    if json_out:
        print_json([o.as_dict() for o in outcomes])
        return
    for outcome in outcomes:
        summary = outcome.as_dict()
        verb = "closed" if outcome.status == "created" else "was already closed"
        message(f"Statement {summary['number']} ({summary['agency']}, {summary['month']}) {verb}: total "
                f"{dollars(summary['total'])}.")
    if not outcomes:
        message("No agency to bill for that month.")


@app.command("statement")
def statement(
    ctx: typer.Context,
    agency: Agency,
    month: Month,
    account: Annotated[Optional[str], typer.Option(
        "--account", help="The client statement of this sub-account, at the agency's resale price.")] = None,
    html: Annotated[Optional[Path], typer.Option(
        "--html", help="Write the statement as one self-contained HTML page (prints to A4 and Letter).",
        metavar="FILE")] = None,
    json_out: JsonOption = False,
    csv_out: CsvOption = False,
) -> None:
    """Print a month's statement; an open month prints a draft, marked so."""
    store = store_of(ctx, read_only=True)
    document = statements.statement(store, agency, month, account=account)
    if html is not None:
        if json_out or csv_out:
            raise InvalidInput("--html writes a file; it cannot be combined with --json or --csv")
        from smtpctl.cli.statement_html import render
        from smtpctl.core.provisioning.export import write_atomically

        daily = statements.daily_emails(store, agency, month, account=account)
        write_atomically(html, render(document, daily))
        message(f"Wrote {html} ({'draft' if document['status'] == 'draft' else document['number']}).")
        return
    output = fmt(json_out, csv_out)
    if output == "json":
        print_json(document)
        return
    lines = [{**line, "account": line["account"] or AGENCY_ASSIGNED_LABEL,
              "what": f"late: {line['day']}" if line["late"] else ""} for line in document["lines"]]
    columns = [("account", "Account"), ("what", "Note"), ("messages", "Messages"), ("outbound", "Outbound"),
               ("inbound", "Inbound"), ("emails", "Emails"), ("price_per_1000", "Per 1,000"), ("amount", "Amount")]
    if output == "csv":
        render_list(lines, columns + [("amount_exact", "amount_exact")], output="csv")
        return
    title = (f"Statement {document['number']}" if document["status"] == "closed" else "DRAFT statement (not closed)")
    who = f"{document['agency']}" + (f", client {document['account']}" if document.get("account") else "")
    render_list([{**line, "amount": dollars(line["amount"])} for line in lines], columns, output="table",
                title=f"{title}: {who}, {document['month']}", empty="No emails in this month.")
    sys.stdout.write(f"Total {dollars(document['total'])} (exact {document['total_exact']})\n")
    if document.get("opening_balance") is not None:
        sys.stdout.write(f"Opening balance {dollars(document['opening_balance'])}, credits "
                         f"{dollars(document['credits'])}, charges {dollars(document['charges'])}, closing balance "
                         f"{dollars(document['closing_balance'])}\n")
    if document.get("margin") is not None:
        sys.stdout.write(f"Resold to clients {dollars(document['resale_total'])}: margin "
                         f"{dollars(document['margin'])}\n")
    if document["status"] == "draft":
        message("This is a draft: the month is not closed (smtpctl billing close YYYY-MM closes an ended month).")


@app.command("statements")
def statements_(
    ctx: typer.Context,
    agency: Annotated[Optional[str], typer.Option("--agency", help="Only this agency's statements.")] = None,
    json_out: JsonOption = False,
    csv_out: CsvOption = False,
) -> None:
    """List the closed statements, by month."""
    rows = statements.listing(store_of(ctx, read_only=True), agency)
    output = fmt(json_out, csv_out)
    if output == "table":
        rows = [{**r, "total": dollars(r["total"]), "closing_balance": dollars(r["closing_balance"])} for r in rows]
    render_list(rows, [("number", "Number"), ("agency", "Agency"), ("month", "Month"), ("total", "Total"),
                       ("closing_balance", "Closing balance"), ("closed_at", "Closed (UTC)")], output=output,
                empty="No closed statements yet (smtpctl billing close YYYY-MM).")
