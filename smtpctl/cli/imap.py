"""smtpctl imap: where to read mail (this service hosts no IMAP or POP)."""

from __future__ import annotations

from typing import Annotated

import typer

from smtpctl.cli.options import CsvOption, JsonOption
from smtpctl.cli.output import fmt, message, print_json, render_list, render_record
from smtpctl.core.model import imap

app = typer.Typer(help="IMAP settings of common mailbox providers (this service hosts no IMAP/POP).",
                  no_args_is_help=True)

COLUMNS = [("provider", "Provider"), ("host", "Host"), ("port", "Port"), ("protocol", "Protocol"),
           ("username", "Username"), ("password", "Password"), ("note", "Note")]


@app.command("list")
def list_(json_out: JsonOption = False, csv_out: CsvOption = False) -> None:
    """List common mailbox providers with their mail-reading settings (host, port, protocol)."""
    output = fmt(json_out, csv_out)
    render_list([p.as_dict() for p in imap.PROVIDERS], COLUMNS, output=output)
    if output == "table":
        message(imap.NOTE)


@app.command("lookup")
def lookup(provider: Annotated[str, typer.Argument(help="Provider name, e.g. gmail.")],
           json_out: JsonOption = False) -> None:
    """Show one provider's mail-reading settings."""
    found = imap.lookup(provider)
    if json_out:
        print_json({**found.as_dict(), "note_service": imap.NOTE})
        return
    render_record(found.as_dict(), output="table")
    message(imap.NOTE)
