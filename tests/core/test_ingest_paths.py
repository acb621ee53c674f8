"""How the import gathers its input (issue 22): lines read in blocks (long
lines, a BOM, bytes that are not UTF-8, wherever the blocks end), JSONL read
as ``json`` reads it and checked by ``build_input`` alone, a Postfix log that
gives the same messages however its lines are gathered, times kept as given,
and the shortcuts of the batch and of the syslog clock.
"""

import io
import json
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smtpctl.core.directory.accounts import add_account
from smtpctl.core.directory.agencies import add_agency
from smtpctl.core.directory.credentials import create_credential
from smtpctl.core.directory.domains import add_domain
from smtpctl.core.ingest import lines as ingest_lines
from smtpctl.core.ingest.jsonl import read_jsonl
from smtpctl.core.ingest.lines import UnreadableLine, read_blocks, read_lines
from smtpctl.core.ingest.message import BadLine, UsageInput, build_input, parse_time
from smtpctl.core.ingest.postfix import PostfixLog
from smtpctl.core.metering.batch import _Days, import_usage
from smtpctl.core.model.clock import stored_time
from smtpctl.core.model.errors import InvalidInput
from smtpctl.core.store import Store
from tests.core.test_ingest_fuzz import ZONES, jsonl_line, postfix_line

UTC = timezone.utc
PATHS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def stored_text(item) -> None:
    """A time carried as text is exactly the text the store would write for it."""
    if isinstance(item, UsageInput) and item.at_text is not None:
        assert item.at is not None and item.at_text == stored_time(item.at)


# -- lines ------------------------------------------------------------------------

def lines_as_written(data: bytes, limit: int) -> list[tuple[str, str | None]]:
    """What the lines of ``data`` are, worked out the plain way: split at
    "\n" after a leading BOM; a line over ``limit`` bytes (its "\n"
    included) or not UTF-8 is unreadable, with its reason."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
        if not data:
            return [("", None)]  # a BOM alone is one empty line
    parts = data.split(b"\n")
    ended = [True] * (len(parts) - 1) + [False]
    if parts[-1] == b"":
        parts.pop(), ended.pop()
    out: list[tuple[str, str | None]] = []
    for raw, newline in zip(parts, ended):
        size = len(raw) + newline
        if size > limit:
            out.append(("", f"line of {size:,} bytes is longer than the {limit:,} a message may take"))
            continue
        try:
            out.append((raw.decode("utf-8"), None))
        except UnicodeDecodeError as exc:
            out.append((raw.decode("utf-8", "replace"),
                        f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"))
    return out


@PATHS
@given(st.lists(st.tuples(st.integers(0, 40), st.sampled_from([b"\n", b"\r\n", b""]),
                          st.sampled_from([b"", b"\xff", b"\xc3\xa9", b"\xc3", b"\xe2\x82\xac"])), max_size=8),
       st.sampled_from([1, 2, 5, 16, 20]), st.booleans())
def test_lines_are_read_whole_wherever_the_blocks_end(shape, block_bytes, bom):
    """Over-long lines (here MAX_LINE_BYTES = 20) and lines that are not
    UTF-8 come out as UnreadableLine with their reason, at any block size up
    to the limit, with multi-byte characters cut by the reads; every block is
    whole lines."""
    data = (b"\xef\xbb\xbf" if bom else b"") + b"".join(b"x" * n + extra + end for n, end, extra in shape)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ingest_lines, "MAX_LINE_BYTES", 20)
        patch.setattr(ingest_lines, "BLOCK_BYTES", block_bytes)
        position = [0]
        got = [(str(line), getattr(line, "reason", None)) for line in read_lines(io.BytesIO(data), position)]
        blocks = list(read_blocks(io.BytesIO(data)))
    assert got == lines_as_written(data, 20)
    assert position == [len(data)]
    assert all(isinstance(b, UnreadableLine) or b.endswith("\n") for b in blocks)


def test_a_line_that_is_not_utf8_leaves_the_lines_around_it_in_its_block():
    data = b"a\n\xff b\nc\xc3\xa9\n\xfe\nd"
    blocks = list(read_blocks(io.BytesIO(data)))
    assert blocks == ["a\n", "\ufffd b", "c\u00e9\n", "\ufffd", "d\n"]
    assert [b.reason for b in blocks if isinstance(b, UnreadableLine)] == [
        "not UTF-8 text (byte 0xff at column 1)", "not UTF-8 text (byte 0xfe at column 1)"]


# -- JSONL: decoded by msgspec, checked by build_input alone -----------------------

# Values at the edges of the checks and where msgspec and json part ways
# (msgspec refuses NaN, 1e400, more than 64-bit integers... and json reads them).
EDGE_TIMES = st.sampled_from([
    "2026-10-01T10:00:00Z", "2026-10-01T10:00:00z", " 2026-10-01T10:00:00Z", "2026-10-01T10:00:00Z ",
    "2026-10-01T10:00:00", "2026-10-01T10:00:00+00:00", "2026-10-01T10:00:00.5Z", "2026-W40-4T10:00:00Z",
    "20261001T100000Z", "2026-10-01T24:00:00Z", "2026-10-01T23:59:60Z", "1969-12-31T23:59:59Z",
    "1970-01-01T00:00:00Z", "9999-12-30T00:00:00Z", "9999-12-30T00:00:01Z", "2026-10-01T10:00:00+14:00",
    "２０２６-10-01T10:00:00Z", "2026-10-01T10:00Z", "2026-10-01 10:00:00Z", "", None, 5])
EDGE_USERS = st.sampled_from(["a@d.example", " a@d.example ", "A@D.EXAMPLE", "", " ", "a@d.example\x00",
                              "a\u00a0@d.example", "\u2003a@d.example", "a@d.example\ud800", "x" * 321, "x" * 320,
                              " " + "x" * 320, None, 7])
EDGE_COUNTS = st.one_of(st.integers(-2, 3), st.integers(99_999, 100_001), st.sampled_from([True, 2.0, "3", None]),
                        st.integers(10**18, 10**19), st.sampled_from([2**64, -(2**63) - 1, 10**30]),
                        st.sampled_from([float("nan"), float("inf"), -0.0, 1e300]))
EDGE_IDS = st.one_of(st.sampled_from(["m1", " m1 ", "", " ", "m\x00", "m\u200b", "x" * 500, "x" * 501,
                                      " " + "x" * 500, None, 7, -1, True, "m\udcff", 2**70, 1.5, [], {}]),
                     st.integers(), st.text(max_size=6))
EDGE_DIRECTIONS = st.sampled_from(["outbound", "inbound", "Outbound", " inbound", "", None, "sideways", 0])
EDGE_LISTS = st.one_of(st.none(), st.just("x@y.test"),
                       st.lists(st.sampled_from(["x@y.test", "X@y.test", "<z@y.test>", "nobody", "", " q@y.test ", 5,
                                                 "q@y.test\ud800"]), max_size=3))


@st.composite
def edge_line(draw) -> bytes:
    item = {}
    for key, strategy in (("user", EDGE_USERS), ("domain", st.sampled_from(["d.example", " d.example", "", None])),
                          ("direction", EDGE_DIRECTIONS), ("recipients", EDGE_COUNTS), ("to", EDGE_LISTS),
                          ("cc", EDGE_LISTS), ("bcc", EDGE_LISTS), ("at", EDGE_TIMES), ("id", EDGE_IDS)):
        if draw(st.integers(0, 3)) or key in ("user", "recipients", "at"):
            item[key] = draw(strategy)
    text = json.dumps(item, ensure_ascii=draw(st.booleans()))
    if draw(st.integers(0, 5)) == 0:  # a repeated key: the last one counts
        text = text[:-1] + (", " if item else "") + '"user": "b@d.example"}'
    text = text.encode("utf-8", "surrogatepass")
    return text + draw(st.sampled_from([b"\n", b"\r\n", b" \n", b"\t\n"]))


def as_json_reads_it(line: str, number: int, zone):
    """What build_input makes of a line's values as json reads them, for a
    line json reads as an object of known keys (None for any other line)."""
    try:
        item = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(item, dict) or not item.keys() <= {"user", "domain", "to", "cc", "bcc", "recipients", "at",
                                                        "id", "direction"}:
        return None
    get = item.get
    try:
        return build_input(direction=get("direction"), user=get("user"), domain=get("domain"), to=get("to"),
                           cc=get("cc"), bcc=get("bcc"), recipients=get("recipients"), at=get("at"),
                           source_id=get("id"), default_tz=zone, line=number)
    except InvalidInput as exc:
        return BadLine(number, exc.message)


@PATHS
@given(st.lists(st.one_of(jsonl_line(), edge_line()), max_size=10).map(b"".join), ZONES)
def test_a_jsonl_line_is_read_as_json_reads_it_and_checked_by_build_input(data, zone):
    """msgspec only decodes: a line that json reads as an object of known
    keys gives exactly what build_input gives for json's values, whichever
    decoder read it; every other line is a BadLine."""
    lines = list(read_lines(io.BytesIO(data)))
    got = {item.line: item for item in read_jsonl(lines, zone)}
    for number, line in enumerate(lines, start=1):
        if isinstance(line, UnreadableLine):
            assert got[number] == BadLine(number, line.reason)
        elif not line.strip():
            assert number not in got
        else:
            expected = as_json_reads_it(line, number, zone)
            assert got[number] == expected if expected is not None else isinstance(got[number], BadLine)
            stored_text(got[number])
    assert list(read_jsonl([line for line in lines], zone)) == list(got.values())


@pytest.mark.parametrize("line, expected", [
    ("not json", "not JSON: Expecting value"),
    ('{"user": "a\tb@d.example", "recipients": 1}', "not JSON: Invalid control character at"),
    ('{"user": "a@d.example", "recipients": 1,}', "not JSON: Expecting property name enclosed in double quotes"),
    ('{"user": "a@d.example", "recipients": 1}\x0c', "not JSON: Extra data"),
    ("[1, 2]", "a line must be a JSON object"),
    ('"a@d.example"', "a line must be a JSON object"),
    ('{"user": "a@d.example", "recipients": 1, "colour": "red", "Size": 2}', "unknown keys: Size, colour"),
    ('{"user": "a@d.example", "recipients": 18446744073709551616}',
     "recipients must be between 0 and 100,000, not 18446744073709551616"),
    ('{"user": "a@d.example", "recipients": 1.0}', "recipients must be a whole number"),
    ('{"user": "a@d.example", "recipients": -Infinity}', "recipients must be a whole number"),
    ('{"user": "a@d.example", "to": "x@y.test"}', "to must be a list of addresses"),
    ('{"user": "a@d.example", "to": ["x@y.test\\ud800"]}', "invalid recipient address \'x@y.test\\ud800\'"),
    ('{"user": "a@d.example", "recipients": 1, "at": "2026-10-01T24:00:00Z"}',
     "invalid time \'2026-10-01T24:00:00Z\': use ISO 8601, e.g. 2026-11-26T10:00:00Z"),
    ('{"user": "a@d.example", "recipients": 1, "at": "9999-12-30T00:00:01Z"}',
     "time \'9999-12-30T00:00:01Z\' is out of range (1970-01-01 to 9999-12-30)"),
])
def test_jsonl_reasons_in_json_and_build_input_words(line, expected):
    for given_as in (line, line.encode("utf-8", "surrogatepass")):
        out = list(read_jsonl(list(read_lines(io.BytesIO(given_as + b"\n"))) if isinstance(given_as, bytes)
                              else [given_as], UTC))
        assert out == [BadLine(1, expected)], given_as


def test_jsonl_lines_read_alike_by_both_decoders():
    lines = ['\ufeff{"domain": "d.example", "direction": "Inbound", "to": ["x@y.test", "X@Y.TEST"], "cc": null}',
             '{"user": "a@d.example", "recipients": 2, "user": "b@d.example"}',  # the last key counts
             '{"user": "a@d.example", "recipients": 1, "id": 12345678901234567890123}',
             "", " \t", "\x0c", '\ufeff{"user": "a@d.example", "recipients": 1}']
    out = list(read_jsonl(lines, UTC))
    assert [(i.line, i.direction, i.user, i.domain, i.emails, i.source_id) for i in out[:3]] == [
        (1, "inbound", None, "d.example", 1, None),
        (2, "outbound", "b@d.example", None, 2, None),
        (3, "outbound", "a@d.example", None, 1, "12345678901234567890123")]
    assert out[3:] == [BadLine(7, "not JSON: Expecting value")]  # a BOM is dropped at the start only


def test_a_time_given_as_stored_is_kept_as_given():
    """build_input keeps "2026-10-29T00:00:00Z" as the text to store (the
    store formats no time for it); any other form of the same instant is
    read by parse_time and formatted when stored."""
    def at_of(at):
        item = build_input(direction=None, user="a@d.example", domain=None, to=None, cc=None, bcc=None,
                           recipients=1, at=at, source_id=None, default_tz=UTC)
        return item.at, item.at_text

    instant = parse_time("2026-10-01T10:00:00Z", UTC)
    assert at_of("2026-10-01T10:00:00Z") == (instant, "2026-10-01T10:00:00Z")
    for other in ("2026-W40-4T10:00:00Z", "2026-10-01T10:00:00+00:00", "2026-10-01T12:00:00+02:00",
                  "2026-10-01 10:00:00Z", " 2026-10-01T10:00:00Z", "2026-10-01T10:00:00", "20261001T100000Z"):
        assert at_of(other) == (instant, None), other
    assert at_of("2026-10-01T10:00:00.5Z") == (instant.replace(microsecond=500_000), None)
    assert at_of(None) == (None, None)


def test_times_given_as_stored_or_otherwise_record_the_same_rows(tmp_path, monkeypatch):
    """End to end: the same messages, their times written as stored or in
    other forms, leave the same events, times as stored included."""
    # Lines with no time are recorded at the store's "now": the same instant for
    # both imports, or a second ticking between them tells them apart.
    now = datetime.now(timezone.utc).replace(microsecond=0)
    monkeypatch.setattr(Store, "now", lambda self: now)

    def lines(stored_form: bool) -> bytes:
        out = []
        for n in range(60):
            day, hour, minute = n % 9 + 1, n % 10, n % 6
            at = (f"2026-10-0{day}T1{hour}:0{minute}:00Z" if stored_form or n % 3 == 0 else
                  f"2026-10-0{day}T{12 + hour}:0{minute}:00+02:00" if n % 3 == 1 else
                  f"2026-10-0{day}T1{hour}:0{minute}:00.000Z")
            out.append(json.dumps({"user": "a@d.example", "recipients": n % 4 + 1, "id": f"m{n % 40}", "at": at}))
        out += ['{"domain": "d.example", "direction": "inbound", "recipients": 2}', '{"user": "b@d.example"}',
                "not json", '{"user": "a@d.example", "recipients": 5000}']
        return ("\n".join(out) + "\n").encode()

    results = []
    for stored_form in (True, False):
        with Store.open(tmp_path / f"{stored_form}.db", actor="t") as store:
            add_agency(store, "acme")
            add_account(store, "shop", "acme", daily_limit=150)
            add_domain(store, "d.example", account="shop")
            summary = import_usage(store, read_jsonl(read_lines(io.BytesIO(lines(stored_form))), UTC), batch_size=16)
            rows = store.query("SELECT source_id, at, day, direction, account_id, domain, login, to_count, cc_count, "
                               "bcc_count, emails FROM usage_events ORDER BY id")
            daily = store.query("SELECT * FROM usage_daily ORDER BY day, login, direction")
            results.append((summary.as_dict(), rows, daily))
    assert results[0] == results[1]
    assert results[0][0]["messages"] > 30 and results[0][0]["lines_rejected"] >= 3


# -- Postfix: one reading of a line, however the lines are gathered ------------------

REAL = (
    "Nov 26 05:09:58 mail postfix/submission/smtpd[6726]: connect from localhost[127.0.0.1]\n"
    "Nov 26 05:09:58 mail postfix/submission/smtpd[6726]: 3616C220576: client=localhost[127.0.0.1], "
    "sasl_method=LOGIN, sasl_username=a@d.example\n"
    "Nov 26 05:09:58 mail postfix/cleanup[6732]: 3616C220576: message-id=<rig1.001@acme.test>\n"
    "Nov 26 05:09:58 mail postfix/qmgr[6646]: 3616C220576: from=<a@d.example>, size=449, nrcpt=2 (queue active)\n"
    "Nov 26 05:09:58 mail postfix/smtp[6734]: 3616C220576: to=<c@contoso.test>, relay=127.0.0.1[127.0.0.1]:10025, "
    "delay=0.02, dsn=2.0.0, status=sent (250 2.0.0 Ok)\n"
    "Nov 26 05:09:58 mail postfix/qmgr[6646]: 3616C220576: removed\n"
).encode()
EXTRA = st.sampled_from([REAL, REAL.replace(b"\n", b"\r\n"), b"\n", b"removed\n", b"x removed", b"nrcpt=\n",
                         b"sasl_username=", b"\xef\xbb\xbf", b"\xff removed\n",
                         REAL.replace(b"a@d.example", b"a@d.example\xff")])


# Characters the patterns might read in a way of their own (\s takes
# \x1c-\x1f and Unicode spaces, \d Unicode digits, \r is not a line's end),
# in the fields the patterns read.
ODD = st.sampled_from(["\x1c", "\x1f", "\u00a0", "\u2028", "\u3000", "\u0663", "é", "\t", "\r", ""])


@st.composite
def odd_postfix_lines(draw) -> bytes:
    qid = draw(st.sampled_from(["3616C220576", "ABCDE", "A\u0663BCDE"]))
    stamp = draw(st.sampled_from(["Nov 26 05:09:58", "Nov \u0662\u0666 05:09:58", "2026-11-26T05:09:58Z"]))
    host, user, n = draw(ODD) + "mail" + draw(ODD), "a@d.example" + draw(ODD) + "x", draw(ODD) + "2" + draw(ODD)
    return (f"{stamp} {host} postfix/submission/smtpd[1]: {qid}: client=a[1.2.3.4], sasl_method=PLAIN, "
            f"sasl_username={user}\n"
            f"{stamp} {host} postfix/qmgr[2]: {qid}: from=<a@d.example>, size=1, nrcpt={n} (queue active)\n"
            f"{stamp} {host} postfix/qmgr[2]: {qid}: removed{draw(ODD)}\n").encode()


def postfix_state(parser: PostfixLog) -> tuple:
    return parser.skipped, parser.requeued, parser.pending, parser.counted


def read_log(data: bytes, block_bytes: int | None) -> tuple[list, tuple, list[int]]:
    """The messages of a log read in blocks of ``block_bytes`` (None: a line
    at a time, the lines given as a list), the parser's state after it, and
    the bytes read."""
    parser, position = PostfixLog(year=2026, log_tz=UTC), [0]
    with pytest.MonkeyPatch.context() as patch:
        if block_bytes is None:
            items = list(parser.feed(list(read_lines(io.BytesIO(data), position))))
        else:
            patch.setattr(ingest_lines, "BLOCK_BYTES", block_bytes)
            items = list(parser.feed(read_lines(io.BytesIO(data), position)))
    return [(item, getattr(item, "at_text", None)) for item in items], postfix_state(parser), position


@PATHS
@given(st.lists(st.one_of(postfix_line(), EXTRA, odd_postfix_lines()), max_size=12).map(b"".join),
       st.sampled_from([None, 7, 64, 200]), st.booleans())
def test_a_log_gives_the_same_messages_wherever_its_blocks_end(data, block_bytes, end_without_newline):
    """Messages, line numbers, reasons, times as stored, the lines skipped
    and the messages in flight are the same whether the log is one block,
    many small ones or one line at a time."""
    if end_without_newline:
        data = data.rstrip(b"\n")
    whole, whole_state, _ = read_log(data, 1 << 20)
    got, state, position = read_log(data, block_bytes)
    assert got == whole
    assert state == whole_state
    assert position == [len(data)]
    for item, _ in got:
        stored_text(item)


def test_a_needed_line_that_is_not_utf8_is_rejected_and_its_neighbours_read():
    good = REAL.replace(b"3616C220576", b"AAAAA11")
    data = good + REAL.replace(b"a@d.example", b"a@d.example\xff") + good.replace(b"AAAAA11", b"BBBBB22")
    parser = PostfixLog(year=2026, log_tz=UTC)
    out = [(i.line, getattr(i, "reason", None) or i.emails) for i in parser.feed(read_lines(io.BytesIO(data)))]
    assert out == [(4, 2), (8, "not UTF-8 text (byte 0xff at column 140)"), (16, 2)]
    assert (parser.skipped, parser.pending, parser.counted) == (9, {}, set())


def stored(moment):
    """What the store keeps of a time: itself, its text and its seconds (the slow way)."""
    return moment, stored_time(moment), int(moment.timestamp())


def outcome(call):
    try:
        return call()
    except InvalidInput as exc:
        return exc.message


@PATHS
@given(st.sampled_from(["Jan", "Feb", "Mar", "Apr", "Oct", "Nov", "Dec"]), st.integers(1, 31), st.integers(0, 23),
       st.integers(0, 59), st.integers(0, 60), st.integers(0, 59),
       st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Africa/Monrovia", "Australia/Lord_Howe",
                        "Asia/Kathmandu"]),
       st.sampled_from([1971, 2024, 2026, None]))
def test_a_syslog_time_worked_out_per_quarter_hour_is_the_time_worked_out_per_second(mon, day, hh, mm, ss, other,
                                                                                       zone, year):
    """The quarter-hour cache gives what the per-second computation gives, in
    zones with DST, half- and quarter-hour offsets and Monrovia's -0:44:30,
    with the year given or guessed (the guess turns at now + 1 day)."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    now = datetime(2026, 3, 28, 23, 30, 30, tzinfo=UTC)
    parser = PostfixLog(year=year, log_tz=ZoneInfo(zone), now=now)
    clock, warm = f"{hh:02d}:{mm:02d}:{ss:02d}", f"{hh:02d}:{mm // 15 * 15:02d}:{other:02d}"
    outcome(lambda: parser._syslog_when(mon, str(day), warm))  # the quarter hour is cached now
    assert outcome(lambda: parser._syslog_when(mon, str(day), clock)) == \
        outcome(lambda: stored(parser._syslog_instant(mon, str(day), clock)))


@pytest.mark.parametrize("zone, year, mon, day, hour, minute", [
    ("Europe/Berlin", 2026, "Mar", 29, 2, 0), ("Europe/Berlin", 2026, "Mar", 29, 1, 59),
    ("Europe/Berlin", 2026, "Oct", 25, 2, 30), ("America/New_York", 2026, "Nov", 1, 1, 0),
    ("Australia/Lord_Howe", 2026, "Apr", 5, 1, 59), ("Australia/Lord_Howe", 2026, "Oct", 4, 2, 0),
    ("Africa/Monrovia", 1972, "Jan", 6, 23, 59), ("Africa/Monrovia", 1972, "Jan", 7, 0, 0),
    ("Africa/Monrovia", 1972, "Jan", 7, 0, 44),
    ("UTC", None, "Mar", 29, 23, 30), ("UTC", None, "Feb", 29, 0, 0), ("UTC", 2026, "Feb", 29, 0, 0),
])
def test_the_quarter_hour_cache_at_offset_changes_and_the_year_guess(zone, year, mon, day, hour, minute):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    now = datetime(2026, 3, 28, 23, 30, 30, tzinfo=UTC)  # the year guess turns at Mar 29 23:30:30
    parser = PostfixLog(year=year, log_tz=ZoneInfo(zone), now=now)
    first = minute // 15 * 15
    for m in range(first, first + 15):
        for second in range(0, 61, 1 if m == minute else 7):
            clock = f"{hour:02d}:{m:02d}:{second:02d}"
            assert outcome(lambda clock=clock: parser._syslog_when(mon, str(day), clock)) == \
                outcome(lambda clock=clock: stored(parser._syslog_instant(mon, str(day), clock))), clock


# -- recording: ids not looked up before the insert --------------------------------


def test_a_batch_worked_out_as_new_is_worked_out_again_when_an_id_was_stored(tmp_path):
    """Taken as new, m1 would push the day past the limit and record m3 as the
    crossing; it was stored before, so the batch is worked out again: m1 is a
    duplicate, m2 fills the day to its limit, m3 crosses it."""
    def msg(sid, n, line):
        return UsageInput("outbound", "a@d.example", None, n, 0, 0, None, sid, line)

    with Store.open(tmp_path / "s.db", actor="t") as store:
        add_agency(store, "acme")
        add_account(store, "shop", "acme", daily_limit=10)
        add_domain(store, "d.example", account="shop")
        create_credential(store, "a@d.example", "correct horse battery staple")
        assert import_usage(store, iter([msg("m1", 5, 1)])).messages == 1
        summary = import_usage(store, iter([msg("m1", 5, 1), msg("m2", 5, 2), msg("m3", 1, 3), msg("m4", 1, 4)]))
        assert (summary.messages, summary.duplicates, summary.rejected) == (2, 1, 1)
        assert [(c.emails, c.limit) for c in summary.crossings] == [(11, 10)]
        assert summary.rejected_lines[0]["line"] == 4
        assert store.scalar("SELECT sum(emails) FROM usage_events") == 11
        assert store.scalar("SELECT sum(emails) FROM usage_daily") == 11
        assert store.scalar("SELECT count(*) FROM usage_events WHERE source_id = 'm1'") == 1


@PATHS
@given(st.one_of(st.integers(0, 4_102_444_800), st.integers(63_072_000 + 86_400 * 6, 63_072_000 + 86_400 * 7)),  # Monrovia, 1972-01-07
       st.sampled_from(["UTC", "Africa/Monrovia", "Asia/Kathmandu", "Australia/Lord_Howe", "Pacific/Chatham",
                        "America/St_Johns", "Pacific/Kiritimati"]))
def test_the_day_of_a_time_given_as_stored_is_its_day_in_the_zone(seconds, zone):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    days = _Days(ZoneInfo(zone))
    at = datetime.fromtimestamp(seconds, UTC)
    for moment in (at, at.replace(second=0), at.replace(minute=at.minute // 10 * 10, second=0)):
        assert days.of_text(moment, stored_time(moment)) == moment.astimezone(ZoneInfo(zone)).date().isoformat()
        assert days(moment) == days.of_text(moment, stored_time(moment))


def test_the_day_of_a_time_given_as_stored_where_monrovia_left_its_offset():
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    zone = ZoneInfo("Africa/Monrovia")  # -0:44:30 until 1972-01-07 00:44:30 UTC, a local midnight before
    days = _Days(zone)
    at = datetime(1972, 1, 6, 23, 30, tzinfo=UTC)
    while at < datetime(1972, 1, 7, 1, 30, tzinfo=UTC):
        assert days.of_text(at, stored_time(at)) == at.astimezone(zone).date().isoformat(), at
        at += timedelta(seconds=15)
