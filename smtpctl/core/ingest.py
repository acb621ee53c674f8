"""Usage input: one message per item, from JSONL, CSV or a Postfix mail log.

Parsers stream: they read one line at a time and yield ``UsageInput`` items
or ``BadLine`` items, never holding the file in memory. Nothing here touches
the store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, Iterable, Iterator

from smtpctl.core.errors import InvalidInput

MAX_RECIPIENTS = 100_000  # per message; a larger count is a typo, not a message


@dataclass(frozen=True)
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

    @property
    def emails(self) -> int:
        return self.to + self.cc + self.bcc


@dataclass(frozen=True)
class BadLine:
    line: int
    reason: str


def parse_time(text: str, default_tz: tzinfo) -> datetime:
    """ISO 8601; a time without an offset is in ``default_tz`` (the store's)."""
    raw = text.strip()
    try:
        moment = datetime.fromisoformat(raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw)
    except ValueError:
        raise InvalidInput(f"invalid time {text!r}: use ISO 8601, e.g. 2026-11-26T10:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=default_tz)
    return moment.astimezone(timezone.utc)


def count_addresses(to: Iterable[str], cc: Iterable[str], bcc: Iterable[str]) -> tuple[int, int, int]:
    """Count recipients the way an MTA delivers them: each address once.

    An address given twice (in any of To, Cc, Bcc, ignoring case) counts once,
    in the first field it appears in. Raises ``InvalidInput`` for an address
    that is not ``local@domain``.
    """
    seen: set[str] = set()
    counts = []
    for field in (to, cc, bcc):
        n = 0
        for address in field:
            address = address.strip()
            if address.startswith("<") and address.endswith(">"):
                address = address[1:-1]
            local, at, host = address.rpartition("@")
            if not at or not local or not host or " " in address or "." not in host:
                raise InvalidInput(f"invalid recipient address {address!r}")
            key = address.lower()
            if key not in seen:
                seen.add(key)
                n += 1
        counts.append(n)
    return counts[0], counts[1], counts[2]


def _count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidInput(f"{what} must be a whole number")
    try:
        number = int(value)
    except ValueError:
        raise InvalidInput(f"{what} must be a whole number, not {value!r}") from None
    if not 0 <= number <= MAX_RECIPIENTS:
        raise InvalidInput(f"{what} must be between 0 and {MAX_RECIPIENTS:,}, not {number}")
    return number


def build_input(*, direction: str | None, user: Any, domain: Any, to: Any, cc: Any, bcc: Any,
                recipients: Any, at: Any, source_id: Any, default_tz: tzinfo, line: int = 0) -> UsageInput:
    """Validate one message's fields (shared by ``usage record``, JSONL and CSV)."""
    direction = (direction or "outbound").strip().lower()
    if direction not in ("outbound", "inbound"):
        raise InvalidInput(f"direction must be outbound or inbound, not {direction!r}")
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
    lists = [to or [], cc or [], bcc or []]
    for name, value in zip(("to", "cc", "bcc"), lists):
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise InvalidInput(f"{name} must be a list of addresses")
    if recipients is not None:
        if any(lists):
            raise InvalidInput("give either recipients (a count) or to/cc/bcc addresses, not both")
        to_n, cc_n, bcc_n = _count(recipients, "recipients"), 0, 0
    else:
        to_n, cc_n, bcc_n = count_addresses(*lists)
    if to_n + cc_n + bcc_n == 0:
        raise InvalidInput("a message needs at least one recipient")
    when = parse_time(str(at), default_tz) if at not in (None, "") else None
    sid = str(source_id).strip() if source_id not in (None, "") else None
    if sid is not None and (len(sid) > 500 or not sid.isprintable()):
        raise InvalidInput("id must be at most 500 printable characters")
    return UsageInput(direction, str(user).strip() if user else None, str(domain).strip() if domain else None,
                      to_n, cc_n, bcc_n, when, sid, line)


_JSON_KEYS = {"user", "domain", "to", "cc", "bcc", "recipients", "at", "id", "direction"}


def read_jsonl(lines: Iterable[str], default_tz: tzinfo) -> Iterator[UsageInput | BadLine]:
    import json

    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            item = json.loads(text)
            if not isinstance(item, dict):
                raise InvalidInput("a line must be a JSON object")
            unknown = set(item) - _JSON_KEYS
            if unknown:
                raise InvalidInput(f"unknown keys: {', '.join(sorted(unknown))}")
            yield build_input(direction=item.get("direction"), user=item.get("user"), domain=item.get("domain"),
                              to=item.get("to"), cc=item.get("cc"), bcc=item.get("bcc"),
                              recipients=item.get("recipients"), at=item.get("at"), source_id=item.get("id"),
                              default_tz=default_tz, line=number)
        except json.JSONDecodeError as exc:
            yield BadLine(number, f"not JSON: {exc.msg}")
        except InvalidInput as exc:
            yield BadLine(number, exc.message)


def read_csv(lines: Iterable[str], default_tz: tzinfo) -> Iterator[UsageInput | BadLine]:
    import csv

    reader = csv.DictReader(lines)
    if reader.fieldnames is None:
        return
    unknown = set(reader.fieldnames) - _JSON_KEYS
    if unknown:
        yield BadLine(1, f"unknown columns: {', '.join(sorted(unknown))} (known: {', '.join(sorted(_JSON_KEYS))})")
        return

    def split(cell: str | None) -> list[str]:
        return [a for a in (cell or "").split(";") if a.strip()]

    for row in reader:
        number = reader.line_num
        try:
            yield build_input(direction=row.get("direction") or None, user=row.get("user") or None,
                              domain=row.get("domain") or None, to=split(row.get("to")), cc=split(row.get("cc")),
                              bcc=split(row.get("bcc")), recipients=row.get("recipients") or None,
                              at=row.get("at") or None, source_id=row.get("id") or None,
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
_SMTPD_SASL = re.compile(
    "^" + _STAMP + _PROGRAM.format(name="smtpd") + _QID + r": client=.*?, sasl_method=\S+, sasl_username=(?P<user>[^,\s]+)")
_QMGR_ACTIVE = re.compile(
    "^" + _STAMP + _PROGRAM.format(name="qmgr") + _QID + r": from=<[^>]*>, size=\d+, nrcpt=(?P<n>\d+) \(queue active\)$")
_QMGR_REMOVED = re.compile("^" + _STAMP + _PROGRAM.format(name="qmgr") + _QID + r": removed$")
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
        self.pending: dict[str, tuple[str, datetime, str]] = {}
        self.counted: set[str] = set()
        self.skipped = 0
        self.requeued = 0
        self._stamps: dict[str, datetime] = {}

    def _when(self, m: re.Match[str]) -> datetime:
        stamp = m.group("iso") or m.group("mon") + m.group("day") + m.group("time")
        moment = self._stamps.get(stamp)
        if moment is None:
            if len(self._stamps) > 10_000:
                self._stamps.clear()
            moment = self._stamps[stamp] = self._parse_when(m)
        return moment

    def _parse_when(self, m: re.Match[str]) -> datetime:
        if m.group("iso"):
            moment = datetime.fromisoformat(m.group("iso").replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=self.log_tz)
            return moment.astimezone(timezone.utc)
        month, day = _MONTHS[m.group("mon")], int(m.group("day"))
        hh, mm, ss = (int(x) for x in m.group("time").split(":"))
        year = self.year if self.year is not None else self.now.astimezone(self.log_tz).year
        moment = datetime(year, month, day, hh, mm, ss, tzinfo=self.log_tz)
        if self.year is None and moment - self.now > timedelta(days=1):
            # Syslog has no year: a December line read in January is last year's.
            moment = moment.replace(year=year - 1)
        return moment.astimezone(timezone.utc)

    def feed(self, lines: Iterable[str]) -> Iterator[UsageInput | BadLine]:
        for number, raw in enumerate(lines, start=1):
            line = raw.rstrip("\n")
            # Most lines (cleanup, smtp, connect...) are not needed: a substring
            # test skips them before any regular expression runs.
            if "sasl_username=" in line:
                s = _SMTPD_SASL.match(line)
                if s:
                    self.pending[s.group("qid")] = (s.group("user"), self._when(s), s.group("host"))
                    continue
            elif "nrcpt=" in line:
                q = _QMGR_ACTIVE.match(line)
                if q:
                    qid = q.group("qid")
                    if qid in self.counted:
                        self.requeued += 1
                        continue
                    sasl = self.pending.pop(qid, None)
                    if sasl is None:
                        continue  # local pickup or a bounce: nobody authenticated
                    self.counted.add(qid)
                    user, when, host = sasl
                    n = int(q.group("n"))
                    if n:
                        yield UsageInput("outbound", user, None, n, 0, 0, when,
                                         f"postfix:{host}:{qid}:{int(when.timestamp())}", number)
                    continue
            elif line.endswith("removed"):
                r = _QMGR_REMOVED.match(line)
                if r:
                    self.counted.discard(r.group("qid"))
                    self.pending.pop(r.group("qid"), None)
                    continue
            self.skipped += 1
