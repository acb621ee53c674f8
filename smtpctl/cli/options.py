"""The options every command shares (``from smtpctl.cli.output import JsonOption``
finds them here): defined apart from the renderer, which imports no typer."""

from __future__ import annotations

from typing import Annotated

import typer

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
CsvOption = Annotated[bool, typer.Option("--csv", help="Print CSV with a header row on stdout.")]
ExistOkOption = Annotated[
    bool, typer.Option("--exist-ok", help="Succeed (exit 0, 'unchanged') when a matching object exists.")
]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
