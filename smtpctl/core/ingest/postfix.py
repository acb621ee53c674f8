"""A Postfix mail log as usage input: SASL logins joined with their queue's recipient counts."""

from __future__ import annotations

import re
from collections.abc import Generator, Iterable, Iterator
from datetime import datetime, timedelta, timezone, tzinfo

from smtpctl.core.ingest.lines import Lines, UnreadableLine
from smtpctl.core.ingest.message import MAX_NAME, MAX_RECIPIENTS, BadLine, UsageInput, _show, in_range
from smtpctl.core.model.errors import InvalidInput

# "Nov 26 05:09:58 host program[pid]: text" (classic syslog, no year) or
# "2026-11-26T05:09:58.123456+00:00 host program[pid]: text" (RFC 3339).
# The program name is matched on its last component (postfix/submission/smtpd).
_STAMP = r"(?:(?P<mon>[A-Z][a-z]{2}) +(?P<day>\d{1,2}) (?P<time>\d\d:\d\d:\d\d)|(?P<iso>\d{4}-\d\d-\d\dT\S+))"


_PROGRAM = r" (?P<host>\S+) (?:[^\s\[:]*/)?{name}(?:\[\d+\])?: "


_QID = r"(?P<qid>[0-9A-Za-z]{5,20})"


# Each is matched in place in a block, ``match(block, start, end)``: anchored
# at the line's start, ``$`` matching at ``end``, the line's end.
_SMTPD_SASL = re.compile(
    _STAMP + _PROGRAM.format(name="smtpd") + _QID
    + r": client=.*?, sasl_method=\S+, sasl_username=(?P<user>[^,\s]+)")


_QMGR_ACTIVE = re.compile(
    _STAMP + _PROGRAM.format(name="qmgr") + _QID
    + r": from=<[^>]*>, size=\d+, nrcpt=(?P<n>\d+) \(queue active\)$")


_QMGR_REMOVED = re.compile(_STAMP + _PROGRAM.format(name="qmgr") + _QID + r": removed$")


# What a line the parser needs holds, in the order ``_take`` tests them: each
# block is searched for these.
_MARKERS = ("sasl_username=", "nrcpt=", "removed\n")


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

        ``lines`` from ``read_lines`` are read in blocks (``read_blocks``):
        only the lines that hold ``sasl_username=``, ``nrcpt=`` or a closing
        ``removed`` (found with ``str.find``, in C) are read, in place, by
        ``_take``; the rest of a log (connect, TLS, cleanup, smtp,
        disconnect: two lines in three) is counted as skipped and never
        touched by Python. Any other iterable of lines is read a line at a
        time, each line a block of its own.
        """
        blocks = lines.blocks() if isinstance(lines, Lines) else lines
        before = 0  # lines before the block
        for block in blocks:
            before += yield from self._block(block, before)

    def _block(self, block: str, before: int) -> Generator[UsageInput | BadLine, None, int]:
        """The messages a block of whole lines (or one ``UnreadableLine``)
        completes; returns its number of lines."""
        unreadable = block.reason if block.__class__ is UnreadableLine else None  # type: ignore[attr-defined]
        text = block if block.endswith("\n") else block + "\n"
        find, count, take = text.find, text.count, self._take
        # Where the lines that hold a marker start, each with the first marker
        # it holds (the order _take tests them in).
        kinds: dict[int, int] = {}
        for kind, marker in enumerate(_MARKERS):
            at = find(marker)
            while at >= 0:
                kinds.setdefault(text.rfind("\n", 0, at) + 1, kind)
                at = find(marker, at + 1)
        seen, newlines = 0, 0  # newlines in text[:seen]
        for start, kind in sorted(kinds.items()):
            newlines += count("\n", seen, start)
            seen = start
            item = take(text, start, find("\n", start), kind, before + newlines + 1, unreadable)
            if item is not None:
                yield item
        lines = newlines + count("\n", seen)
        self.skipped += lines - len(kinds)
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

    def _take(self, text: str, start: int, end: int, kind: int, number: int,
              unreadable: str | None) -> UsageInput | BadLine | None:
        """What line ``number``, ``text[start:end]``, means, if anything (it
        updates the messages in flight). ``kind`` is the first marker it
        holds (0 ``sasl_username=``, 1 ``nrcpt=``, 2 a closing ``removed``);
        ``unreadable`` why the line is not text, if it is not (its bytes
        decoded with U+FFFD): a SASL line's login cannot then be trusted.
        Each pattern matches in place, anchored at the line's start, ``$`` at
        its end; a line no pattern matches is skipped."""
        if kind == 0:
            s = _SMTPD_SASL.match(text, start, end)
            if s:
                if unreadable is not None:
                    return BadLine(number, unreadable)
                try:
                    when_known = self._when(s)
                except InvalidInput as exc:
                    return BadLine(number, exc.message)
                qid, user, host = s.group("qid", "user", "host")
                if len(host) > 255 or len(user) > MAX_NAME:
                    return BadLine(number, "host name or sasl_username too long")
                self.pending[qid] = (user, when_known, host)
                return None
        elif kind == 1:
            q = _QMGR_ACTIVE.match(text, start, end)
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
        else:
            r = _QMGR_REMOVED.match(text, start, end)
            if r:
                qid = r.group("qid")
                self.counted.discard(qid)
                self.pending.pop(qid, None)
                return None
        self.skipped += 1
        return None
