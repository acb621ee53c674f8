"""Reading input lines: bounded in length, decoded one by one, never all held."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

# The longest line a message can legally take: MAX_RECIPIENTS addresses of up
# to 254 characters plus separators, and the other fields. A longer line is
# rejected without being held in memory; CSV's field limit is raised to it.
MAX_LINE_BYTES = 32 * 1024 * 1024


class UnreadableLine(str):
    """A line that is not text: not UTF-8, or longer than ``MAX_LINE_BYTES``.

    Its value is what could be shown (the bytes decoded with U+FFFD), its
    ``reason`` says why it cannot be read. Parsers reject it (JSONL, CSV) or
    skip it when it is not a line they need (Postfix).
    """

    reason: str

    def __new__(cls, text: str, reason: str) -> "UnreadableLine":
        self = super().__new__(cls, text)
        self.reason = reason
        return self


def read_raw_lines(handle: IO[bytes], position: list[int] | None = None) -> Iterator[bytes]:
    """The lines of a binary stream as bytes, undecoded (``read_lines`` decodes them).

    A line over ``MAX_LINE_BYTES`` is read past without holding it and comes
    out as an ``UnreadableLine``; a UTF-8 BOM at the start is dropped.
    ``position[0]`` counts bytes read.
    """
    readline = handle.readline
    count = position if position is not None else [0]
    raw = readline(MAX_LINE_BYTES + 4)  # (room for a BOM: it is not part of the line)
    if not raw:
        return
    if raw.startswith(b"\xef\xbb\xbf"):
        count[0] += 3
        raw = raw[3:]
    while True:
        count[0] += len(raw)
        if len(raw) > MAX_LINE_BYTES:
            total = len(raw)
            while not raw.endswith(b"\n"):
                raw = readline(1 << 20)
                if not raw:
                    break
                count[0] += len(raw)
                total += len(raw)
            yield UnreadableLine(
                "", f"line of {total:,} bytes is longer than the {MAX_LINE_BYTES:,} a message may take")
        else:
            yield raw
        raw = readline(MAX_LINE_BYTES + 1)
        if not raw:
            return


def decode_line(raw: bytes) -> str:
    """One line of ``read_raw_lines`` as text: an ``UnreadableLine`` when it is
    not UTF-8 (never with U+FFFD in place of its bytes, which could merge two
    distinct ids)."""
    if raw.__class__ is UnreadableLine:
        return raw  # type: ignore[return-value]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return UnreadableLine(raw.decode("utf-8", "replace"),
                              f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})")


class Lines:
    """The lines of a binary stream: iterated, each line as text (see
    ``decode_line``); ``raw()`` gives them undecoded (the JSONL fast path
    decodes bytes itself) and ``blocks()`` many at a time (the Postfix parser
    looks for the few lines it needs in them)."""

    def __init__(self, handle: IO[bytes], position: list[int] | None = None):
        self.handle, self.position = handle, position

    def raw(self) -> Iterator[bytes]:
        return read_raw_lines(self.handle, self.position)

    def __iter__(self) -> Iterator[str]:
        return map(decode_line, self.raw())

    def blocks(self) -> Iterator[bytes]:
        return read_blocks(self.handle, self.position)


# Less than MAX_LINE_BYTES: a line too long to take then always spans blocks,
# so read_blocks checks only the lines that do.
BLOCK_BYTES = 1 << 20


def read_blocks(handle: IO[bytes], position: list[int] | None = None) -> Iterator[bytes]:
    """The lines of a binary stream, many at a time: each block is whole
    lines, each ending with ``\\n`` (the file's last line gets one). The lines
    are ``read_raw_lines``' lines, except that a line over ``MAX_LINE_BYTES``
    is read past without holding it and stands as an empty line. A UTF-8 BOM
    at the start is dropped. ``position[0]`` counts bytes read."""
    from functools import partial
    from itertools import chain

    count = position if position is not None else [0]
    read = getattr(handle, "read1", handle.read)
    head = b""
    while len(head) < 3:  # the BOM may come in more than one read from a pipe
        chunk = read(3 - len(head))
        if not chunk:
            break
        head += chunk
    bom = head.startswith(b"\xef\xbb\xbf")
    start = head[3:] if bom else head
    count[0] += len(head) - len(start)  # the BOM; the rest is counted as a chunk
    tail = b""
    long_line = False  # reading past a line over MAX_LINE_BYTES
    empty = True
    for chunk in chain((start,), iter(partial(read, BLOCK_BYTES), b"")):
        if not chunk:
            continue
        empty = False
        count[0] += len(chunk)
        done = b""
        if long_line:
            end = chunk.find(b"\n")
            if end < 0:
                continue
            long_line = False
            done = b"\n"  # the long line, as an empty one
            chunk = chunk[end + 1:]
        end = chunk.rfind(b"\n")
        if end < 0:
            tail += chunk
            if len(tail) > MAX_LINE_BYTES:
                tail, long_line = b"", True
            if done:
                yield done
            continue
        first = chunk.find(b"\n")
        if len(tail) + first + 1 > MAX_LINE_BYTES:  # the line that ends here is too long
            done += b"\n" + chunk[first + 1:end + 1]
        else:
            done += tail + chunk[:end + 1]
        tail = chunk[end + 1:]
        yield done
    if long_line or (bom and empty):  # (a BOM alone is one empty line, as read_raw_lines reads it)
        yield b"\n"
    elif tail:
        yield tail + b"\n"


def read_lines(handle: IO[bytes], position: list[int] | None = None) -> Lines:
    """The lines of a binary stream as text, each decoded on its own.

    A line that is not valid UTF-8 comes out as an ``UnreadableLine`` (never
    with U+FFFD in place of its bytes, which could merge two distinct ids);
    so does a line over ``MAX_LINE_BYTES``, read past without holding it. A
    UTF-8 BOM at the start is dropped. ``position[0]`` counts bytes read.
    """
    return Lines(handle, position)


def format_for(name: str) -> str | None:
    """The import format a file name implies, or None: ``.jsonl``/``.ndjson``
    -> jsonl, ``.csv`` -> csv, a name holding ``maillog`` or ``mail.log``
    (``maillog.1``, ``mail.log.2.gz`` unpacked...) -> postfix."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].lower()
    if base.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if base.endswith(".csv"):
        return "csv"
    if "maillog" in base or "mail.log" in base:
        return "postfix"
    return None
