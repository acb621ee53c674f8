"""Reading a secret (a password) from a stream or a file, with a bound.

A password is at most a few hundred bytes, so a source is read for at most
``MAX_SECRET_BYTES + 1`` bytes and refused when it holds more: a mistaken
``--password-file /dev/zero`` fails at once instead of filling memory. The
bytes must be UTF-8 (SMTP AUTH and the hashes work on text). Nothing here
ever puts the secret itself in a message.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from smtpctl.core.model.errors import InvalidInput

MAX_SECRET_BYTES = 1024  # passwords.MAX_LENGTH characters are at most 512 bytes of UTF-8


def decode_secret(data: bytes, source: str) -> str:
    """``data`` as text, its one line without the trailing newline (nothing else stripped).

    Raises ``InvalidInput`` naming ``source`` when it is over the bound, not
    UTF-8, or more than one line.
    """
    if len(data) > MAX_SECRET_BYTES:
        raise InvalidInput(f"{source} holds more than {MAX_SECRET_BYTES:,} bytes; a password is one short line")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{source} is not UTF-8 text (invalid byte at offset {exc.start})") from None
    line, _newline, rest = text.partition("\n")
    if rest:
        raise InvalidInput(f"{source} has more than one line; give exactly one line")
    return line


def read_secret_stream(stream: BinaryIO, source: str) -> str:
    """Read one line of secret from a binary stream (up to its end, at most the bound)."""
    try:
        data = stream.read(MAX_SECRET_BYTES + 1)
    except OSError as exc:
        raise InvalidInput(f"cannot read {source}: {exc.strerror or exc}") from None
    return decode_secret(data, source)


def read_secret_file(path: Path, source: str) -> str:
    """Read one line of secret from the file at ``path`` (at most the bound)."""
    try:
        with open(path, "rb") as fh:
            return read_secret_stream(fh, source)
    except OSError as exc:
        raise InvalidInput(f"cannot read {source}: {exc.strerror or exc}") from None
    except ValueError:  # a NUL in the path
        raise InvalidInput(f"cannot read {source}: the path contains a NUL character") from None


def check_text(secret: str, source: str) -> str:
    """A secret that reached us as ``str`` (the environment, a prompt) must be
    real text: undecodable bytes arrive as lone surrogates, which no hash takes."""
    if any("\ud800" <= c <= "\udfff" for c in secret):
        raise InvalidInput(f"{source} is not UTF-8 text")
    return secret
