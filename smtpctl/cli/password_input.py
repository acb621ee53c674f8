"""Where a password comes from: never argv.

Exactly one of: an interactive hidden prompt with confirmation (only when
stdin is a terminal), ``--password-stdin`` (one line, the trailing newline
stripped and nothing else), ``--password-file PATH`` (its first line, the
same way), or ``--generate``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from smtpctl.core.errors import InvalidInput

PasswordStdinOption = Annotated[bool, typer.Option(
    "--password-stdin", help="Read the password from stdin (one line; the trailing newline is stripped).")]
PasswordFileOption = Annotated[Optional[Path], typer.Option(
    "--password-file", help="Read the password from the first line of this file.", show_default=False)]
GenerateOption = Annotated[bool, typer.Option(
    "--generate", help="Generate a strong random password and print it once.")]

SOURCES = "--password-stdin, --password-file PATH or --generate"


def read_password(*, stdin: bool, file: Path | None, generate: bool = False, allow_generate: bool = True,
                  confirm: bool = True) -> str | None:
    """The password the user gave, or ``None`` when one must be generated."""
    from smtpctl.core.passwords import single_line

    sources = allow_generate and generate, stdin, file is not None
    if sum(sources) > 1:
        raise InvalidInput(f"give only one of {SOURCES if allow_generate else '--password-stdin or --password-file'}")
    if generate and allow_generate:
        return None
    if stdin:
        data = sys.stdin.read()
        if not data:
            raise InvalidInput("--password-stdin was given but stdin was empty")
        return single_line(data, "the password input")
    if file is not None:
        try:
            return single_line(file.read_text(encoding="utf-8"), "the password input")
        except OSError as exc:
            raise InvalidInput(f"cannot read --password-file {file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise InvalidInput(f"--password-file {file} is not UTF-8 text") from None
    if sys.stdin.isatty():
        return typer.prompt("Password", hide_input=True, confirmation_prompt=confirm, err=True)
    wanted = SOURCES if allow_generate else "--password-stdin or --password-file PATH"
    raise InvalidInput(f"no password given and no terminal to prompt on: use {wanted}")
