"""smtpctl export: the store as an apply document, a Dovecot passwd-file, or a
Postfix smtpd_sender_login_maps table."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import tomli_w
import typer

from smtpctl.cli.output import message, to_json
from smtpctl.cli.state import store_of
from smtpctl.core.model.errors import InvalidInput
from smtpctl.core.provisioning import export


class ExportFormat(str, Enum):
    toml = "toml"
    json = "json"
    dovecot = "dovecot"
    postfix_sender_logins = "postfix-sender-logins"


def export_command(
    ctx: typer.Context,
    output_format: Annotated[Optional[ExportFormat], typer.Option("--format", help="toml (what apply reads; the default), json, dovecot (a passwd-file), or postfix-sender-logins (a Postfix smtpd_sender_login_maps table).", show_default=False)] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to this file atomically (0600) instead of stdout.")] = None,
    group: Annotated[Optional[str], typer.Option("--group", help="With --output: make the file 0640 and owned by this group (e.g. dovecot).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the export as one JSON document: the same as --format json.")] = False,
) -> None:
    """Export the store as TOML or JSON (no secrets), a Dovecot passwd-file, or a Postfix sender-login table."""
    if json_out and output_format not in (None, ExportFormat.json):
        raise InvalidInput(f"--json is --format json; it cannot be combined with --format {output_format.value}")
    output_format = ExportFormat.json if json_out else output_format or ExportFormat.toml
    store = store_of(ctx, read_only=True)
    if output_format is ExportFormat.dovecot:
        text = export.dovecot_passwd(store)
    elif output_format is ExportFormat.postfix_sender_logins:
        text = export.postfix_sender_logins(store)
    elif output_format is ExportFormat.json:
        text = to_json(export.export_document(store), pretty=True) + "\n"
    else:
        text = tomli_w.dumps(export.export_document(store))
    if output is None:
        if group is not None:
            raise InvalidInput("--group needs --output")
        sys.stdout.write(text)
        return
    export.write_atomically(output, text, group=group)
    count = text.count("\n")
    if output_format is ExportFormat.dovecot:
        message(f"Wrote {output} ({count} credential{'s' if count != 1 else ''}).")
    elif output_format is ExportFormat.postfix_sender_logins:
        message(f"Wrote {output} ({count} sender domain{'s' if count != 1 else ''}).")
    else:
        message(f"Wrote {output}.")
