"""smtpctl usage: record and import messages, today's status, reports."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer

from smtpctl.cli.output import CsvOption, JsonOption, _console, fmt, message, print_json, render_list, warning
from smtpctl.cli.state import store_of
from smtpctl.cli.deferred import deferred_import
rules = deferred_import("smtpctl.core.rules")
usage = deferred_import("smtpctl.core.usage")
from smtpctl.core.errors import InvalidInput

app = typer.Typer(help="Usage: record and import messages, check today's count, report usage and cost.",
                  no_args_is_help=True)

Addresses = Optional[list[str]]


def tell_crossings(crossings) -> None:
    """Tell the operator, on stderr, about every account that went over its limit."""
    for c in crossings:
        if c.enforced:
            revoked = (f"revoked {len(c.revoked_credentials)} credential{'s' if len(c.revoked_credentials) != 1 else ''}"
                       f"{': ' + ', '.join(c.revoked_credentials) if c.revoked_credentials else ''}")
            warning(f"account {c.account} went over its daily limit on {c.day} ({c.emails:,} of {c.limit:,} emails): "
                    f"{revoked}; credential creation is blocked until an operator runs "
                    f"'smtpctl account unblock {c.account}'")
        else:
            warning(f"account {c.account} went over its daily limit on {c.day} ({c.emails:,} of {c.limit:,} emails), "
                    "a day that is already over: recorded and billed, not enforced")


@app.command("record")
def record(
    ctx: typer.Context,
    user: Annotated[Optional[str], typer.Option("--user", help="Sending credential's login (outbound).",
                                                metavar="LOGIN@DOMAIN")] = None,
    inbound: Annotated[bool, typer.Option("--inbound", help="An inbound message (billed, not limited).")] = False,
    domain: Annotated[Optional[str], typer.Option("--domain", help="Receiving domain (inbound).")] = None,
    to: Annotated[Addresses, typer.Option("--to", help="A To address (repeatable).")] = None,
    cc: Annotated[Addresses, typer.Option("--cc", help="A Cc address (repeatable).")] = None,
    bcc: Annotated[Addresses, typer.Option("--bcc", help="A Bcc address (repeatable).")] = None,
    recipients: Annotated[Optional[int], typer.Option("--recipients", help="A count instead of addresses.")] = None,
    at: Annotated[Optional[str], typer.Option("--at", help="When (ISO 8601; default now; no offset = store zone).")] = None,
    source_id: Annotated[Optional[str], typer.Option("--id", help="Source message or queue id; recorded once.")] = None,
    json_out: JsonOption = False,
) -> None:
    """Record one message: its sender and its To, Cc and Bcc recipients."""
    from smtpctl.core.ingest import build_input

    store = store_of(ctx)
    item = build_input(direction="inbound" if inbound else "outbound", user=user, domain=domain, to=to, cc=cc,
                       bcc=bcc, recipients=recipients, at=at, source_id=source_id, default_tz=usage.store_zone(store))
    # Asked before recording: a message that crosses the limit revokes the credentials.
    no_credential = item.direction == "outbound" and usage.sender_status(store, item.user or "") == "revoked"
    result = usage.record_usage(store, item)
    revoked = sorted({login for c in result.crossings for login in c.revoked_credentials})
    if json_out:
        print_json({
            "status": "recorded" if result.recorded else "duplicate",
            "event": result.events[0] if result.events else None,
            "limit_exceeded": any(c.enforced for c in result.crossings),
            "revoked_credentials": revoked,
            "crossings": [c.as_dict() for c in result.crossings],
        })
    elif result.recorded:
        event = result.events[0]
        who = event["user"] or event["domain"]
        message(f"Recorded 1 {event['direction']} message ({event['emails']} email{'s' if event['emails'] != 1 else ''}) "
                f"for {who} on {event['day']}.")
    else:
        message(f"Already recorded: a message with id {source_id!r} is in the store; nothing was added.")
    if no_credential and result.recorded:
        event = result.events[0]
        warning(f"there is no SMTP credential {event['user']} (never created, or deleted or revoked); the message "
                f"was recorded and billed to account {event['account']}, which owns {event['domain']}")
    tell_crossings(result.crossings)


class ImportFormat(str, Enum):
    jsonl = "jsonl"
    csv = "csv"
    postfix = "postfix"


def _lines(handle, position: list[int]) -> Iterator[str]:
    for raw in handle:
        position[0] += len(raw)
        yield raw.decode("utf-8", errors="replace")


@app.command("import")
def import_(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="A file, or - for stdin.", metavar="FILE|-")],
    input_format: Annotated[ImportFormat, typer.Option("--format", help="jsonl, csv or postfix (a mail log).")] = ImportFormat.jsonl,
    strict: Annotated[bool, typer.Option("--strict", help="Fail on the first bad line; keep nothing of its batch.")] = False,
    year: Annotated[Optional[int], typer.Option("--year", help="postfix: the log's year (syslog lines have none).")] = None,
    log_timezone: Annotated[Optional[str], typer.Option("--log-timezone", help="postfix: the log's time zone (default: the store's).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=100_000, help="Messages per transaction.")] = rules.IMPORT_BATCH_SIZE,
    json_out: JsonOption = False,
) -> None:
    """Import messages from JSONL, CSV or a Postfix mail log."""
    from zoneinfo import ZoneInfo

    from smtpctl.core import ingest, rules

    store = store_of(ctx)
    zone = usage.store_zone(store)
    if source == "-":
        handle, size = sys.stdin.buffer, None
    else:
        path = Path(source)
        try:
            handle, size = open(path, "rb"), path.stat().st_size
        except OSError as exc:
            raise InvalidInput(f"cannot read {source}: {exc.strerror}") from None
    position = [0]
    lines = _lines(handle, position)
    parser = None
    if input_format is ImportFormat.jsonl:
        items = ingest.read_jsonl(lines, zone)
    elif input_format is ImportFormat.csv:
        items = ingest.read_csv(lines, zone)
    else:
        log_zone = ZoneInfo(rules.validate_timezone(log_timezone)) if log_timezone else zone
        parser = ingest.PostfixLog(year=year, log_tz=log_zone)
        items = parser.feed(lines)
    progress = None
    if size and sys.stderr.isatty():
        from rich.progress import Progress

        progress = Progress(transient=True, console=_console(stderr=True))
        task = progress.add_task(f"Importing {source}", total=size)
        progress.start()
    try:
        summary = usage.import_usage(store, items, strict=strict, batch_size=batch_size,
                                     progress=(lambda _n: progress.update(task, completed=position[0])) if progress else None)
    finally:
        if progress:
            progress.stop()
        if source != "-":
            handle.close()
    if parser is not None and parser.pending:
        summary.notes.append(f"{len(parser.pending)} authenticated transaction(s) never reached the queue "
                             "(aborted or refused at end of DATA): not counted")
    if json_out:
        print_json(summary.as_dict())
    else:
        message(f"Imported {summary.messages:,} message{'s' if summary.messages != 1 else ''} "
                f"({summary.emails:,} emails); {summary.duplicates:,} duplicate{'s' if summary.duplicates != 1 else ''} "
                f"skipped; {summary.rejected:,} line{'s' if summary.rejected != 1 else ''} rejected.")
        for bad in summary.rejected_lines:
            message(f"  line {bad['line']}: {bad['reason']}")
        if summary.rejected > len(summary.rejected_lines):
            message(f"  ... and {summary.rejected - len(summary.rejected_lines):,} more")
        for note in summary.notes:
            message(f"Note: {note}")
    tell_crossings(summary.crossings)


@app.command("status")
def status(
    ctx: typer.Context,
    account: Annotated[Optional[str], typer.Argument(help="One account (default: all).")] = None,
    json_out: JsonOption = False,
    csv_out: CsvOption = False,
) -> None:
    """Today's outbound emails against each account's daily limit."""
    output = fmt(json_out, csv_out)
    rows = usage.usage_status(store_of(ctx, read_only=True), account)
    render_list(rows, [("account", "Account"), ("day", "Day"), ("sent", "Sent"), ("limit", "Limit"),
                       ("remaining", "Left"), ("percent", "%"), ("blocked", "Blocked"),
                       ("block_reason", "Why")], output=output, empty="No accounts.")
    for row in rows:
        if row["level"] in ("limit", "over"):
            warning(f"{row['account']} has reached its daily limit ({row['sent']:,} of {row['limit']:,} emails today)")
        elif row["level"] == "warning":
            warning(f"{row['account']} has used {row['percent']}% of its daily limit "
                    f"({row['sent']:,} of {row['limit']:,} emails today)")


@app.command("report")
def report(
    ctx: typer.Context,
    since: Annotated[Optional[str], typer.Option("--since", help="First day, inclusive (default: the 1st of this month).")] = None,
    until: Annotated[Optional[str], typer.Option("--until", help="Last day, inclusive (default: today).")] = None,
    by: Annotated[Optional[list[str]], typer.Option("--by", help="Group by day, agency, account, domain, user or direction (repeatable).")] = None,
    agency: Annotated[Optional[str], typer.Option("--agency")] = None,
    account: Annotated[Optional[str], typer.Option("--account")] = None,
    domain: Annotated[Optional[str], typer.Option("--domain")] = None,
    user: Annotated[Optional[str], typer.Option("--user")] = None,
    json_out: JsonOption = False,
    csv_out: CsvOption = False,
) -> None:
    """Messages, emails and cost per day, agency, account, domain, user or direction."""
    output = fmt(json_out, csv_out)
    data = usage.usage_report(store_of(ctx, read_only=True), since=since, until=until, by=by or ["account"], agency=agency,
                              account=account, domain=domain, user=user)
    if output == "json":
        print_json(data)
        return
    metrics = [("messages", "Messages"), ("emails", "Emails"), ("outbound", "Outbound"), ("inbound", "Inbound")]
    columns = [(g, g.capitalize()) for g in data["by"]] + metrics
    if output == "csv":
        render_list(data["rows"], columns + [("cost", "cost"), ("cost_rounded", "cost_rounded")], output="csv")
        return
    rows = [dict(r, cost_display=f"${r['cost_rounded']}") for r in data["rows"]]
    if "day" in data["by"] and rows:
        peak = max(r["emails"] for r in rows) or 1
        for r in rows:
            r["bar"] = "█" * max(1, round(20 * r["emails"] / peak)) if r["emails"] else ""
    total = {**{g: "" for g in data["by"]}, **data["total"], "cost_display": f"${data['total']['cost_rounded']}"}
    total[data["by"][0]] = "Total"
    extra = [("bar", "Emails/day")] if "day" in data["by"] else []
    render_list(rows + [total], columns + [("cost_display", "Cost")] + extra, output="table",
                title=f"Usage {data['since']} to {data['until']} ({data['timezone']}) at ${data['price_per_1000']}/1,000")
