"""The options many commands share, declared once: ``--json``, ``--csv``,
``--exist-ok`` and ``--yes``."""

from __future__ import annotations

from typing import Annotated

import typer

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
CsvOption = Annotated[bool, typer.Option("--csv", help="Print CSV with a header row on stdout.")]
ExistOkOption = Annotated[
    bool, typer.Option("--exist-ok", help="Succeed (exit 0, 'unchanged') when a matching object exists.")
]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
