"""Usage input: one message per item, from JSONL, CSV or a Postfix mail log.

Parsers stream: they read one line at a time and yield ``UsageInput`` items
or ``BadLine`` items, never holding the file in memory. Nothing here touches
the store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import datetime, timedelta, timezone, tzinfo
from typing import IO, Any, Generator, Iterable, Iterator

from smtpctl.core.errors import InvalidInput

MAX_RECIPIENTS = 100_000  # per message; a larger count is a typo, not a message
# The longest line a message can legally take: MAX_RECIPIENTS addresses of up
# to 254 characters plus separators, and the other fields. A longer line is
# rejected without being held in memory; CSV's field limit is raised to it.
MAX_LINE_BYTES = 32 * 1024 * 1024
# Usage times are accepted from the Unix epoch on: an earlier one is a typo,
# and every accepted instant is a local date in every zone (no overflow).
EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(9999, 12, 30, tzinfo=timezone.utc)
MAX_ID = 500
MAX_NAME = 320  # a login (64 + @ + 253) or a domain, with room to spare
FORMATS = ("jsonl", "csv", "postfix")


_set = object.__setattr__


@dataclass(frozen=True, init=False)
class UsageInput:
    """One message as given: who sent it, its recipients, when, and its id."""

    direction: str  # "outbound" or "inbound"
    user: str | None  # the credential login (outbound)
    domain: str | None  # the receiving domain (inbound)
    to: int
    cc: int
    bcc: int
    at: datetime | None  # aware; None means "now"
    source_id: str | None
    line: int = 0
    # ``at`` as stored ("2026-11-26T10:00:00Z"), when the input gave it in
    # exactly that form: recording it then formats no time (a tenth of an
    # import's time). Not part of the message's identity.
    at_text: str | None = dataclass_field(default=None, compare=False, repr=False)

    def __init__(self, direction: str, user: str | None, domain: str | None, to: int, cc: int, bcc: int,
                 at: datetime | None, source_id: str | None, line: int = 0, at_text: str | None = None):
        # The generated frozen __init__ sets each field through
        # object.__setattr__: 2.5 us a message, a quarter of an import's parsing.
        _set(self, "__dict__", {"direction": direction, "user": user, "domain": domain, "to": to, "cc": cc,
                                "bcc": bcc, "at": at, "source_id": source_id, "line": line, "at_text": at_text})

    @property
    def emails(self) -> int:
        return self.to + self.cc + self.bcc


@dataclass(frozen=True)
class BadLine:
    line: int
    reason: str


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


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 4] + "...'"


def in_range(moment: datetime, text: Any) -> datetime:
    """``moment`` (aware) as UTC, if it lies between 1970 and 9999; else ``InvalidInput``."""
    try:
        utc = moment.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        utc = None
    if utc is None or not EARLIEST <= utc <= LATEST:
        raise InvalidInput(f"time {_show(text)} is out of range (1970-01-01 to 9999-12-30)")
    return utc


def parse_time(text: str, default_tz: tzinfo) -> datetime:
    """ISO 8601; a time without an offset is in ``default_tz`` (the store's).

    Returns an aware UTC datetime between 1970 and 9999; raises
    ``InvalidInput`` for anything else (never ``OverflowError``).
    """
    raw = text.strip()
    try:
        moment = datetime.fromisoformat(raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw)
    except ValueError:
        raise InvalidInput(f"invalid time {_show(text)}: use ISO 8601, e.g. 2026-11-26T10:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=default_tz)
    elif moment.tzinfo is timezone.utc and EARLIEST <= moment <= LATEST:
        return moment  # the common case, "...Z": already UTC and in range
    return in_range(moment, text)


def count_addresses(to: Iterable[str], cc: Iterable[str], bcc: Iterable[str]) -> tuple[int, int, int]:
    """Count recipients the way an MTA delivers them: each address once.

    An address given twice (in any of To, Cc, Bcc, ignoring case) counts once,
    in the first field it appears in. Raises ``InvalidInput`` for an address
    that is not ``local@domain`` or for more than ``MAX_RECIPIENTS`` addresses.
    """
    seen: set[str] = set()
    counts = []
    listed = 0
    for field in (to, cc, bcc):
        n = 0
        for address in field:
            if not isinstance(address, str):
                raise InvalidInput(f"a recipient must be an address (a string), not {_show(address)}")
            listed += 1
            if listed > MAX_RECIPIENTS:
                raise InvalidInput(f"more than {MAX_RECIPIENTS:,} recipients in one message")
            address = address.strip()
            if address.startswith("<") and address.endswith(">"):
                address = address[1:-1]
            local, at, host = address.rpartition("@")
            if (not at or not local or not host or " " in address or "." not in host or len(address) > 254
                    or not address.isprintable()):
                raise InvalidInput(f"invalid recipient address {_show(address)}")
            key = address.lower()
            if key not in seen:
                seen.add(key)
                n += 1
        counts.append(n)
    return counts[0], counts[1], counts[2]


def _count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidInput(f"{what} must be a whole number")
    if isinstance(value, str):
        digits = value.strip()
        # int() would also take "1_000", "٣" or 5,000 digits; a count is 0-9 only.
        if not digits.isascii() or not digits.isdigit():
            raise InvalidInput(f"{what} must be a whole number, not {_show(value)}")
        if len(digits) > 12:
            raise InvalidInput(f"{what} must be between 0 and {MAX_RECIPIENTS:,}, not {digits[:20]}...")
        value = int(digits)
    if not 0 <= value <= MAX_RECIPIENTS:
        shown = value if abs(value) < 10**20 else "a number that large"
        raise InvalidInput(f"{what} must be between 0 and {MAX_RECIPIENTS:,}, not {shown}")
    return value


def _name(value: Any, what: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string, not {_show(value)}")
    value = value.strip()
    if len(value) > MAX_NAME or not value.isprintable():
        raise InvalidInput(f"{what} must be at most {MAX_NAME} printable characters")
    return value or None


def build_input(*, direction: str | None, user: Any, domain: Any, to: Any, cc: Any, bcc: Any,
                recipients: Any, at: Any, source_id: Any, default_tz: tzinfo, line: int = 0) -> UsageInput:
    """Validate one message's fields (shared by ``usage record``, JSONL and CSV).

    Raises ``InvalidInput`` naming the first field that is wrong. (The type
    tests are written as fast paths: this runs once per imported line.)
    """
    if direction is None:
        direction = "outbound"
    elif direction.__class__ is str:
        direction = direction.strip().lower() or "outbound"
    if direction != "outbound" and direction != "inbound":
        raise InvalidInput(f"direction must be outbound or inbound, not {_show(direction)}")
    if user.__class__ is str and len(user) <= MAX_NAME and user.isprintable():
        user = user.strip() or None
    else:
        user = _name(user, "user")
    if domain is not None:
        domain = _name(domain, "domain")
    if direction == "outbound":
        if not user:
            raise InvalidInput("an outbound message needs the sending credential's login (user)")
        if domain:
            raise InvalidInput("an outbound message is identified by its user, not a domain")
    else:
        if not domain:
            raise InvalidInput("an inbound message needs the receiving domain")
        if user:
            raise InvalidInput("an inbound message has a domain, not a user")
    if to is None and cc is None and bcc is None:
        lists = None
    else:
        lists = [to or [], cc or [], bcc or []]
        for name, value in zip(("to", "cc", "bcc"), lists):
            if isinstance(value, str) or not isinstance(value, (list, tuple)):
                raise InvalidInput(f"{name} must be a list of addresses")
    if recipients is not None:
        if lists and any(lists):
            raise InvalidInput("give either recipients (a count) or to/cc/bcc addresses, not both")
        if recipients.__class__ is int and 0 < recipients <= MAX_RECIPIENTS:
            to_n, cc_n, bcc_n = recipients, 0, 0
        else:
            to_n, cc_n, bcc_n = _count(recipients, "recipients"), 0, 0
    else:
        to_n, cc_n, bcc_n = count_addresses(*lists) if lists else (0, 0, 0)
    if to_n + cc_n + bcc_n == 0:
        raise InvalidInput("a message needs at least one recipient")
    if at.__class__ is str:
        when = parse_time(at, default_tz) if at else None
    elif at is None:
        when = None
    else:
        raise InvalidInput(f"at must be an ISO 8601 time (a string), not {_show(at)}")
    if source_id is None or source_id == "":
        sid = None
    elif source_id.__class__ is str or (isinstance(source_id, int) and not isinstance(source_id, bool)):
        sid = str(source_id).strip()
        if len(sid) > MAX_ID or not sid.isprintable():
            raise InvalidInput(f"id must be at most {MAX_ID} printable characters")
    else:
        raise InvalidInput(f"id must be a string, not {_show(source_id)}")
    return UsageInput(direction, user, domain, to_n, cc_n, bcc_n, when, sid or None, line)


_JSON_KEYS = {"user", "domain", "to", "cc", "bcc", "recipients", "at", "id", "direction"}
_KNOWN_KEYS = _JSON_KEYS.issuperset


# A time as ``usage`` stores it: UTC to the second, "Z". Such a time is
# recorded as given, without parsing and formatting it twice.
_CANONICAL_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z").fullmatch


def _fast_jsonl() -> Any:
    """The fast path of ``read_jsonl``: a function from one line (bytes or
    text) and its number to a ``UsageInput``, or None for anything it is not
    sure of, which then goes the slow way (``json`` and ``build_input``), the
    only one that writes a reason. It takes a line only when the slow way
    would take it and give an equal ``UsageInput`` (a test compares the two on
    valid and invalid lines): msgspec decodes the line into typed fields in C,
    and this function checks them as ``build_input`` does."""
    try:
        import msgspec
    except ImportError:  # an install older than this dependency: every line goes the slow way
        return None

    class Line(msgspec.Struct, forbid_unknown_fields=True, gc=False):
        user: str | None = None
        domain: str | None = None
        to: list[str] | None = None
        cc: list[str] | None = None
        bcc: list[str] | None = None
        recipients: int | None = None
        at: str | None = None
        id: str | int | None = None
        direction: str | None = None

    decode = msgspec.json.Decoder(Line).decode
    fromisoformat = datetime.fromisoformat
    canonical = _CANONICAL_TIME

    # Logins already checked, as build_input leaves them (an import names a
    # few thousand senders, a million times): one dict look-up, not three
    # string scans. Bounded: cleared when it holds too many.
    checked: dict[str, str | None] = {}

    def fast(line: bytes | str, number: int, default_tz: tzinfo) -> UsageInput | None:
        try:
            ev = decode(line)
        except Exception:  # noqa: BLE001 - not JSON, not UTF-8, a type build_input would read...: the slow way
            return None
        user, domain = ev.user, ev.domain
        if user is not None:
            known = checked.get(user, False)
            if known is False:
                if len(user) > MAX_NAME or not user.isprintable():
                    return None
                if len(checked) >= 100_000:
                    checked.clear()
                known = checked[user] = user.strip() or None
            user = known
        if domain is not None:
            domain = domain.strip()
            if len(domain) > MAX_NAME or not domain.isprintable():
                return None
            domain = domain or None
        direction = ev.direction
        if direction is None or direction == "outbound":
            if not user or domain:
                return None
            direction = "outbound"
        elif direction == "inbound":
            if not domain or user:
                return None
        else:
            return None
        recipients, to, cc, bcc = ev.recipients, ev.to, ev.cc, ev.bcc
        if recipients is not None:
            if to or cc or bcc or not 0 < recipients <= MAX_RECIPIENTS:
                return None
            to_n, cc_n, bcc_n = recipients, 0, 0
        elif to is None and cc is None and bcc is None:
            return None
        else:
            try:
                to_n, cc_n, bcc_n = count_addresses(to or (), cc or (), bcc or ())
            except InvalidInput:
                return None
            if not to_n + cc_n + bcc_n:
                return None
        at, at_text = ev.at, None
        if not at:
            when = None
        elif canonical(at):
            try:
                when = fromisoformat(at)  # reads "Z" as timezone.utc, as parse_time does
            except ValueError:
                return None
            if not EARLIEST <= when <= LATEST:
                return None
            at_text = at
        else:
            try:
                when = parse_time(at, default_tz)
            except InvalidInput:
                return None
        sid = ev.id
        if sid is not None:
            if sid.__class__ is not str:
                return None  # a number: rare, and str() of a huge one raises
            sid = sid.strip()
            if len(sid) > MAX_ID or not sid.isprintable():
                return None
            sid = sid or None
        return UsageInput(direction, user, domain, to_n, cc_n, bcc_n, when, sid, number, at_text)

    return fast


def read_jsonl(lines: Iterable[str] | Lines, default_tz: tzinfo, *,
               fast: bool = True) -> Iterator[UsageInput | BadLine]:
    """One message per JSON object line; every other line is a ``BadLine``
    (blank lines are skipped). Never raises for what a line holds.

    ``lines`` from ``read_lines`` are read as bytes: a well-formed line is
    decoded only by the fast path, and only a line it does not take is
    decoded to text. ``fast=False`` reads every line the slow way (the
    reference the fast path is tested against).
    """
    import json

    loads = json.JSONDecoder().decode  # json.loads without its per-call checks
    quick = _fast_jsonl() if fast else None
    source: Iterable[Any] = lines.raw() if isinstance(lines, Lines) else lines
    for number, text in enumerate(source, start=1):
        if text.__class__ is UnreadableLine:
            yield BadLine(number, text.reason)  # type: ignore[attr-defined]
            continue
        if quick is not None:
            item = quick(text, number, default_tz)
            if item is not None:
                yield item
                continue
        if text.__class__ is bytes:
            text = decode_line(text)
            if text.__class__ is UnreadableLine:
                yield BadLine(number, text.reason)  # type: ignore[attr-defined]
                continue
        if number == 1 and text.startswith("\ufeff"):
            text = text[1:]
        if not text.strip():
            continue
        try:
            item = loads(text)
            if not isinstance(item, dict):
                raise InvalidInput("a line must be a JSON object")
            if not _KNOWN_KEYS(item):
                unknown = item.keys() - _JSON_KEYS
                raise InvalidInput(f"unknown keys: {_show(', '.join(sorted(unknown)), 200)[1:-1]}")
            get = item.get
            yield build_input(direction=get("direction"), user=get("user"), domain=get("domain"),
                              to=get("to"), cc=get("cc"), bcc=get("bcc"),
                              recipients=get("recipients"), at=get("at"), source_id=get("id"),
                              default_tz=default_tz, line=number)
        except json.JSONDecodeError as exc:
            yield BadLine(number, f"not JSON: {exc.msg}")
        except InvalidInput as exc:
            yield BadLine(number, exc.message)
        except (ValueError, RecursionError) as exc:
            # json refuses integers of more than 4,300 digits (ValueError) and
            # nesting deeper than the stack (RecursionError).
            yield BadLine(number, f"not JSON this program can read: {type(exc).__name__}")


_SEPARATORS = (",", ";")


def _header(text: str) -> tuple[str, list[str], str | None]:
    """Sniff the separator from the header line; return it, the column names
    (lower case) and a problem, if any."""
    import csv

    best: tuple[str, list[str], str | None] | None = None
    for sep in _SEPARATORS:
        try:
            rows = list(csv.reader((text,), delimiter=sep, strict=True))
        except csv.Error as exc:
            candidate = (sep, [], f"the header is not valid CSV: {exc}")
        else:
            names = [c.strip().lower() for c in rows[0]] if len(rows) == 1 else []
            unknown = [n for n in names if n and n not in _JSON_KEYS]
            duplicate = sorted({n for n in names if n and names.count(n) > 1})
            problem = None
            if not names:
                problem = "the header is not one line of column names"
            elif unknown:
                problem = (f"unknown columns: {_show(', '.join(unknown), 200)[1:-1]} "
                           f"(known: {', '.join(sorted(_JSON_KEYS))})")
            elif duplicate:
                problem = f"columns named twice: {', '.join(duplicate)}"
            candidate = (sep, names, problem)
        if candidate[2] is None:
            return candidate
        if best is None or (best[2] is not None and len(candidate[1]) > len(best[1])):
            best = candidate
    assert best is not None
    return best


def _addresses(cell: str | None) -> list[str]:
    if not cell:
        return []
    return [a for a in cell.replace(",", ";").split(";") if a.strip()]


def read_csv(lines: Iterable[str], default_tz: tzinfo) -> Iterator[UsageInput | BadLine]:
    """One message per line under a header of column names (the JSONL keys).

    The header is matched without regard to case, may start with a UTF-8 BOM,
    and sets the separator: ``,`` or ``;``. Within a cell, addresses are
    separated by ``;`` or ``,``. Every record is one line, parsed on its own
    (no usage field holds a line break), so a stray quote costs that line
    only. Every non-blank line is a ``UsageInput`` or a ``BadLine``; when the
    header cannot be read, the header and every line after it are ``BadLine``.
    """
    import csv

    csv.field_size_limit(max(csv.field_size_limit(), MAX_LINE_BYTES))
    reader = csv.reader
    sep = ","
    columns: list[str] | None = None
    nameless = False
    broken: str | None = None
    for number, text in enumerate(lines, start=1):
        if number == 1 and text.startswith("\ufeff"):
            text = text[1:]
        unreadable = text.__class__ is UnreadableLine
        if not unreadable and not text.strip():
            continue
        if columns is None:
            if unreadable:
                columns, problem = [], text.reason  # type: ignore[attr-defined]
            else:
                sep, columns, problem = _header(text)
            nameless = "" in columns
            if problem:
                broken = f"not read: the header (line {number}) is not valid"
                yield BadLine(number, problem)
            continue
        if broken:
            yield BadLine(number, broken)
            continue
        if unreadable:
            yield BadLine(number, text.reason)  # type: ignore[attr-defined]
            continue
        record = text.rstrip("\r\n")
        if "\r" in record or "\n" in record:
            yield BadLine(number, "not valid CSV: a carriage return inside the line")
            continue
        try:
            cells = next(reader((record,), delimiter=sep, strict=True))
        except csv.Error as exc:
            yield BadLine(number, f"not valid CSV: {exc} (a quoted cell must close on its own line)")
            continue
        if len(cells) > len(columns):
            yield BadLine(number, f"{len(cells)} cells, but the header names {len(columns)} columns")
            continue
        if nameless and any(c.strip() for n, c in zip(columns, cells) if not n):
            yield BadLine(number, "a value in a column that has no name in the header")
            continue
        row = dict(zip(columns, cells))
        get = row.get
        try:
            yield build_input(direction=get("direction") or None, user=get("user") or None,
                              domain=get("domain") or None, to=_addresses(get("to")), cc=_addresses(get("cc")),
                              bcc=_addresses(get("bcc")), recipients=get("recipients") or None,
                              at=get("at") or None, source_id=get("id") or None,
                              default_tz=default_tz, line=number)
        except InvalidInput as exc:
            yield BadLine(number, exc.message)


# -- Postfix ---------------------------------------------------------------------

# "Nov 26 05:09:58 host program[pid]: text" (classic syslog, no year) or
# "2026-11-26T05:09:58.123456+00:00 host program[pid]: text" (RFC 3339).
# The program name is matched on its last component (postfix/submission/smtpd).
_STAMP = r"(?:(?P<mon>[A-Z][a-z]{2}) +(?P<day>\d{1,2}) (?P<time>\d\d:\d\d:\d\d)|(?P<iso>\d{4}-\d\d-\d\dT\S+))"
_PROGRAM = r" (?P<host>\S+) (?:[^\s\[:]*/)?{name}(?:\[\d+\])?: "
_QID = r"(?P<qid>[0-9A-Za-z]{5,20})"
# Each is matched with ``match``, anchored at the line's start: on a line
# alone, or in place in a block (``match(block, start, end)``, where ``$``
# matches at ``end``, the line's end, as at the end of the line alone).
_SMTPD_SASL = re.compile(
    _STAMP + _PROGRAM.format(name="smtpd") + _QID
    + r": client=.*?, sasl_method=\S+, sasl_username=(?P<user>[^,\s]+)")
_QMGR_ACTIVE = re.compile(
    _STAMP + _PROGRAM.format(name="qmgr") + _QID
    + r": from=<[^>]*>, size=\d+, nrcpt=(?P<n>\d+) \(queue active\)$")
_QMGR_REMOVED = re.compile(_STAMP + _PROGRAM.format(name="qmgr") + _QID + r": removed$")
# What a line the parser needs holds, in the order ``_take`` tests them; the
# block reader looks for these.
_MARKERS = (b"sasl_username=", b"nrcpt=", b"removed\n")
_TEXT_MARKERS = tuple(m.decode() for m in _MARKERS)
_QUARTER_SPAN = timedelta(seconds=899)


def _stored(moment: datetime) -> tuple[datetime, str, int]:
    """A UTC time, as stored ("2026-11-26T10:00:00Z"), and its seconds since the epoch."""
    return moment, moment.isoformat()[:19] + "Z", int(moment.timestamp())

_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                                       "Nov", "Dec"), start=1)}


class PostfixLog:
    """Join smtpd ``sasl_username=`` lines and qmgr ``nrcpt=`` lines by queue id.

    A message counts once, for its SASL user, with ``nrcpt`` recipients, when
    its queue id has both lines (README of the fixtures). State is kept only
    for queue ids in flight and dropped at ``removed``, so memory stays flat.
    Lines it does not need are skipped; ``unused`` counts the SASL lines that
    never met a qmgr line (aborted or refused at end of DATA).
    """

    def __init__(self, *, year: int | None, log_tz: tzinfo, now: datetime | None = None):
        self.year = year
        self.log_tz = log_tz
        self.now = now or datetime.now(timezone.utc)
        self.pending: dict[str, tuple[str, tuple[datetime, str, int], str]] = {}  # qid -> user, time, host
        self.counted: set[str] = set()
        self.skipped = 0
        self.requeued = 0
        self._stamps: dict[str | tuple[str, str, str], tuple[datetime, str, int]] = {}
        self._quarters: dict[tuple[str, str, str, int], tuple[datetime, int, str | None] | None] = {}

    def _when(self, m: re.Match[str]) -> tuple[datetime, str, int]:
        """The line's time in UTC, as stored ("...Z") and as seconds since
        the epoch (cached: a log has many lines a second); raises
        ``InvalidInput`` for an impossible date."""
        iso, mon, day, clock = m.group("iso", "mon", "day", "time")
        stamp = iso or (mon, day, clock)
        known = self._stamps.get(stamp)
        if known is None:
            if len(self._stamps) > 10_000:
                self._stamps.clear()
            known = self._stamps[stamp] = self._parse_when(iso) if iso else self._syslog_when(mon, day, clock)
        return known

    def _parse_when(self, text: str) -> tuple[datetime, str, int]:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput(f"invalid time {_show(text)}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self.log_tz)
        return _stored(in_range(moment, text))

    def _syslog_when(self, mon: str, day: str, clock: str) -> tuple[datetime, str, int]:
        """A syslog time (as ``_when`` gives it), worked out once a quarter
        hour: a quarter hour whose first and last seconds lie 899 s apart in
        UTC has one offset and one year throughout (no zone changes its offset
        twice within 15 minutes, which a test checks), so each of its seconds
        is its start plus the seconds since; and when that start is a UTC
        quarter hour too (every zone but a few before 1972), its text is the
        start's hour with the minutes and seconds written in. Any other
        quarter hour (an offset change in it, a year guessed differently at
        its ends, an impossible date) is worked out for each second."""
        hour, minute = clock[:2], int(clock[3:5])
        quarter = minute // 15
        key = (mon, day, hour, quarter)
        known = self._quarters.get(key, False)
        if known is False:
            if len(self._quarters) > 10_000:
                self._quarters.clear()
            try:
                first = self._syslog_instant(mon, day, f"{hour}:{quarter * 15:02d}:00")
                last = self._syslog_instant(mon, day, f"{hour}:{quarter * 15 + 14:02d}:59")
            except InvalidInput:
                known = None
            else:
                aligned = first.minute % 15 == 0 and first.second == 0 and first.microsecond == 0
                known = ((first, int(first.timestamp()), first.isoformat()[:14] if aligned else None)
                         if last - first == _QUARTER_SPAN else None)
            self._quarters[key] = known
        if known is not None:
            seconds = int(clock[6:])
            if seconds < 60:
                first, epoch, hour_text = known
                since = (minute - quarter * 15) * 60 + seconds
                moment = first + timedelta(seconds=since)
                if hour_text is None:
                    return _stored(moment)
                return moment, f"{hour_text}{first.minute + since // 60:02d}:{since % 60:02d}Z", epoch + since
        return _stored(self._syslog_instant(mon, day, clock))

    def _syslog_instant(self, mon: str, day_text: str, clock: str) -> datetime:
        month, day = _MONTHS[mon], int(day_text)
        hh, mm, ss = (int(x) for x in clock.split(":"))
        stamp = f"{mon} {day_text} {clock}"
        if self.year is not None:
            years = [self.year]
        else:
            # Syslog has no year: a date more than a day ahead is last year's
            # (a December line read in January), and so is a Feb 29 that the
            # current year does not have.
            current = self.now.astimezone(self.log_tz).year
            years = [current, current - 1]
        for year in years:
            try:
                moment = datetime(year, month, day, hh, mm, ss, tzinfo=self.log_tz)
            except (ValueError, OverflowError):
                continue
            if self.year is None and year == years[0] and moment - self.now > timedelta(days=1):
                continue
            return in_range(moment, stamp)
        raise InvalidInput(f"impossible date {stamp!r} in {' or '.join(str(y) for y in years)}")

    def feed(self, lines: Iterable[str] | Lines) -> Iterator[UsageInput | BadLine]:
        """Messages from a mail log; a needed line that cannot be used (an
        impossible date, an oversize ``nrcpt``, not UTF-8) is a ``BadLine``.

        ``lines`` from ``read_lines`` are read in blocks of bytes, each
        decoded at once: only the lines that hold ``sasl_username=``,
        ``nrcpt=`` or a closing ``removed`` (found with ``str.find``, in C)
        are matched, in place; the rest of a log (connect, TLS, cleanup, smtp,
        disconnect: two lines in three) is counted as skipped and never
        touched by Python. A block holding a line that is not UTF-8 has its
        needed lines read one by one (``_take``). Any other iterable of lines
        is read one line at a time, the reference the block reader is tested
        against.
        """
        if isinstance(lines, Lines):
            yield from self._feed_blocks(lines.blocks())
            return
        take = self._take
        for number, raw in enumerate(lines, start=1):
            item = take(number, raw)
            if item is not None:
                yield item

    def _feed_blocks(self, blocks: Iterable[bytes]) -> Iterator[UsageInput | BadLine]:
        before = 0  # lines before the block
        for block in blocks:
            try:
                text = block.decode("utf-8")
            except UnicodeDecodeError:  # a line that is not text: line by line, as the reference does
                before += yield from self._lines_of_block(block, before)
            else:
                before += yield from self._text_block(text, before)

    @staticmethod
    def _needed(block: str | bytes, markers: tuple) -> list[tuple[int, int]]:
        """Where the lines that hold a marker start, in order, each with the
        first marker it holds (0 ``sasl_username=``, 1 ``nrcpt=``, 2 a closing
        ``removed``: ``_take`` tests them in that order), found in C."""
        find, rfind = block.find, block.rfind
        newline = "\n" if block.__class__ is str else b"\n"
        kinds: dict[int, int] = {}
        setdefault = kinds.setdefault
        for kind, marker in enumerate(markers):
            at = find(marker)
            while at >= 0:
                setdefault(rfind(newline, 0, at) + 1, kind)
                at = find(marker, at + 1)
        return sorted(kinds.items())

    def _text_block(self, text: str, before: int) -> Generator[UsageInput | BadLine, None, int]:
        """A block that is all UTF-8 text, so every line of it is what
        ``read_lines`` would give: each line holding a marker is matched in
        place (the patterns' ``match`` at the line's start, up to its end),
        never cut out of the block; ``_take``'s steps, inlined."""
        find, count = text.find, text.count
        sasl, active, removed = _SMTPD_SASL.match, _QMGR_ACTIVE.match, _QMGR_REMOVED.match
        pending, counted, when_of = self.pending, self.counted, self._when
        needed = self._needed(text, _TEXT_MARKERS)
        seen, newlines = 0, 0  # newlines in text[:seen]
        taken = 0
        for start, kind in needed:
            end = find("\n", start)
            item: UsageInput | BadLine | None = None
            if kind == 0:
                s = sasl(text, start, end)
                if s is None:
                    continue
                taken += 1
                try:
                    when_known = when_of(s)
                except InvalidInput as exc:
                    item = BadLine(0, exc.message)
                else:
                    qid, user, host = s.group("qid", "user", "host")
                    if len(host) > 255 or len(user) > MAX_NAME:
                        item = BadLine(0, "host name or sasl_username too long")
                    else:
                        pending[qid] = (user, when_known, host)
                        continue
            elif kind == 1:
                q = active(text, start, end)
                if q is None:
                    continue
                taken += 1
                qid, digits = q.group("qid", "n")
                if qid in counted:
                    self.requeued += 1
                    continue
                known = pending.pop(qid, None)
                if known is None:
                    continue  # local pickup or a bounce: nobody authenticated
                counted.add(qid)
                item = self._message(0, known, qid, digits)
                if item is None:
                    continue
            else:
                r = removed(text, start, end)
                if r is None:
                    continue
                taken += 1
                qid = r.group("qid")
                counted.discard(qid)
                pending.pop(qid, None)
                continue
            # Its line number, counted in C, only for a line that yields.
            newlines += count("\n", seen, start)
            seen = start
            item.__dict__["line"] = before + newlines + 1  # made just now, not yet seen
            yield item
        lines = newlines + count("\n", seen)  # (the block counted once, in pieces)
        self.skipped += lines - taken
        return lines

    def _lines_of_block(self, block: bytes, before: int) -> Generator[UsageInput | BadLine, None, int]:
        """A block with a line that is not UTF-8: each line holding a marker
        goes through ``_take``, which decodes it on its own."""
        take, find, count = self._take, block.find, block.count
        needed = self._needed(block, _MARKERS)
        seen, newlines = 0, 0  # newlines in block[:seen]
        for start, _ in needed:
            item = take(0, block[start:find(b"\n", start) + 1])
            if item is not None:
                newlines += count(b"\n", seen, start)
                seen = start
                item.__dict__["line"] = before + newlines + 1  # made just now by _take, not yet seen
                yield item
        lines = newlines + count(b"\n", seen)
        self.skipped += lines - len(needed)
        return lines

    def _message(self, number: int, known: tuple[str, tuple[datetime, str, int], str], qid: str,
                 digits: str) -> UsageInput | BadLine | None:
        """The message a qmgr ``nrcpt=`` line counts, for the SASL line
        ``known`` of its queue id (None for no recipients)."""
        user, (when, text, epoch), host = known
        if len(digits) > 12 or int(digits) > MAX_RECIPIENTS:
            return BadLine(number, f"nrcpt={digits[:20]}{'...' if len(digits) > 20 else ''} is more than "
                                   f"{MAX_RECIPIENTS:,} recipients: not a message")
        n = int(digits)
        if n:
            return UsageInput("outbound", user, None, n, 0, 0, when, f"postfix:{host}:{qid}:{epoch}", number, text)
        return None

    def _take(self, number: int, raw: str | bytes) -> UsageInput | BadLine | None:
        """What line ``number`` of the log means, if anything (it updates the
        messages in flight)."""
        if raw.__class__ is bytes:
            raw = decode_line(raw)  # type: ignore[arg-type]
        line = raw.rstrip("\n")  # type: ignore[union-attr]
        # Most lines (cleanup, smtp, connect...) are not needed: a substring
        # test skips them before any regular expression runs.
        if "sasl_username=" in line:
            s = _SMTPD_SASL.match(line)
            if s:
                if raw.__class__ is UnreadableLine:
                    return BadLine(number, raw.reason)  # type: ignore[union-attr]
                try:
                    when_known = self._when(s)
                except InvalidInput as exc:
                    return BadLine(number, exc.message)
                qid, user, host = s.group("qid", "user", "host")
                if len(host) > 255 or len(user) > MAX_NAME:
                    return BadLine(number, "host name or sasl_username too long")
                self.pending[qid] = (user, when_known, host)
                return None
        elif "nrcpt=" in line:
            q = _QMGR_ACTIVE.match(line)
            if q:
                qid, digits = q.group("qid", "n")
                if qid in self.counted:
                    self.requeued += 1
                    return None
                sasl = self.pending.pop(qid, None)
                if sasl is None:
                    return None  # local pickup or a bounce: nobody authenticated
                self.counted.add(qid)
                return self._message(number, sasl, qid, digits)
        elif line.endswith("removed"):
            r = _QMGR_REMOVED.match(line)
            if r:
                self.counted.discard(r.group("qid"))
                self.pending.pop(r.group("qid"), None)
                return None
        self.skipped += 1
        return None
