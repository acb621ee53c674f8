"""Where a password comes from: never argv.

Exactly one of: an interactive hidden prompt with confirmation (only when
stdin is a terminal), ``--password-stdin`` (one line, the trailing newline
stripped and nothing else), ``--password-file PATH`` (its one line, the
same way), or ``--generate``. Stdin and files are read with a bound.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from smtpctl.cli.output import word
from smtpctl.core.directory import secret_input
from smtpctl.core.model import passwords
from smtpctl.core.model.errors import InvalidInput

PasswordStdinOption = Annotated[bool, typer.Option(
    "--password-stdin", help="Read the password from stdin (one line; the trailing newline is stripped).")]
PasswordFileOption = Annotated[Optional[Path], typer.Option(
    "--password-file", help="Read the password from the first line of this file.", show_default=False)]
GenerateOption = Annotated[bool, typer.Option(
    "--generate", help="Generate a strong random password and print it once.")]

SOURCES = "--password-stdin, --password-file PATH or --generate"


def read_password(*, stdin: bool, file: Path | None, generate: bool = False, allow_generate: bool = True,
                  confirm: bool = True) -> str | None:
    """The password the user gave, or ``None`` when one must be generated.

    Stdin and files are read for at most ``secret_input.MAX_SECRET_BYTES`` + 1
    bytes (so /dev/zero fails at once) and must be UTF-8: ``InvalidInput``.
    """
    sources = allow_generate and generate, stdin, file is not None
    if sum(sources) > 1:
        raise InvalidInput(f"give only one of {SOURCES if allow_generate else '--password-stdin or --password-file'}")
    if generate and allow_generate:
        return None
    if stdin:
        stream = getattr(sys.stdin, "buffer", None)
        if stream is None:  # a text-only stdin (some embedders): still bounded
            data = sys.stdin.read(secret_input.MAX_SECRET_BYTES + 1).encode("utf-8", "surrogateescape")
        else:
            data = stream.read(secret_input.MAX_SECRET_BYTES + 1)
        if not data:
            raise InvalidInput("--password-stdin was given but stdin was empty")
        return secret_input.decode_secret(data, "the password input")
    if file is not None:
        return secret_input.read_secret_file(file, f"--password-file {file}")
    if sys.stdin.isatty():
        return _typed(confirm)
    wanted = SOURCES if allow_generate else "--password-stdin or --password-file PATH"
    raise InvalidInput(f"no password given and no terminal to prompt on: use {wanted}")


def _typed(confirm: bool) -> str:
    """The password typed at the terminal. A new password (``confirm``) is
    checked as soon as it is typed, and asked for again, before the
    confirmation: nobody types a refused password twice. A candidate (``user
    verify``) is taken as typed."""
    while True:
        typed = secret_input.check_text(typer.prompt("Password", hide_input=True, err=True), "the password typed")
        if not confirm:
            return typed
        try:
            passwords.validate_password(typed)
        except InvalidInput as exc:
            sys.stderr.write(f"Error: {word(exc)}; try again.\n")
            continue
        again = typer.prompt("Repeat for confirmation", hide_input=True, err=True)
        if again == typed:
            return typed
        sys.stderr.write("Error: the two entered values do not match; try again.\n")
