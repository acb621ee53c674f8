"""Hostile and careless input to the parsers (issue 10): every row of the
issue's table that concerns parsing, and the local-day cache against zoneinfo."""

import io
import zoneinfo
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpctl.core.ingest.csv import read_csv
from smtpctl.core.ingest.jsonl import read_jsonl
from smtpctl.core.ingest.lines import MAX_LINE_BYTES, UnreadableLine, format_for, read_lines
from smtpctl.core.ingest.message import MAX_RECIPIENTS, BadLine, UsageInput, count_addresses, parse_time
from smtpctl.core.ingest.postfix import PostfixLog
from smtpctl.core.metering.batch import _Days
from smtpctl.core.model.errors import InvalidInput

UTC = timezone.utc


def lines_of(data: bytes) -> list[str]:
    return list(read_lines(io.BytesIO(data)))


def kinds(items) -> list[tuple]:
    return [("ok", i.line, i.emails, i.source_id) if isinstance(i, UsageInput) else ("bad", i.line, i.reason)
            for i in items]


# -- JSONL ----------------------------------------------------------------------

OUT_OF_RANGE = "is out of range (1970-01-01 to 9999-12-30)"


@pytest.mark.parametrize("at", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00",
                                "9999-12-31T23:59:59", "1969-12-31T23:59:59Z", "0001-01-01"])
def test_jsonl_out_of_range_times_are_rejected_lines(at):
    line = f'{{"user": "a@d.example", "recipients": 1, "at": "{at}"}}\n'
    good = '{"user": "a@d.example", "recipients": 2, "at": "2026-11-26T10:00:00Z"}\n'
    out = list(read_jsonl([line, good], ZoneInfo("Pacific/Kiritimati")))
    assert kinds(out) == [("bad", 1, f"time {at!r} {OUT_OF_RANGE}"), ("ok", 2, 2, None)]


def test_parse_time_never_overflows_in_any_zone():
    for zone in ("Pacific/Kiritimati", "Etc/GMT+12", "America/New_York"):
        for text in ("0001-01-01T00:00:00", "9999-12-31T23:59:59", "0001-01-01T00:00:00+14:00"):
            with pytest.raises(InvalidInput, match="out of range"):
                parse_time(text, ZoneInfo(zone))
    assert parse_time("1970-01-01T00:00:00Z", UTC) == datetime(1970, 1, 1, tzinfo=UTC)


def test_ids_that_are_not_utf8_are_rejected_never_merged():
    data = (b'{"user": "a@d.example", "recipients": 1, "id": "m-\xff"}\n'
            b'{"user": "a@d.example", "recipients": 1, "id": "m-\xfe"}\n'
            b'{"user": "a@d.example", "recipients": 1, "id": "m-\xc3\xa9"}\n')
    out = list(read_jsonl(lines_of(data), UTC))
    assert kinds(out) == [("bad", 1, "not UTF-8 text (byte 0xff at column 51)"),
                          ("bad", 2, "not UTF-8 text (byte 0xfe at column 51)"),
                          ("ok", 3, 1, "m-é")]


def test_ids_with_escaped_lone_surrogates_are_rejected():
    out = list(read_jsonl(['{"user": "a@d.example", "recipients": 1, "id": "m-\\udcff"}'], UTC))
    assert kinds(out) == [("bad", 1, "id must be at most 500 printable characters")]


@pytest.mark.parametrize("line, reason", [
    ('{"user": "a@d.example", "recipients": 1e400}', "recipients must be a whole number"),
    ('{"user": "a@d.example", "recipients": NaN}', "recipients must be a whole number"),
    ('{"user": "a@d.example", "recipients": "1_000"}', "recipients must be a whole number, not '1_000'"),
    ('{"user": "a@d.example", "recipients": 100001}', "recipients must be between 0 and 100,000, not 100001"),
    ('{"user": "a@d.example", "recipients": ' + "9" * 5000 + "}", "not JSON this program can read: ValueError"),
    ("[" * 100_000 + "]" * 100_000, "not JSON this program can read: RecursionError"),
    ('{"direction": 5, "user": "a@d.example", "recipients": 1}', "direction must be outbound or inbound, not 5"),
    ('{"user": ["a@d.example"], "recipients": 1}', "user must be a string, not ['a@d.example']"),
    ('{"user": "a@d.example", "to": [1]}', "a recipient must be an address (a string), not 1"),
    ('{"user": "a@d.example", "recipients": 1, "at": 20261126}', "at must be an ISO 8601 time (a string), not 20261126"),
    ('{"user": "a@d.example", "recipients": 1, "id": {"a": 1}}', "id must be a string, not {'a': 1}"),
    ('{"user": "' + "a" * 400 + '@d.example", "recipients": 1}', "user must be at most 320 printable characters"),
])
def test_jsonl_hostile_values_are_rejected_lines(line, reason):
    assert kinds(read_jsonl([line], UTC)) == [("bad", 1, reason)]


def test_jsonl_bom_is_read():
    data = '\ufeff{"user": "a@d.example", "recipients": 3}\n'.encode()
    assert kinds(read_jsonl(lines_of(data), UTC)) == [("ok", 1, 3, None)]


def test_address_lists_are_bounded_at_parse():
    to = [f"r{i}@x.test" for i in range(MAX_RECIPIENTS + 1)]
    with pytest.raises(InvalidInput, match="more than 100,000 recipients in one message"):
        count_addresses(to, [], [])


def test_overlong_line_is_rejected_without_being_held():
    data = b'{"user": "a@d.example", "recipients": 1}\n' + b"x" * (MAX_LINE_BYTES + 10) + b"\n" + \
        b'{"user": "a@d.example", "recipients": 2}\n'
    position = [0]
    lines = list(read_lines(io.BytesIO(data), position))
    assert position == [len(data)] and len(lines) == 3 and isinstance(lines[1], UnreadableLine)
    assert kinds(read_jsonl(lines, UTC)) == [
        ("ok", 1, 1, None),
        ("bad", 2, f"line of {MAX_LINE_BYTES + 11:,} bytes is longer than the {MAX_LINE_BYTES:,} a message may take"),
        ("ok", 3, 2, None)]


# -- CSV ------------------------------------------------------------------------

def test_csv_one_stray_quote_costs_that_line_only():
    rows = ["user,recipients,id\n", 'a@d.example,1,"broken\n'] + [f"a@d.example,1,c{i}\n" for i in range(1000)]
    out = list(read_csv(rows, UTC))
    assert out[0] == BadLine(2, "not valid CSV: unexpected end of data (a quoted cell must close on its own line)")
    assert len(out) == 1001 and all(isinstance(i, UsageInput) for i in out[1:])
    assert [i.line for i in out[1:]] == list(range(3, 1003))


def test_csv_field_over_128_kib_is_read():
    long_id = "i" * 200  # an id over 500 is refused by rule, so test the field limit with addresses
    many = ";".join(f"r{i}@example.test" for i in range(10_000))  # ~170 KiB in one cell
    rows = ["user,to,id\n", f"a@d.example,{many},{long_id}\n", f'a@d.example,"{many}",q\n']
    out = list(read_csv(rows, UTC))
    assert kinds(out) == [("ok", 2, 10_000, long_id), ("ok", 3, 10_000, "q")]


@pytest.mark.parametrize("data", [
    "\ufeffuser,recipients,id\r\na@d.example,2,x1\r\n".encode(),  # Excel: a BOM and CRLF
    b"User,Recipients,ID\na@d.example,2,x1\n",
    b"user;recipients;id\na@d.example;2;x1\n",
    b" USER ; Recipients ;id\na@d.example;2;x1\n\n",
])
def test_csv_bom_header_case_and_separator(data):
    assert kinds(read_csv(lines_of(data), UTC)) == [("ok", 2, 2, "x1")]


def test_csv_address_cells_take_semicolons_or_commas_in_both_dialects():
    comma = ["user,to,cc\n", 'a@d.example,x@y.test;z@y.test,"c@y.test,d@y.test"\n']
    semi = ["user;to;cc\n", 'a@d.example;x@y.test,z@y.test;"c@y.test;d@y.test"\n']
    for rows in (comma, semi):
        (item,) = read_csv(rows, UTC)
        assert (item.to, item.cc) == (2, 2)


def test_csv_bad_header_rejects_every_line_it_covers():
    rows = ["user,recipient\n", "a@d.example,1\n", "\n", "a@d.example,2\n"]
    assert kinds(read_csv(rows, UTC)) == [
        ("bad", 1, "unknown columns: recipient (known: at, bcc, cc, direction, domain, id, recipients, to, user)"),
        ("bad", 2, "not read: the header (line 1) is not valid"),
        ("bad", 4, "not read: the header (line 1) is not valid")]


@pytest.mark.parametrize("row, reason", [
    ("a@d.example,1,x,extra\n", "4 cells, but the header names 3 columns"),
    (b"a@d.example,1,\xff\n", "not UTF-8 text (byte 0xff at column 15)"),
    ('a@d.example,1,"x"y\n', "not valid CSV: ',' expected after '\"' (a quoted cell must close on its own line)"),
    ("a@d.example,1,x\rb@d.example,1,y\n", "not valid CSV: a carriage return inside the line"),
])
def test_csv_bad_rows_are_rejected_lines(row, reason):
    data = b"user,recipients,id\n" + (row if isinstance(row, bytes) else row.encode()) + b"a@d.example,1,z\n"
    assert kinds(read_csv(lines_of(data), UTC)) == [("bad", 2, reason), ("ok", 3, 1, "z")]


def test_csv_duplicate_and_nameless_columns():
    assert kinds(read_csv(["user,User\n", "a@d.example,b@d.example\n"], UTC)) == [
        ("bad", 1, "columns named twice: user"), ("bad", 2, "not read: the header (line 1) is not valid")]
    rows = ["user,recipients,\n", "a@d.example,1,\n", "a@d.example,1,oops\n"]
    assert kinds(read_csv(rows, UTC)) == [
        ("ok", 2, 1, None), ("bad", 3, "a value in a column that has no name in the header")]


# -- Postfix --------------------------------------------------------------------

def sasl(stamp: str, qid: str) -> str:
    return f"{stamp} mx postfix/submission/smtpd[1]: {qid}: client=app[10.0.0.1], sasl_method=PLAIN, " \
           "sasl_username=a@d.example\n"


def qmgr(stamp: str, qid: str, n: str) -> str:
    return f"{stamp} mx postfix/qmgr[2]: {qid}: from=<a@d.example>, size=100, nrcpt={n} (queue active)\n"


@pytest.mark.parametrize("stamp, reason", [
    ("Feb 29 10:00:00", "impossible date 'Feb 29 10:00:00' in 2025"),
    ("Feb 30 10:00:00", "impossible date 'Feb 30 10:00:00' in 2025"),
    ("Apr 31 10:00:00", "impossible date 'Apr 31 10:00:00' in 2025"),
    ("Jan  0 10:00:00", "impossible date 'Jan 0 10:00:00' in 2025"),
    ("Jan  1 25:00:00", "impossible date 'Jan 1 25:00:00' in 2025"),
    ("2025-02-29T10:00:00Z", "invalid time '2025-02-29T10:00:00Z'"),
    ("0001-01-01T00:00:00+14:00", f"time '0001-01-01T00:00:00+14:00' {OUT_OF_RANGE}"),
])
def test_postfix_impossible_dates_are_rejected_lines(stamp, reason):
    log = [sasl(stamp, "AAAAA1"), qmgr(stamp, "AAAAA1", "1"),
           sasl("Mar  1 10:00:00", "BBBBB2"), qmgr("Mar  1 10:00:00", "BBBBB2", "2")]
    assert kinds(PostfixLog(year=2025, log_tz=UTC).feed(log)) == [
        ("bad", 1, reason), ("ok", 4, 2, f"postfix:mx:BBBBB2:{int(datetime(2025, 3, 1, 10, tzinfo=UTC).timestamp())}")]


def test_postfix_feb_29_without_a_year_is_the_last_leap_year():
    now = datetime(2029, 1, 10, tzinfo=UTC)  # 2029 has no Feb 29; 2028 has
    out = list(PostfixLog(year=None, log_tz=UTC, now=now).feed([sasl("Feb 29 10:00:00", "AAAAA1"),
                                                                qmgr("Feb 29 10:00:00", "AAAAA1", "1")]))
    assert out[0].at == datetime(2028, 2, 29, 10, tzinfo=UTC)
    late = datetime(2030, 1, 10, tzinfo=UTC)  # neither 2030 nor 2029 has one
    assert kinds(PostfixLog(year=None, log_tz=UTC, now=late).feed([sasl("Feb 29 10:00:00", "AAAAA1")])) == [
        ("bad", 1, "impossible date 'Feb 29 10:00:00' in 2030 or 2029")]


@pytest.mark.parametrize("n", ["999999999999", "100001", "9" * 5000])
def test_postfix_oversize_nrcpt_is_a_rejected_line(n):
    shown = n if len(n) <= 20 else n[:20] + "..."
    out = list(PostfixLog(year=2026, log_tz=UTC).feed([sasl("Mar  1 10:00:00", "AAAAA1"),
                                                       qmgr("Mar  1 10:00:00", "AAAAA1", n)]))
    assert kinds(out) == [("bad", 2, f"nrcpt={shown} is more than 100,000 recipients: not a message")]


def test_postfix_non_utf8_lines_are_rejected_only_when_needed():
    data = (b"Mar  1 10:00:00 mx postfix/cleanup[3]: AAAAA1: warning: header Subject: caf\xe9\n"
            + sasl("Mar  1 10:00:00", "AAAAA1").replace("a@d.example", "a\xff@d.example").encode("latin-1")
            + qmgr("Mar  1 10:00:00", "AAAAA1", "1").encode())
    parser = PostfixLog(year=2026, log_tz=UTC)
    assert kinds(parser.feed(lines_of(data))) == [("bad", 2, "not UTF-8 text (byte 0xff at column 113)")]
    assert parser.skipped == 1


# -- the format from the file name -----------------------------------------------

@pytest.mark.parametrize("name, fmt", [
    ("day.jsonl", "jsonl"), ("DAY.NDJSON", "jsonl"), ("/var/x/day.csv", "csv"), ("maillog", "postfix"),
    ("/var/log/maillog.1", "postfix"), ("mail.log", "postfix"), ("mail.log.2", "postfix"), ("events.txt", None),
    ("mail", None), ("-", None),
])
def test_format_from_the_file_name(name, fmt):
    assert format_for(name) == fmt


# -- the local day ----------------------------------------------------------------

def test_monrovia_before_1972_is_on_the_right_day():
    days = _Days(ZoneInfo("Africa/Monrovia"))  # -0:44:30 until 1972
    # 00:44:40 UTC is 00:00:10 local: the same day; 00:44:20 UTC is 23:59:50 the day before.
    assert days(datetime(1971, 6, 1, 0, 44, 20, tzinfo=UTC)) == "1971-05-31"
    assert days(datetime(1971, 6, 1, 0, 44, 40, tzinfo=UTC)) == "1971-06-01"
    assert days(datetime(1971, 6, 1, 0, 30, 0, tzinfo=UTC)) == "1971-05-31"
    assert days(datetime(1971, 6, 1, 0, 59, 0, tzinfo=UTC)) == "1971-06-01"


ZONES = sorted(zoneinfo.available_timezones())
SECONDS_1900_2100 = (int(datetime(1900, 1, 1, tzinfo=UTC).timestamp()), int(datetime(2100, 1, 1, tzinfo=UTC).timestamp()))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(ZONES), st.lists(st.integers(*SECONDS_1900_2100), min_size=1, max_size=20),
       st.lists(st.integers(-7200, 7200), max_size=20))
def test_local_day_equals_zoneinfo_for_every_zone(zone_name, instants, nearby):
    zone = ZoneInfo(zone_name)
    days = _Days(zone)
    # Instants, and others near them (the cache is shared), in one cache.
    moments = [datetime.fromtimestamp(t, UTC) for t in instants]
    moments += [moments[0] + timedelta(seconds=d) for d in nearby]
    for moment in moments:
        assert days(moment) == moment.astimezone(zone).date().isoformat(), (zone_name, moment)


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(ZONES), st.integers(*SECONDS_1900_2100))
def test_local_day_around_local_midnight(zone_name, t):
    """Every second of the 15 minutes either side of the local midnight near ``t``."""
    zone = ZoneInfo(zone_name)
    local = datetime.fromtimestamp(t, UTC).astimezone(zone)
    midnight = datetime.combine(local.date(), datetime.min.time(), tzinfo=zone).astimezone(UTC)
    days = _Days(zone)
    for s in range(-900, 901, 7):
        moment = midnight + timedelta(seconds=s)
        assert days(moment) == moment.astimezone(zone).date().isoformat(), (zone_name, moment)


def test_no_zone_changes_offset_twice_within_a_cache_span():
    """_Days relies on it: a quarter hour with one offset at both ends has it throughout."""
    from zoneinfo import _zoneinfo  # the pure-Python class exposes the transition times

    for name in ZONES:
        transitions = _zoneinfo.ZoneInfo.no_cache(name)._trans_utc
        gaps = [b - a for a, b in zip(transitions, transitions[1:])]
        assert not gaps or min(gaps) > _Days.SPAN, name
