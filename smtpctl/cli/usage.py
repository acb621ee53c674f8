"""smtpctl usage: record and import messages, today's status, reports."""

from __future__ import annotations

import signal
import sys
import threading
from datetime import date, timedelta
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from smtpctl.cli.options import Count, CsvOption, JsonOption, YesOption
from smtpctl.cli.output import (
    bar,
    bar_scale,
    confirm_destructive,
    fmt,
    message,
    print_json,
    render_list,
    rounding_note,
    shell_command,
    warning,
)
from smtpctl.cli.state import store_of
from smtpctl.cli.table import rich_console
from smtpctl.core.billing.credits import low_notices
from smtpctl.core.directory.settings import store_zone
from smtpctl.core.model import rules
from smtpctl.core.model.errors import Fix, InvalidInput, LimitReached
from smtpctl.core.reporting import report as usage_reports
from smtpctl.core.reporting.status import at_or_over, parse_percent, usage_status

app = typer.Typer(help="Usage: record and import messages, check today's count, report usage and cost.",
                  no_args_is_help=True)

Addresses = Optional[list[str]]


def tell_crossings(crossings) -> None:
    """Tell the operator, on stderr, about every account that went over its limit."""
    for c in crossings:
        if c.enforced:
            revoked = (f"revoked {len(c.revoked_credentials)} credential{'s' if len(c.revoked_credentials) != 1 else ''}"
                       f"{': ' + ', '.join(c.revoked_credentials) if c.revoked_credentials else ''}")
            unblock = shell_command(Fix(("account", "unblock", c.account)))
            if "'" not in unblock:  # quoted as a whole, unless its own quoting would clash
                unblock = f"'{unblock}'"
            warning(f"account {c.account} went over its daily limit on {c.day} ({c.emails:,} of {c.limit:,} emails): "
                    f"{revoked}; credential creation is blocked until an operator runs {unblock}")
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
    recipients: Annotated[Optional[int], typer.Option("--recipients", click_type=Count(what="--recipients"), metavar="N", help="A count instead of addresses.")] = None,
    at: Annotated[Optional[str], typer.Option("--at", help="When (ISO 8601; default now; no offset = store zone).")] = None,
    source_id: Annotated[Optional[str], typer.Option("--id", help="Source message or queue id; recorded once.")] = None,
    json_out: JsonOption = False,
) -> None:
    """Record one message: its sender and its To, Cc and Bcc recipients."""
    # Here, not at the top: ingest, metering.batch and metering.live are ~18 ms of start-up
    # (CPU, python -c "import ...") that usage status and usage report do not need.
    from smtpctl.core.ingest.message import build_input
    from smtpctl.core.metering.batch import record_usage
    from smtpctl.core.metering.live import sender_status

    store = store_of(ctx)
    item = build_input(direction="inbound" if inbound else "outbound", user=user, domain=domain, to=to, cc=cc,
                       bcc=bcc, recipients=recipients, at=at, source_id=source_id, default_tz=store_zone(store))
    # Asked before recording: a message that crosses the limit revokes the credentials.
    no_credential = item.direction == "outbound" and sender_status(store, item.user or "") == "revoked"
    result = record_usage(store, item)
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


class _Stop(BaseException):
    """Raised by the signal handler while the import is reading its input:
    nothing is being written then, so reading simply ends there."""


class _Interruption:
    """Ctrl-C and SIGTERM during an import: stop reading, keep what is done.

    While the input is being read, a signal ends the input at once; while a
    batch is being written, it lets that batch finish (or roll back on an
    error) and ends the input after it. Either way ``import_usage`` returns
    its summary, and the command exits 128 + the signal's number.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.reading = False
        self.last_line = 0
        self.saved: dict[int, object] = {}

    def __enter__(self) -> "_Interruption":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.saved[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.saved.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]

    def _handle(self, signum: int, _frame: object) -> None:
        if self.signum is None:
            self.signum = signum
        if self.reading:
            self.reading = False
            raise _Stop

    def guard(self, items):
        """``items`` until a signal arrives; remembers the last line handed on."""
        iterator = iter(items)
        while self.signum is None:
            try:
                self.reading = True
                item = next(iterator)
                self.reading = False
            except (StopIteration, _Stop):
                self.reading = False
                return
            self.last_line = item.line or self.last_line
            yield item


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


@app.command("import")
def import_(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="A file, or - for stdin.", metavar="FILE|-")],
    input_format: Annotated[Optional[ImportFormat], typer.Option(
        "--format", help="jsonl, csv or postfix (a mail log); default: from the file name, else jsonl.")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Fail on the first bad line; keep nothing of its batch.")] = False,
    year: Annotated[Optional[int], typer.Option("--year", min=1970, max=9999,
                                                help="postfix: the log's year (syslog lines have none).")] = None,
    log_timezone: Annotated[Optional[str], typer.Option("--log-timezone", help="postfix: the log's time zone (default: the store's).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", click_type=Count(1, 100_000, "--batch-size"), metavar="N", help="Messages per transaction.")] = rules.IMPORT_BATCH_SIZE,
    json_out: JsonOption = False,
) -> None:
    """Import messages from JSONL, CSV or a Postfix mail log.

    Exits 0 when every line was recorded or skipped as a duplicate, 2 when
    any line was rejected (the good lines are recorded all the same), and
    130 or 143 when interrupted (the batches written are kept).
    """
    # Here, not at the top: the readers, metering.batch and zoneinfo are ~18 ms of start-up
    # (CPU, python -c "import ...") that usage status and usage report do not need.
    from zoneinfo import ZoneInfo

    from smtpctl.core.ingest.csv import read_csv
    from smtpctl.core.ingest.jsonl import read_jsonl
    from smtpctl.core.ingest.lines import format_for, read_lines
    from smtpctl.core.ingest.postfix import PostfixLog
    from smtpctl.core.metering.batch import import_usage

    guessed = format_for(source) if input_format is None and source != "-" else None
    chosen = input_format.value if input_format is not None else guessed or "jsonl"
    log_zone = ZoneInfo(rules.validate_timezone(log_timezone)) if log_timezone else None
    store = store_of(ctx)
    zone = store_zone(store)
    if source == "-":
        handle, size = sys.stdin.buffer, None
    else:
        path = Path(source)
        try:
            handle, size = open(path, "rb"), path.stat().st_size
        except OSError as exc:
            raise InvalidInput(f"cannot read {source}: {exc.strerror}") from None
    if input_format is None:
        how = "from its name" if guessed else "the default; give --format csv or --format postfix for other input"
        message(f"Reading {'stdin' if source == '-' else source} as {chosen} ({how}).")
    position = [0]
    lines = read_lines(handle, position)
    parser = None
    if chosen == "jsonl":
        items = read_jsonl(lines, zone)
    elif chosen == "csv":
        items = read_csv(lines, zone)
    else:
        parser = PostfixLog(year=year, log_tz=log_zone or zone)
        items = parser.feed(lines)
    progress = None
    if size and sys.stderr.isatty():
        from rich.progress import Progress  # here, not at the top: rich.progress is ~22 ms, for a terminal only

        progress = Progress(transient=True, console=rich_console(stderr=True))
        task = progress.add_task(f"Importing {source}", total=size)
        progress.start()
    try:
        with _Interruption() as interruption:
            summary = import_usage(
                store, interruption.guard(items), strict=strict, batch_size=batch_size,
                progress=(lambda _n: progress.update(task, completed=position[0])) if progress else None)
    finally:
        if progress:
            progress.stop()
        if source != "-":
            handle.close()
    if parser is not None and parser.pending and interruption.signum is None:
        summary.notes.append(f"{len(parser.pending)} authenticated transaction(s) never reached the queue "
                             "(aborted or refused at end of DATA): not counted")
    if json_out:
        print_json(summary.as_dict())
    else:
        message(f"Imported {_plural(summary.messages, 'message')} ({_plural(summary.emails, 'email')}); "
                f"{_plural(summary.duplicates, 'duplicate')} skipped; {_plural(summary.rejected, 'line')} rejected.")
        for bad in summary.rejected_lines:
            message(f"  line {bad['line']}: {bad['reason']}")
        if summary.rejected > len(summary.rejected_lines):
            message(f"  ... and {summary.rejected - len(summary.rejected_lines):,} more")
        for note in summary.notes:
            message(f"Note: {note}")
    tell_crossings(summary.crossings)
    if interruption.signum is not None:
        name = signal.Signals(interruption.signum).name
        resume = ("" if chosen == "postfix" else
                  f" (a line with no id would be recorded again: resume after line {interruption.last_line:,})")
        sys.stderr.write(f"Error: interrupted by {name} after line {interruption.last_line:,}: "
                         f"the {_plural(summary.messages, 'message')} recorded so far are kept; "
                         f"re-running the import skips them by their ids{resume}\n")
        raise typer.Exit(128 + interruption.signum)
    if summary.rejected:
        where = "in the JSON summary" if json_out else "listed above"
        sys.stderr.write(f"Error: {_plural(summary.rejected, 'line')} rejected ({where}); "
                         "every other line was imported\n")
        raise typer.Exit(2)


@app.command("status")
def status(
    ctx: typer.Context,
    account: Annotated[Optional[str], typer.Argument(help="One account (default: all).")] = None,
    fail_at: Annotated[Optional[str], typer.Option(
        "--fail-at", metavar="PERCENT",
        help="Exit 5 when any listed account is at or over PERCENT of its daily limit (monitoring checks).")] = None,
    json_out: JsonOption = False,
    csv_out: CsvOption = False,
) -> None:
    """Today's outbound emails against each account's daily limit."""
    output = fmt(json_out, csv_out)
    threshold = parse_percent(fail_at, "--fail-at") if fail_at is not None else None
    store = store_of(ctx, read_only=True)
    rows = usage_status(store, account)
    render_list(rows, [("account", "Account"), ("day", "Day"), ("sent", "Sent"), ("limit", "Limit"),
                       ("remaining", "Left"), ("percent", "%"), ("blocked", "Blocked"),
                       ("block_reason", "Why")], output=output, empty="No accounts.")
    for row in rows:
        if row["level"] in ("limit", "over"):
            warning(f"{row['account']} has reached its daily limit ({row['sent']:,} of {row['limit']:,} emails today)")
        elif row["level"] == "warning":
            warning(f"{row['account']} has used {row['percent']}% of its daily limit "
                    f"({row['sent']:,} of {row['limit']:,} emails today)")
    for notice in low_notices(store, [row["agency"] for row in rows]):  # prepaid credits low or used up
        warning(notice)
    if threshold is not None:
        over = at_or_over(rows, threshold)
        if over:
            raise LimitReached(f"{len(over)} account{'s' if len(over) != 1 else ''} at or over {fail_at.strip()}% "
                               f"of the daily limit: " + ", ".join(f"{r['account']} ({r['percent']}%)" for r in over))


# Rows with no name of their own: inbound mail has no account when it reaches
# an agency-assigned domain, and no sending login.
BLANK_LABELS = {"account": "(agency-assigned domains)", "user": "(inbound)"}


def _report_rows(data: dict) -> list[dict]:
    """The report's rows for people: every day of the range when grouped by
    day alone (a day without mail is a row of zeros), and a label instead of
    an empty name."""
    rows = [dict(r) for r in data["rows"]]
    if data["by"] == ["day"]:
        found = {r["day"]: r for r in rows}
        day, last, rows = date.fromisoformat(data["since"]), date.fromisoformat(data["until"]), []
        while day <= last:
            rows.append(found.get(day.isoformat()) or {"day": day.isoformat(), "messages": 0, "emails": 0,
                                                        "outbound": 0, "inbound": 0, "cost_rounded": "0.00"})
            day += timedelta(days=1)
    for row in rows:
        for group, label in BLANK_LABELS.items():
            if group in data["by"] and not row.get(group):
                row[group] = label
        row["cost_display"] = f"${row['cost_rounded']}"
    return rows


@app.command("report")
def report(
    ctx: typer.Context,
    since: Annotated[Optional[str], typer.Option(
        "--since", metavar="DAY",
        help="First day, inclusive: 2026-11-01, today, yesterday or 7d (7 days ago); default: the 1st of this month."
    )] = None,
    until: Annotated[Optional[str], typer.Option(
        "--until", metavar="DAY", help="Last day, inclusive, in the same forms as --since (default: today).")] = None,
    by: Annotated[Optional[list[str]], typer.Option("--by", help="Group by day, agency, account, domain, user or direction (repeatable).")] = None,
    agency: Annotated[Optional[str], typer.Option("--agency", help="Only this agency's usage.")] = None,
    account: Annotated[Optional[str], typer.Option("--account", help="Only this account's usage.")] = None,
    domain: Annotated[Optional[str], typer.Option("--domain", help="Only mail sent from or received on this domain.")] = None,
    user: Annotated[Optional[str], typer.Option("--user", help="Only mail sent with this login.", metavar="LOGIN@DOMAIN")] = None,
    json_out: JsonOption = False,
    csv_out: CsvOption = False,
) -> None:
    """Messages, emails and cost per day, agency, account, domain, user or direction."""
    output = fmt(json_out, csv_out)
    data = usage_reports.usage_report(store_of(ctx, read_only=True), since=since, until=until, by=by or ["account"],
                                      agency=agency, account=account, domain=domain, user=user)
    if output == "json":
        print_json(data)
        return
    metrics = [("messages", "Messages"), ("emails", "Emails"), ("outbound", "Outbound"), ("inbound", "Inbound")]
    columns = [(g, g.capitalize()) for g in data["by"]] + metrics
    if output == "csv":
        render_list(data["rows"], columns + [("cost", "cost"), ("cost_rounded", "cost_rounded")], output="csv")
        return
    rows = _report_rows(data)
    extra = []
    if "day" in data["by"] and rows:
        unit = bar_scale(max(r["emails"] for r in rows))
        for r in rows:
            r["bar"] = bar(r["emails"], unit)
        extra = [("bar", f"█ = {unit:,} email{'s' if unit != 1 else ''}")]
    total = {**{g: "" for g in data["by"]}, **data["total"], "cost_display": f"${data['total']['cost_rounded']}"}
    total[data["by"][0]] = "Total"
    render_list(rows + [total], columns + [("cost_display", "Cost")] + extra, output="table",
                title=f"Usage {data['since']} to {data['until']} ({data['timezone']}) at ${data['price_per_1000']}/1,000")
    note = rounding_note([r["cost_rounded"] for r in data["rows"]], data["total"]["cost_rounded"],
                         data["total"]["cost"])
    if note:
        message(f"Note: {note}")


@app.command("prune")
def prune(
    ctx: typer.Context,
    before: Annotated[str, typer.Option("--before", metavar="YYYY-MM",
                                        help="Delete the raw events of the closed months before this month.")],
    yes: YesOption = False,
    json_out: JsonOption = False,
) -> None:
    """Delete raw usage events of closed months; statements and the daily rollup stay (reports still work)."""
    from smtpctl.core.billing import statements  # here, not at the top: ~1 ms of start-up (billing prices)

    store = store_of(ctx)
    month = statements.parse_month(before, "--before")
    still_open = statements.months_open_before(store, month)
    if not still_open:
        count = store.events_before(month + "-01")
        if count:
            confirm_destructive(f"Delete {count:,} raw usage event{'s' if count != 1 else ''} before {month}-01 "
                                "(their months are closed; statements and daily totals stay)?", yes)
    result = statements.prune(store, month)
    if json_out:
        print_json(result)
    elif result["status"] == "unchanged":
        message(f"Raw usage events before {result['before']} were already pruned (unchanged).")
    else:
        deleted = result["deleted_events"]
        message(f"Deleted {deleted:,} raw usage event{'s' if deleted != 1 else ''} before {result['before']}; "
                "a usage line dated before it is refused from now on.")
