"""A message body as ``serve`` receives it: in memory while it is small, in
an unnamed file on disk once it is not.

aiosmtpd's DATA keeps every line of a body in a list and joins them at the
end, and each step after made another copy: 20 messages of 24 MB at once
took 579 MB (issue 23), so 1,000 connections could take 25 GB. Here a body
is held in memory up to ``Spool.above`` bytes (``serve --spool-above``,
256 KiB by default: a typical message never touches the disk), and past it
goes to a file in ``Spool.directory`` (``--spool-dir``) opened with
``tempfile.TemporaryFile``: on Linux an ``O_TMPFILE`` with no name, so no
crash, kill -9 included, can leave one behind. What a body costs in RAM is
then at most the threshold (and a 64 KiB write buffer) a connection in DATA.

Delivery reads a body back in line-aligned chunks (``chunks``): Maildir
writes them to its staged file, relay sends them on, dot-stuffed, to the
next hop. The header ``From`` check reads only the header block
(``header_from``).
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from email.utils import getaddresses
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

DEFAULT_SPOOL_ABOVE = 256 * 1024
CHUNK = 1024 * 1024  # what delivery reads at a time from a spooled body
_WRITE_BUFFER = 64 * 1024


@dataclass(frozen=True)
class Spool:
    """Where bodies above ``above`` bytes go while they are received and delivered."""
    above: int = DEFAULT_SPOOL_ABOVE
    directory: Path | None = None  # None: the system's temporary folder

    def body(self) -> "Body":
        return Body(self)


def prepare_spool(spool: Spool) -> None:
    """Create the spool folder (0700) if it is missing, and prove a body can
    be written there: a folder that cannot take one fails ``serve`` at start,
    not a client's large message later."""
    if spool.directory is not None:
        spool.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with tempfile.TemporaryFile(dir=spool.directory) as probe:
        probe.write(b"\r\n")


class Body:
    """One message's lines as received (CRLF-ended, dot-transparency already
    undone), kept in memory up to the spool's threshold, then in a file."""

    def __init__(self, spool: Spool):
        self.spool = spool
        self.size = 0
        self._lines: list[bytes] = []
        self._file: BinaryIO | None = None

    @property
    def spooled(self) -> bool:
        return self._file is not None

    def add(self, line: bytes) -> None:
        self.size += len(line)
        if self._file is not None:
            self._file.write(line)
            return
        self._lines.append(line)
        if self.size > self.spool.above:
            # A short write on the event loop: the buffer takes it, and the page cache takes the buffer.
            self._file = tempfile.TemporaryFile(dir=self.spool.directory, buffering=_WRITE_BUFFER)
            self._file.writelines(self._lines)
            self._lines = []

    def header_lines(self) -> Iterator[bytes]:
        """The lines before the first empty one (the header block). A line
        ends at CRLF, a bare LF or a bare CR alike, as Python's email parser
        and most mail readers end one: a field after a bare LF is a field,
        not part of the one before it."""
        for received in self._all_lines():
            for line in received.splitlines(keepends=True):
                if not line.rstrip(b"\r\n"):
                    return
                yield line

    def chunks(self) -> Iterator[bytes]:
        """The whole body, in chunks of about ``CHUNK`` bytes that each end at
        the end of a line (so a chunk can be dot-stuffed on its own)."""
        if self._file is None:
            if self._lines:
                yield b"".join(self._lines)
            return
        file = self._file
        file.flush()
        file.seek(0)
        while True:
            chunk = file.read(CHUNK)
            if not chunk:
                return
            if not chunk.endswith(b"\n"):
                chunk += file.readline()  # a body's lines are short (aiosmtpd's line length limit)
            yield chunk

    def _all_lines(self) -> Iterable[bytes]:
        if self._file is None:
            return self._lines
        self._file.flush()
        self._file.seek(0)
        return iter(self._file.readline, b"")

    def close(self) -> None:
        """Let the memory or the file go (closing an unnamed file removes it). Idempotent."""
        self._lines = []
        file, self._file = self._file, None
        if file is not None:
            file.close()


_HEADER_NAME = re.compile(rb"([^:\s]*)\s*:")


def header_from(lines: Iterable[bytes]) -> list[str]:
    """The addresses of every ``From`` field of a header block.

    Read line by line (a header block may be as large as the body). Every
    line that names ``From`` before the first empty line counts, even after
    a line that is no header field (which ends the header block for
    Python's own parser): this check refuses, so it errs on the side of
    finding a From.
    """
    fields: list[list[bytes]] = []
    current: list[bytes] | None = None
    for line in lines:
        if line[:1] in (b" ", b"\t"):  # a folded continuation of the field before
            if current is not None:
                current.append(line)
            continue
        name = _HEADER_NAME.match(line)
        if name is not None and name[1].lower() == b"from":
            current = [line[name.end():]]
            fields.append(current)
        else:
            current = None
    values = [b"".join(parts).decode("utf-8", "surrogateescape") for parts in fields]
    return [address for _, address in getaddresses(values) if address]
