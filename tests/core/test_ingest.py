import json
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpctl.core.ingest.csv import read_csv
from smtpctl.core.ingest.jsonl import read_jsonl
from smtpctl.core.ingest.message import BadLine, UsageInput, count_addresses, parse_time
from smtpctl.core.ingest.postfix import PostfixLog
from smtpctl.core.model.errors import InvalidInput

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "postfix"
UTC = timezone.utc


def fixture_path(name: str) -> Path:
    """The shared Postfix fixtures, copied into the repo so a clean clone has them."""
    path = FIXTURES / name
    assert path.exists(), path
    return path


def parse_fixture():
    parser = PostfixLog(year=2026, log_tz=UTC, now=datetime(2026, 11, 26, 12, tzinfo=UTC))
    with open(fixture_path("maillog-rig-1.log")) as fh:
        items = list(parser.feed(fh))
    return parser, items


def test_postfix_fixture_matches_its_ground_truth():
    expected = json.loads(fixture_path("maillog-rig-1.expected.json").read_text())
    parser, items = parse_fixture()
    assert all(isinstance(i, UsageInput) for i in items)
    per_user = defaultdict(lambda: {"messages": 0, "recipients": 0})
    for item in items:
        per_user[item.user]["messages"] += 1
        per_user[item.user]["recipients"] += item.emails
    assert dict(per_user) == expected["per_sasl_user"]
    assert (len(items), sum(i.emails for i in items)) == (58, 258)
    assert {i.at.date().isoformat() for i in items} == {"2026-11-26"}


def test_each_queue_id_counts_once_and_every_accepted_message_is_there():
    expected = json.loads(fixture_path("maillog-rig-1.expected.json").read_text())
    parser, items = parse_fixture()
    qids = [i.source_id.split(":")[2] for i in items]
    assert len(qids) == len(set(qids))
    assert sorted(qids) == sorted(m["queue_id"] for m in expected["messages"])
    by_qid = {i.source_id.split(":")[2]: i.emails for i in items}
    for m in expected["messages"]:
        assert by_qid[m["queue_id"]] == m["recipients_accepted"], m["queue_id"]
    extra_entries = sum(n - 1 for n in expected["reentered_active_queue"].values())
    assert parser.requeued == extra_entries
    # The aborted transaction and the message refused at end of DATA: SASL lines, no qmgr line.
    assert len(parser.pending) == 2


def test_failed_auth_lines_do_not_count():
    line = ("Nov 26 05:10:01 mail postfix/submission/smtpd[6726]: warning: localhost[127.0.0.1]: "
            "SASL LOGIN authentication failed: UGFzc3dvcmQ6, sasl_username=alice@acme.test\n")
    parser = PostfixLog(year=2026, log_tz=UTC)
    assert list(parser.feed([line])) == []
    assert parser.pending == {}


LONG = [
    "Jan  3 23:59:58 mx postfix/smtps/smtpd[1]: 4Nq7Yk2VX3z9sWb: client=a[1.2.3.4], sasl_method=PLAIN, "
    "sasl_username=bob@acme.test\n",
    "Jan  3 23:59:59 mx postfix/qmgr[2]: 4Nq7Yk2VX3z9sWb: from=<other@acme.test>, size=10, nrcpt=7 (queue active)\n",
    "Jan  4 00:10:00 mx postfix/qmgr[2]: 4Nq7Yk2VX3z9sWb: from=<other@acme.test>, size=10, nrcpt=7 (queue active)\n",
    "Jan  4 00:20:00 mx postfix/qmgr[2]: 4Nq7Yk2VX3z9sWb: removed\n",
    "Jan  4 00:21:00 mx postfix/pickup[3]: 5AB: uid=0 from=<root>\n",
    "Jan  4 00:21:00 mx postfix/qmgr[2]: 5AB: from=<root@mx>, size=10, nrcpt=1 (queue active)\n",
    "Jan  4 00:22:00 mx postfix/qmgr[2]: 6CD: from=<>, size=10, nrcpt=1 (queue active)\n",
]


def test_long_queue_ids_requeues_pickups_and_bounces():
    parser = PostfixLog(year=2027, log_tz=UTC)
    items = list(parser.feed(LONG))
    assert [(i.user, i.emails, i.at.isoformat()) for i in items] == [
        ("bob@acme.test", 7, "2027-01-03T23:59:58+00:00")]
    assert parser.requeued == 1


def test_year_is_inferred_and_december_read_in_january_is_last_year():
    january = datetime(2027, 1, 5, 8, tzinfo=UTC)
    lines = [line.replace("Jan  3", "Dec 31").replace("Jan  4", "Dec 31") for line in LONG[:2]]
    items = list(PostfixLog(year=None, log_tz=UTC, now=january).feed(lines))
    assert items[0].at.year == 2026
    items = list(PostfixLog(year=None, log_tz=UTC, now=january).feed(LONG[:2]))
    assert items[0].at.year == 2027


def test_log_time_zone_is_applied():
    items = list(PostfixLog(year=2027, log_tz=ZoneInfo("Europe/Berlin")).feed(LONG[:2]))
    assert items[0].at.isoformat() == "2027-01-03T22:59:58+00:00"


def test_rfc3339_timestamps():
    lines = [
        "2026-11-26T05:09:58.123456+01:00 mail postfix/submission/smtpd[1]: ABC12: client=x[1.1.1.1], "
        "sasl_method=LOGIN, sasl_username=alice@acme.test\n",
        "2026-11-26T05:09:58.223456+01:00 mail postfix/qmgr[2]: ABC12: from=<a@acme.test>, size=1, nrcpt=2 "
        "(queue active)\n",
    ]
    items = list(PostfixLog(year=None, log_tz=UTC).feed(lines))
    assert items[0].at == datetime(2026, 11, 26, 4, 9, 58, 123456, tzinfo=UTC)


def test_counting_addresses_dedupes():
    assert count_addresses(["a@x.test", "B@x.test"], ["b@x.test", "c@x.test"], ["<d@x.test>"]) == (2, 1, 1)
    with pytest.raises(InvalidInput):
        count_addresses(["not an address"], [], [])


def test_jsonl_reader():
    lines = [
        '{"user": "a@d.example", "to": ["x@y.test", "z@y.test"], "cc": ["c@y.test"], "bcc": ["b@y.test"], '
        '"at": "2026-11-26T10:00:00Z", "id": "m1"}\n',
        "\n",
        '{"direction": "inbound", "domain": "d.example", "recipients": 3}\n',
        "not json\n",
        '{"user": "a@d.example", "recipients": 2, "to": ["x@y.test"]}\n',
        '{"user": "a@d.example", "recipients": 1, "colour": "red"}\n',
        '{"user": "a@d.example", "recipients": 0}\n',
        '{"user": "a@d.example", "recipients": 1, "at": "yesterday"}\n',
    ]
    out = list(read_jsonl(lines, UTC))
    first = out[0]
    assert (first.user, first.to, first.cc, first.bcc, first.emails, first.source_id) == (
        "a@d.example", 2, 1, 1, 4, "m1")
    assert (out[1].direction, out[1].domain, out[1].emails, out[1].line) == ("inbound", "d.example", 3, 3)
    assert [(b.line, b.reason) for b in out[2:]] == [
        (4, "not JSON: Expecting value"),
        (5, "give either recipients (a count) or to/cc/bcc addresses, not both"),
        (6, "unknown keys: colour"),
        (7, "a message needs at least one recipient"),
        (8, "invalid time 'yesterday': use ISO 8601, e.g. 2026-11-26T10:00:00Z"),
    ]


def test_csv_reader():
    lines = ["user,to,cc,bcc,at,id\n", "a@d.example,x@y.test;z@y.test,,b@y.test,2026-11-26T10:00:00Z,m1\n",
             "a@d.example,,,,,m2\n"]
    out = list(read_csv(lines, UTC))
    assert (out[0].to, out[0].cc, out[0].bcc, out[0].source_id) == (2, 0, 1, "m1")
    assert out[1] == BadLine(3, "a message needs at least one recipient")


def test_naive_times_are_in_the_default_zone():
    assert parse_time("2026-11-26T00:30:00", ZoneInfo("Europe/Berlin")) == datetime(2026, 11, 25, 23, 30,
                                                                                           tzinfo=UTC)


@given(st.lists(st.sampled_from(["a@x.test", "A@X.TEST", "b@x.test", "c@y.test"]), max_size=6),
       st.lists(st.sampled_from(["a@x.test", "d@x.test"]), max_size=3),
       st.lists(st.sampled_from(["e@x.test", "b@x.test"]), max_size=3))
def test_each_distinct_address_counts_exactly_once(to, cc, bcc):
    counts = count_addresses(to, cc, bcc)
    assert sum(counts) == len({a.lower() for a in to + cc + bcc})
