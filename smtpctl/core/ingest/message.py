"""One message as given, and the one validation of its fields (``build_input``),
which ``usage record``, the JSONL and the CSV readers all call."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import datetime, timezone, tzinfo
from typing import Any

from smtpctl.core.model.errors import InvalidInput

MAX_RECIPIENTS = 100_000  # per message; a larger count is a typo, not a message


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


# A time as the store writes it (``clock.stored_time``): UTC to the second, "Z".
_STORED_FORM = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z").fullmatch


def parse_time(text: str, default_tz: tzinfo) -> datetime:
    """ISO 8601; a time without an offset is in ``default_tz`` (the store's).

    Returns an aware UTC datetime between 1970 and 9999; raises
    ``InvalidInput`` for anything else (never ``OverflowError``).
    """
    return _read_time(text, default_tz)[0]


def _read_time(text: str, default_tz: tzinfo) -> tuple[datetime, str | None]:
    """``parse_time``'s time, and ``text`` itself when it is the time exactly
    as stored ("2026-11-26T10:00:00Z"): recording it then formats no time (a
    tenth of an import's time)."""
    if _STORED_FORM(text):
        try:
            moment = datetime.fromisoformat(text)  # reads "Z" as timezone.utc
        except ValueError:
            pass  # (24:00:00, February 30th...: the general way below says why)
        else:
            if EARLIEST <= moment <= LATEST:
                return moment, text
    raw = text.strip()
    try:
        moment = datetime.fromisoformat(raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw)
    except ValueError:
        raise InvalidInput(f"invalid time {_show(text)}: use ISO 8601, e.g. 2026-11-26T10:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=default_tz)
    elif moment.tzinfo is timezone.utc and EARLIEST <= moment <= LATEST:
        return moment, None  # "...Z" in another form: already UTC and in range
    return in_range(moment, text), None


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


def count(value: Any, what: str) -> int:
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
            to_n, cc_n, bcc_n = recipients, 0, 0  # (at least one recipient)
        else:
            to_n, cc_n, bcc_n = count(recipients, "recipients"), 0, 0
            if to_n == 0:
                raise InvalidInput(_NO_RECIPIENT)
    else:
        to_n, cc_n, bcc_n = count_addresses(*lists) if lists else (0, 0, 0)
        if to_n + cc_n + bcc_n == 0:
            raise InvalidInput(_NO_RECIPIENT)
    if at.__class__ is str:
        when, at_text = _read_time(at, default_tz) if at else (None, None)
    elif at is None:
        when = at_text = None
    else:
        raise InvalidInput(f"at must be an ISO 8601 time (a string), not {_show(at)}")
    if source_id.__class__ is str:
        sid = source_id.strip()
    elif source_id is None:
        sid = ""
    elif isinstance(source_id, int) and not isinstance(source_id, bool):
        sid = str(source_id)
    else:
        raise InvalidInput(f"id must be a string, not {_show(source_id)}")
    if len(sid) > MAX_ID or not sid.isprintable():
        raise InvalidInput(f"id must be at most {MAX_ID} printable characters")
    return UsageInput(direction, user, domain, to_n, cc_n, bcc_n, when, sid or None, line, at_text)


_NO_RECIPIENT = "a message needs at least one recipient"


_JSON_KEYS = {"user", "domain", "to", "cc", "bcc", "recipients", "at", "id", "direction"}


_KNOWN_KEYS = _JSON_KEYS.issuperset
