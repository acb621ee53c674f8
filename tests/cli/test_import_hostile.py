"""`usage import` with hostile and careless input (issue 10): exit codes,
the format from the file name, time overflow on every time option, and
interruption by a real signal."""

import json
import signal
import subprocess
import time

import pytest

from smtpctl.core.store import Store
from tests.conftest import smtpctl_binary

OUT_OF_RANGE = "is out of range (1970-01-01 to 9999-12-30)"


@pytest.fixture(autouse=True)
def world(cli):
    for args in (["agency", "add", "acme"], ["account", "add", "shop", "--agency", "acme"],
                 ["domain", "add", "d.example", "--account", "shop"],
                 ["store", "set", "default_daily_limit", "100000000"]):
        assert cli(*args).exit_code == 0


def totals(cli) -> tuple[int, int]:
    data = json.loads(cli("usage", "report", "--since", "1970-01-01", "--json").stdout)
    return data["total"]["messages"], data["total"]["emails"]


def good(i: int, n: int = 1) -> str:
    return json.dumps({"user": "a@d.example", "recipients": n, "at": "2026-10-01T10:00:00Z", "id": f"g{i}"}) + "\n"


# The rows of the table, as files: (name, bytes, extra args, exit code, stderr, (messages, emails)).
CSV_STRAY = b"user,recipients,id\n" + b'a@d.example,1,"oops\n' + b"".join(
    f"a@d.example,1,c{i}\n".encode() for i in range(1000))
# A cell over 128 KiB (Python's default field limit) within the 1,000-recipient cap: long addresses.
BIG_CELL = ";".join(f"{'r' * 220}{i}@example.test" for i in range(600))
assert len(BIG_CELL) > 128 * 1024
ROWS = [
    ("range.jsonl", (
        '{"user": "a@d.example", "recipients": 1, "at": "0001-01-01T00:00:00+14:00"}\n'
        '{"user": "a@d.example", "recipients": 1, "at": "9999-12-31T23:59:59-12:00"}\n' + good(1, 2)).encode(), [], 2,
     "Reading {src} as jsonl (from its name).\n"
     "Imported 1 message (2 emails); 0 duplicates skipped; 2 lines rejected.\n"
     f"  line 1: time '0001-01-01T00:00:00+14:00' {OUT_OF_RANGE}\n"
     f"  line 2: time '9999-12-31T23:59:59-12:00' {OUT_OF_RANGE}\n"
     "Error: 2 lines rejected (listed above); every other line was imported\n", (1, 2)),
    ("ids.jsonl", b'{"user": "a@d.example", "recipients": 1, "id": "m-\xff"}\n'
                  b'{"user": "a@d.example", "recipients": 1, "id": "m-\xfe"}\n', [], 2,
     "Reading {src} as jsonl (from its name).\n"
     "Imported 0 messages (0 emails); 0 duplicates skipped; 2 lines rejected.\n"
     "  line 1: not UTF-8 text (byte 0xff at column 51)\n"
     "  line 2: not UTF-8 text (byte 0xfe at column 51)\n"
     "Error: 2 lines rejected (listed above); every other line was imported\n", (0, 0)),
    ("stray.csv", CSV_STRAY, [], 2,
     "Reading {src} as csv (from its name).\n"
     "Imported 1,000 messages (1,000 emails); 0 duplicates skipped; 1 line rejected.\n"
     "  line 2: not valid CSV: unexpected end of data (a quoted cell must close on its own line)\n"
     "Error: 1 line rejected (listed above); every other line was imported\n", (1000, 1000)),
    ("big.csv", f"user,to,id\na@d.example,{BIG_CELL},b1\n".encode(), [], 0,
     "Reading {src} as csv (from its name).\n"
     "Imported 1 message (600 emails); 0 duplicates skipped; 0 lines rejected.\n", (1, 600)),
    ("excel.csv", "\ufeffUser;Recipients;ID\r\na@d.example;3;x1\r\n".encode(), [], 0,
     "Reading {src} as csv (from its name).\n"
     "Imported 1 message (3 emails); 0 duplicates skipped; 0 lines rejected.\n", (1, 3)),
    ("day.csv", b"user,recipients\na@d.example,4\n", [], 0,
     "Reading {src} as csv (from its name).\n"
     "Imported 1 message (4 emails); 0 duplicates skipped; 0 lines rejected.\n", (1, 4)),
    ("events.txt", good(1, 5).encode(), [], 0,
     "Reading {src} as jsonl (the default; give --format csv or --format postfix for other input).\n"
     "Imported 1 message (5 emails); 0 duplicates skipped; 0 lines rejected.\n", (1, 5)),
    ("events.txt", b"user,recipients\na@d.example,4\n", ["--format", "csv"], 0,
     "Imported 1 message (4 emails); 0 duplicates skipped; 0 lines rejected.\n", (1, 4)),
    ("maillog", (
        b"Feb 29 10:00:00 mx postfix/smtpd[1]: AAAAA1: client=a[10.0.0.1], sasl_method=PLAIN, sasl_username=a@d.example\n"
        b"Feb 29 10:00:00 mx postfix/qmgr[2]: AAAAA1: from=<a@d.example>, size=1, nrcpt=1 (queue active)\n"
        b"Feb 30 10:00:00 mx postfix/smtpd[1]: AAAAA2: client=a[10.0.0.1], sasl_method=PLAIN, sasl_username=a@d.example\n"
        b"Mar  1 10:00:00 mx postfix/smtpd[1]: AAAAA3: client=a[10.0.0.1], sasl_method=PLAIN, sasl_username=a@d.example\n"
        b"Mar  1 10:00:00 mx postfix/qmgr[2]: AAAAA3: from=<a@d.example>, size=1, nrcpt=999999999999 (queue active)\n"
        b"Mar  1 10:00:00 mx postfix/smtpd[1]: AAAAA4: client=a[10.0.0.1], sasl_method=PLAIN, sasl_username=a@d.example\n"
        b"Mar  1 10:00:00 mx postfix/qmgr[2]: AAAAA4: from=<a@d.example>, size=1, nrcpt=7 (queue active)\n"),
     ["--year", "2025"], 2,
     "Reading {src} as postfix (from its name).\n"
     "Imported 1 message (7 emails); 0 duplicates skipped; 3 lines rejected.\n"
     "  line 1: impossible date 'Feb 29 10:00:00' in 2025\n"
     "  line 3: impossible date 'Feb 30 10:00:00' in 2025\n"
     "  line 5: nrcpt=999999999999 is more than 100,000 recipients: not a message\n"
     "Error: 3 lines rejected (listed above); every other line was imported\n", (1, 7)),
]


@pytest.mark.parametrize("name, data, extra, code, stderr, expected", ROWS,
                         ids=[f"{r[0]}-{i}" for i, r in enumerate(ROWS)])
def test_each_row_of_the_table(cli, tmp_path, name, data, extra, code, stderr, expected):
    src = tmp_path / name
    src.write_bytes(data)
    result = cli("usage", "import", str(src), *extra)
    assert (result.exit_code, result.stdout, result.stderr) == (code, "", stderr.format(src=src))
    assert totals(cli) == expected


def test_rejected_lines_exit_2_with_the_json_summary_on_stdout(cli, tmp_path):
    src = tmp_path / "u.jsonl"
    src.write_text(good(1) + "garbage\n" + good(1) + good(2, 3))
    result = cli("usage", "import", str(src), "--json")
    assert result.exit_code == 2
    assert json.loads(result.stdout) == {
        "messages": 2, "emails": 4, "duplicates_skipped": 1, "lines_rejected": 1,
        "rejected": [{"line": 2, "reason": "not JSON: Expecting value"}], "limit_exceeded": [],
        "revoked_credentials": [], "notes": []}
    assert result.stderr == (f"Reading {src} as jsonl (from its name).\n"
                             "Error: 1 line rejected (in the JSON summary); every other line was imported\n")
    again = cli("usage", "import", str(src), "--format", "jsonl")
    assert (again.exit_code, again.stderr) == (
        2, "Imported 0 messages (0 emails); 3 duplicates skipped; 1 line rejected.\n"
           "  line 2: not JSON: Expecting value\n"
           "Error: 1 line rejected (listed above); every other line was imported\n")


def test_duplicates_only_exit_0(cli, tmp_path):
    src = tmp_path / "u.ndjson"
    src.write_text(good(1) + "\n" + good(1))
    result = cli("usage", "import", str(src))
    assert (result.exit_code, result.stderr) == (0, f"Reading {src} as jsonl (from its name).\n"
                                                    "Imported 1 message (1 email); 1 duplicate skipped; "
                                                    "0 lines rejected.\n")


def test_stdin_defaults_to_jsonl_and_says_so(cli):
    result = cli("usage", "import", "-", input=good(1))
    assert (result.exit_code, result.stderr) == (
        0, "Reading stdin as jsonl (the default; give --format csv or --format postfix for other input).\n"
           "Imported 1 message (1 email); 0 duplicates skipped; 0 lines rejected.\n")


@pytest.mark.parametrize("args, error", [
    (["usage", "record", "--user", "a@d.example", "--recipients", "1", "--at", "0001-01-01T00:00:00+14:00"],
     f"Error: time '0001-01-01T00:00:00+14:00' {OUT_OF_RANGE}\n"),
    (["usage", "record", "--user", "a@d.example", "--recipients", "1", "--at", "9999-12-31T23:59:59-12:00"],
     f"Error: time '9999-12-31T23:59:59-12:00' {OUT_OF_RANGE}\n"),
    (["audit", "--since", "0001-01-01T00:00:00+14:00"],
     "Error: date or time '0001-01-01T00:00:00+14:00' is out of range\n"),
    (["audit", "--since", "9999-12-31T23:59:59-12:00"],
     "Error: date or time '9999-12-31T23:59:59-12:00' is out of range\n"),
    # audit --until 9999-12-31 is not here: it means "through the last day" (tests/cli/test_inputs_hostile.py).
    (["usage", "import", "-", "--format", "postfix", "--year", "0"],
     "Error: Invalid value for '--year': 0 is not in the range 1970<=x<=9999.\n"),
])
def test_time_options_never_overflow(cli, args, error):
    result = cli(*args)
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", error)
    assert totals(cli) == (0, 0)


def test_audit_since_year_one_in_utc_still_lists(cli):
    result = cli("audit", "--since", "0001-01-01", "--json")
    assert result.exit_code == 0 and len(json.loads(result.stdout)) > 0


# -- interrupted imports: a real process, a real signal -------------------------

LINES = 100_000


def count_events(db) -> int:
    with Store.open(db) as store:
        return store.scalar("SELECT count(*) FROM usage_events")


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_keeps_whole_batches_and_a_rerun_completes(tmp_path, isolated_store, signum, code, run):
    src = tmp_path / "big.jsonl"
    with open(src, "w") as fh:
        for i in range(LINES):
            fh.write(good(i))
    proc = subprocess.Popen([smtpctl_binary(), "usage", "import", str(src), "--batch-size", "500", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while count_events(isolated_store) < 1000:  # some batches are in: the import is under way
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)
    kept = count_events(isolated_store)
    assert 1000 <= kept < LINES, "the signal came too late to test anything"
    assert proc.returncode == code
    summary = json.loads(stdout)
    assert (summary["messages"], summary["emails"], summary["lines_rejected"]) == (kept, kept, 0)
    name = signal.Signals(signum).name
    head, error = stderr.splitlines()
    assert head == f"Reading {src} as jsonl (from its name)."
    # Every line handed on was recorded: the batch in flight was finished.
    assert error == (f"Error: interrupted by {name} after line {kept:,}: the {kept:,} messages recorded so far are "
                     f"kept; re-running the import skips them by their ids (a line with no id would be recorded "
                     f"again: resume after line {kept:,})")
    again = json.loads(run("usage", "import", str(src), "--json", check_rc=0).stdout)
    assert (again["messages"], again["duplicates_skipped"]) == (LINES - kept, kept)
    assert count_events(isolated_store) == LINES
