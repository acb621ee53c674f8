"""smtpctl export: the store as an apply document, or a Dovecot passwd-file."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from smtpctl.cli.output import message, to_json
from smtpctl.cli.state import store_of
from smtpctl.cli.deferred import deferred_import
export = deferred_import("smtpctl.core.export")
from smtpctl.core.errors import InvalidInput


class ExportFormat(str, Enum):
    toml = "toml"
    json = "json"
    dovecot = "dovecot"


def export_command(
    ctx: typer.Context,
    output_format: Annotated[Optional[ExportFormat], typer.Option("--format", help="toml (what apply reads; the default), json, or dovecot (a passwd-file).", show_default=False)] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to this file atomically (0600) instead of stdout.")] = None,
    group: Annotated[Optional[str], typer.Option("--group", help="With --output: make the file 0640 and owned by this group (e.g. dovecot).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the export as one JSON document: the same as --format json.")] = False,
) -> None:
    """Export agencies, accounts, domains and credentials (no secrets), or a Dovecot passwd-file."""
    if json_out and output_format not in (None, ExportFormat.json):
        raise InvalidInput(f"--json is --format json; it cannot be combined with --format {output_format.value}")
    output_format = ExportFormat.json if json_out else output_format or ExportFormat.toml
    store = store_of(ctx, read_only=True)
    if output_format is ExportFormat.dovecot:
        text = export.dovecot_passwd(store)
    elif output_format is ExportFormat.json:
        text = to_json(export.export_document(store), pretty=True) + "\n"
    else:
        import tomli_w

        text = tomli_w.dumps(export.export_document(store))
    if output is None:
        if group is not None:
            raise InvalidInput("--group needs --output")
        sys.stdout.write(text)
        return
    export.write_atomically(output, text, group=group)
    count = text.count("\n") if output_format is ExportFormat.dovecot else None
    message(f"Wrote {output}" + (f" ({count} credential{'s' if count != 1 else ''})." if count is not None else "."))
