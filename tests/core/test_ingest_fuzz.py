"""Fuzz the three import parsers and `usage import` (issue 10).

The properties: no exception escapes a parser (every line it needs becomes a
``UsageInput`` or a ``BadLine``); through ``import_usage`` on a real store,
every line is recorded, skipped as a duplicate or rejected, the store's
totals grow by exactly what the summary reports, and ``PRAGMA
integrity_check`` is ok; the CLI never exits 1 nor prints a traceback.
"""

import io
import json
from datetime import timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from smtpctl.core.directory.accounts import add_account
from smtpctl.core.directory.agencies import add_agency
from smtpctl.core.directory.domains import add_domain
from smtpctl.core.directory.settings import store_zone
from smtpctl.core.ingest.csv import read_csv
from smtpctl.core.ingest.jsonl import read_jsonl
from smtpctl.core.ingest.lines import read_lines
from smtpctl.core.ingest.message import BadLine, UsageInput
from smtpctl.core.ingest.postfix import PostfixLog
from smtpctl.core.metering.batch import import_usage
from smtpctl.core.store import Store

UTC = timezone.utc
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])
ZONES = st.sampled_from([UTC, ZoneInfo("Africa/Monrovia"), ZoneInfo("Pacific/Kiritimati"), ZoneInfo("Etc/GMT+12")])

# Values a careless or hostile writer puts in a field.
TIMES = st.sampled_from(["2026-10-01T10:00:00Z", "2026-10-01T10:00:00", "2026-10-01", "0001-01-01T00:00:00+14:00",
                         "9999-12-31T23:59:59-12:00", "1969-12-31T23:59:59Z", "2999-01-01T00:00:00Z", "soon", "",
                         "2026-02-30T00:00:00Z", "2026-10-01T10:00:00+24:00"])
USERS = st.sampled_from(["a@d.example", "A@D.EXAMPLE", "b@d.example", "a@shared.example", "a@nope.example", "a@",
                         "@d.example", "a@d.example\x00", "a b@d.example", "a@d.example\udcff", "é@d.example", ""])
ADDRESSES = st.lists(st.sampled_from(["x@y.test", "X@Y.test", "<z@y.test>", "nobody", "a@b", "", "q@y.test\ud800",
                                      "r@y.test"]), max_size=4)
COUNTS = st.one_of(st.integers(-3, 200_000), st.sampled_from(["3", " 7 ", "1_0", "٣", "9" * 30, "", "-1", "1e3"]),
                   st.floats(allow_nan=True), st.booleans(), st.none())
IDS = st.one_of(st.none(), st.sampled_from(["m1", "m2", "m-\udcff", "x" * 501, "tab\there", ""]), st.integers(),
                st.text(max_size=8))
# A few ids that repeat (duplicates) and many that do not (new messages in a shared store).
FRESH_IDS = st.one_of(st.sampled_from(["m1", "m2", ""]), st.integers(0, 10**9).map("n{}".format))
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                                       max_size=3), max_leaves=6)


@st.composite
def jsonl_line(draw) -> bytes:
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(st.binary(max_size=60)).replace(b"\n", b" ") + b"\n"
    if kind == 1:
        return json.dumps(draw(JSON_VALUES)).encode() + b"\n"
    if kind in (2, 3):  # a good line, perhaps with one hostile field
        item = {"user": draw(st.sampled_from(["a@d.example", "b@d.example"])), "recipients": draw(st.integers(1, 20)),
                "at": "2026-10-01T10:00:00Z", "id": draw(FRESH_IDS)}
        if kind == 3:
            key, strategy = draw(st.sampled_from([("user", USERS), ("recipients", COUNTS), ("at", TIMES),
                                                  ("id", IDS), ("to", ADDRESSES)]))
            item[key] = draw(strategy)
        return json.dumps(item, allow_nan=True).encode() + b"\n"
    item = {}
    for key, strategy in (("user", USERS), ("domain", st.sampled_from(["d.example", "shared.example", "x", ""])),
                          ("direction", st.sampled_from(["outbound", "inbound", "Inbound", "sideways", 5])),
                          ("to", ADDRESSES), ("cc", ADDRESSES), ("bcc", ADDRESSES), ("recipients", COUNTS),
                          ("at", TIMES), ("id", IDS), ("colour", st.just("red"))):
        if draw(st.booleans()) if key not in ("user", "recipients") else draw(st.integers(0, 4)):
            item[key] = draw(strategy)
    text = json.dumps(item, allow_nan=True)
    if kind == 5:  # raw bytes in a string, e.g. an id that is not UTF-8
        return text.encode().replace(b'"m1"', b'"m1\xff"').replace(b'"m2"', b'"m1\xfe"') + b"\n"
    return text.encode() + b"\n"


CELLS = st.sampled_from(["a@d.example", "b@d.example", "d.example", "inbound", "outbound", "3", "0", "9" * 20,
                         "x@y.test;z@y.test", "x@y.test,z@y.test", '"x@y.test;z@y.test"', '"', '"a"b', '""', "",
                         "2026-10-01T10:00:00Z", "0001-01-01T00:00:00+14:00", "m1", "m2", "\ufeff", "\r", "é"])
HEADERS = st.lists(st.sampled_from(["user", "User", "RECIPIENTS", "recipients", "to", "cc", "bcc", "at", "id",
                                    "domain", "direction", "colour", "", " user "]), min_size=1, max_size=5)


@st.composite
def csv_file(draw) -> bytes:
    sep = draw(st.sampled_from([",", ";", "\t"]))
    good = draw(st.booleans())
    lines = [sep.join(["User", "recipients", "ID"] if good else draw(HEADERS))]
    for _ in range(draw(st.integers(0, 8))):
        if good and draw(st.booleans()):
            lines.append(sep.join([draw(st.sampled_from(["a@d.example", "b@d.example"])),
                                   str(draw(st.integers(1, 20))), draw(FRESH_IDS)]))
        elif draw(st.integers(0, 9)) == 0:
            lines.append(draw(st.binary(max_size=30)).replace(b"\n", b"").decode("latin-1"))
        else:
            lines.append(draw(st.sampled_from([",", ";"])).join(draw(st.lists(CELLS, max_size=6))))
    data = "\n".join(lines) + draw(st.sampled_from(["", "\n", "\r\n"]))
    raw = data.encode("utf-8", "surrogateescape") if draw(st.booleans()) else data.encode("latin-1", "replace")
    return (b"\xef\xbb\xbf" if draw(st.booleans()) else b"") + raw


STAMPS = st.sampled_from(["Mar  1 10:00:00", "Feb 29 10:00:00", "Feb 30 10:00:00", "Jan  0 00:00:00",
                          "Dec 31 23:59:59", "Jan  1 99:99:99", "2026-03-01T10:00:00Z", "2026-02-30T10:00:00",
                          "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00", "2026-03-01T10:00:00+99:00"])
QIDS = st.one_of(st.sampled_from(["AAAAA1", "BBBBB2", "4F9D21C3A7"]), st.integers(16**5, 16**9).map("{:X}".format))
POSTFIX_USERS = st.sampled_from(["a@d.example", "b@d.example", "a@nope.example", "nobody", "a" * 400 + "@d.example"])


@st.composite
def postfix_line(draw) -> bytes:
    stamp, qid = draw(STAMPS), draw(QIDS)
    host = draw(st.sampled_from(["mx", "mx\xff", "h" * 300]))
    kind = draw(st.integers(0, 5))
    if kind == 5:  # a whole message: both lines, usually good
        stamp = draw(st.sampled_from(["Mar  1 10:00:00", "2026-03-01T10:00:00Z"])) if draw(st.booleans()) else stamp
        user = draw(st.sampled_from(["a@d.example", "b@d.example"])) if draw(st.booleans()) else draw(POSTFIX_USERS)
        n = draw(st.integers(0, 30))
        return (f"{stamp} mx postfix/smtpd[1]: {qid}: client=a[10.0.0.1], sasl_method=PLAIN, sasl_username={user}\n"
                f"{stamp} mx postfix/qmgr[2]: {qid}: from=<{user}>, size=10, nrcpt={n} (queue active)\n").encode()
    if kind == 0:
        text = (f"{stamp} {host} postfix/submission/smtpd[1]: {qid}: client=a[10.0.0.1], sasl_method=PLAIN, "
                f"sasl_username={draw(POSTFIX_USERS)}")
    elif kind == 1:
        n = draw(st.one_of(st.integers(0, 200_000).map(str), st.sampled_from(["999999999999", "9" * 5000])))
        text = f"{stamp} {host} postfix/qmgr[2]: {qid}: from=<a@d.example>, size=10, nrcpt={n} (queue active)"
    elif kind == 2:
        text = f"{stamp} {host} postfix/qmgr[2]: {qid}: removed"
    elif kind == 3:
        text = f"{stamp} {host} postfix/cleanup[3]: {qid}: message-id=<{draw(st.text(max_size=10))}>"
    else:
        return draw(st.binary(max_size=80)).replace(b"\n", b"") + b"\n"
    return text.encode("utf-8", "surrogateescape").replace("\udcff".encode("utf-8", "surrogatepass"), b"\xff") + b"\n"


def parse(fmt: str, data: bytes, zone) -> tuple[list, PostfixLog | None]:
    lines = read_lines(io.BytesIO(data))
    if fmt == "jsonl":
        return list(read_jsonl(lines, zone)), None
    if fmt == "csv":
        return list(read_csv(lines, zone)), None
    parser = PostfixLog(year=None, log_tz=zone)
    return list(parser.feed(lines)), parser


def non_blank_lines(data: bytes) -> list[int]:
    text = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    # Blank as the parsers see it: str.strip() (which also strips \x1c-\x1f and Unicode spaces).
    return [n for n, line in enumerate(text.split(b"\n"), start=1) if line.decode("utf-8", "replace").strip()]


def assert_every_line_accounted(fmt: str, data: bytes, out: list) -> None:
    assert all(isinstance(i, (UsageInput, BadLine)) for i in out)
    numbers = [i.line for i in out]
    if fmt == "postfix":
        assert numbers == sorted(set(numbers))
        return
    wanted = non_blank_lines(data)
    header_ok = fmt == "csv" and wanted and not (out and out[0].line == wanted[0])
    assert numbers == (wanted[1:] if header_ok else wanted)


@FUZZ
@given(st.lists(jsonl_line(), max_size=8).map(b"".join), ZONES)
def test_jsonl_parser_never_raises_and_accounts_for_every_line(data, zone):
    out, _ = parse("jsonl", data, zone)
    assert_every_line_accounted("jsonl", data, out)


@FUZZ
@given(csv_file(), ZONES)
def test_csv_parser_never_raises_and_accounts_for_every_line(data, zone):
    out, _ = parse("csv", data, zone)
    assert_every_line_accounted("csv", data, out)


@FUZZ
@given(st.lists(postfix_line(), max_size=10).map(b"".join), ZONES)
def test_postfix_parser_never_raises(data, zone):
    out, _ = parse("postfix", data, zone)
    assert_every_line_accounted("postfix", data, out)


# -- end to end through a real store ----------------------------------------------

@pytest.fixture(scope="module")
def store(tmp_path_factory):
    with Store.open(tmp_path_factory.mktemp("fuzz") / "s.db", actor="fuzz") as s:
        add_agency(s, "acme")
        add_account(s, "shop", "acme", daily_limit=50)
        add_domain(s, "d.example", account="shop")
        add_domain(s, "shared.example", agency="acme")
        yield s


def store_totals(store) -> tuple[int, int]:
    row = store.query("SELECT count(*) AS n, coalesce(sum(emails), 0) AS e FROM usage_events")[0]
    return row["n"], row["e"]


INPUTS = st.one_of(
    st.tuples(st.just("jsonl"), st.lists(jsonl_line(), max_size=8).map(b"".join)),
    st.tuples(st.just("csv"), csv_file()),
    st.tuples(st.just("postfix"), st.lists(postfix_line(), max_size=10).map(b"".join)),
)


@FUZZ
@given(INPUTS, st.integers(1, 4))
def test_import_records_exactly_what_it_reports(store, fmt_data, batch_size):
    fmt, data = fmt_data
    zone = store_zone(store)
    items, _ = parse(fmt, data, zone)
    before = store_totals(store)
    summary = import_usage(store, iter(items), batch_size=batch_size)
    after = store_totals(store)
    assert (after[0] - before[0], after[1] - before[1]) == (summary.messages, summary.emails)
    assert summary.messages + summary.duplicates + summary.rejected == len(items)
    assert summary.rejected >= sum(isinstance(i, BadLine) for i in items)
    event(f"{fmt}: recorded {'some' if summary.messages else 'none'}, "
          f"duplicates {'some' if summary.duplicates else 'none'}, rejected {'some' if summary.rejected else 'none'}")
    assert store.scalar("PRAGMA integrity_check") == "ok"


# -- the command line ----------------------------------------------------------------

@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(INPUTS, st.sampled_from([None, "jsonl", "csv", "postfix"]), st.booleans())
def test_the_cli_never_exits_1(fmt_data, forced, json_out):
    from smtpctl.cli.typer_app import app

    _, data = fmt_data
    args = ["usage", "import", "-", *(["--format", forced] if forced else []), *(["--json"] if json_out else [])]
    runner = CliRunner()
    for setup in (["agency", "add", "acme", "--exist-ok"],
                  ["account", "add", "shop", "--agency", "acme", "--exist-ok"],
                  ["domain", "add", "d.example", "--account", "shop", "--exist-ok"]):
        assert runner.invoke(app, setup).exit_code == 0
    result = runner.invoke(app, args, input=data)
    assert result.exit_code in (0, 2), (result.exit_code, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.count("Error: ") <= 1
    if json_out:
        summary = json.loads(result.stdout)
        assert result.exit_code == (2 if summary["lines_rejected"] else 0)
