"""Usage through the installed binary: a real Postfix log, and parallel recorders."""

import json
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.conftest import on_terminal

pytestmark = pytest.mark.e2e

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "postfix" / "maillog-rig-1.log"
PW = "Correct-Horse-Battery-Staple-42"


def log_for_today(tmp_path: Path) -> tuple[Path, int]:
    """The real fixture log with every timestamp moved to now (UTC), so its day
    is today on whatever day the suite runs; nothing else in a line changes."""
    now = datetime.now(timezone.utc)
    stamp = f"{now.strftime('%b')} {now.day:>2} {now.strftime('%H:%M:%S')}"
    text = re.sub(r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d", stamp, FIXTURE.read_text(), flags=re.M)
    path = tmp_path / "maillog"
    path.write_text(text)
    return path, now.year


def crossing_day() -> str:
    return datetime.now(timezone.utc).date().isoformat()


def test_postfix_import_pushes_an_account_over_its_limit(run, tmp_path):
    run("agency", "add", "rig", check_rc=0)
    run("account", "add", "acme", "--agency", "rig", "--daily-limit", "100", check_rc=0)
    run("account", "add", "globex", "--agency", "rig", check_rc=0)
    run("domain", "add", "acme.test", "--account", "acme", check_rc=0)
    run("domain", "add", "globex.test", "--account", "globex", check_rc=0)
    for login in ("alice@acme.test", "bob@acme.test", "carol@globex.test", "dave@globex.test"):
        run("user", "create", login, "--password-stdin", input=PW + "\n", check_rc=0)
    log, year = log_for_today(tmp_path)

    imported = run("usage", "import", str(log), "--format", "postfix", "--year", str(year),
                   "--log-timezone", "UTC", "--json", check_rc=2)  # lines were rejected (the hard cap)
    summary = json.loads(imported.stdout)
    # The hard cap (docs/rules.md): acme's message that crosses 100 is recorded (110 emails), each later
    # acme message (13 of them, 53 emails) is a rejected line, refused and not billed.
    assert (summary["messages"], summary["emails"], summary["lines_rejected"]) == (45, 205, 13)
    assert {r["reason"] for r in summary["rejected"]} == {
        f"account acme is over its daily limit on {crossing_day()} (110 of 100 emails): message refused, "
        "not recorded"}
    assert summary["revoked_credentials"] == ["alice@acme.test", "bob@acme.test"]
    [crossing] = summary["limit_exceeded"]
    assert (crossing["account"], crossing["limit"], crossing["enforced"]) == ("acme", 100, True)
    assert "Warning: account acme went over its daily limit" in imported.stderr

    for login in ("alice@acme.test", "bob@acme.test"):
        gone = run("user", "verify", login, "--password-stdin", input=PW + "\n")
        assert (gone.returncode, gone.stderr) == (3, f"Error: SMTP credential {login} not found\n")
    run("user", "verify", "carol@globex.test", "--password-stdin", input=PW + "\n", check_rc=0)
    blocked = run("user", "create", "new@acme.test", "--generate")
    assert blocked.returncode == 6
    assert blocked.stderr.startswith("Error: SMTP Credential creation is blocked. Please contact support… (account "
                                     "acme is blocked: daily limit of 100 emails exceeded on ")
    assert blocked.stderr.endswith("; more: smtpctl account show acme)\n")

    report = json.loads(run("usage", "report", "--by", "user", "--json", check_rc=0).stdout)
    assert {r["user"]: (r["messages"], r["emails"]) for r in report["rows"]} == {
        "alice@acme.test": (14, 58), "bob@acme.test": (10, 52), "carol@globex.test": (17, 74),
        "dave@globex.test": (4, 21)}

    again = json.loads(run("usage", "import", str(log), "--format", "postfix", "--year", str(year),
                           "--log-timezone", "UTC", "--json", check_rc=2).stdout)
    # Recorded lines are duplicates; the refused ones were never recorded and are refused again.
    assert (again["messages"], again["duplicates_skipped"], again["lines_rejected"]) == (0, 45, 13)

    run("account", "unblock", "acme", check_rc=0)
    run("user", "create", "new@acme.test", "--generate", check_rc=0)


def test_parallel_recorders_hold_the_limit(run):
    run("agency", "add", "acme", check_rc=0)
    run("account", "add", "shop", "--agency", "acme", "--daily-limit", "10", check_rc=0)
    run("domain", "add", "d.example", "--account", "shop", check_rc=0)
    for login in ("a@d.example", "b@d.example", "c@d.example"):
        run("user", "create", login, "--generate", check_rc=0)

    def record(i):
        return run("usage", "record", "--user", "a@d.example", "--recipients", "1", "--id", f"p{i}", "--json")

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(record, range(16)))
    assert not any("is locked" in r.stderr or "Traceback" in r.stderr for r in results)
    # The hard cap: 10 fit, the 11th crosses (recorded, revokes), the other 5 are refused (exit 5), unbilled.
    assert sorted(r.returncode for r in results) == [0] * 11 + [5] * 5, [r.stderr for r in results]
    refused = [r for r in results if r.returncode == 5]
    assert all(r.stderr.startswith("Error: account shop is over its daily limit on ") for r in refused)
    outcomes = [json.loads(r.stdout) for r in results if r.returncode == 0]
    assert sum(bool(o["limit_exceeded"]) for o in outcomes) == 1
    [revoker] = [o for o in outcomes if o["limit_exceeded"]]
    assert revoker["revoked_credentials"] == ["a@d.example", "b@d.example", "c@d.example"]
    assert revoker["crossings"][0]["emails"] == 11
    status = json.loads(run("usage", "status", "shop", "--json", check_rc=0).stdout)[0]
    assert (status["sent"], status["blocked"], status["live_credentials"]) == (11, True, 0)
    assert json.loads(run("user", "list", "--json", check_rc=0).stdout) == []


def test_progress_bar_on_a_terminal_only(run, tmp_path):
    run("agency", "add", "acme", check_rc=0)
    run("account", "add", "shop", "--agency", "acme", "--daily-limit", "5000", check_rc=0)
    run("domain", "add", "d.example", "--account", "shop", check_rc=0)
    src = tmp_path / "u.jsonl"
    src.write_text("".join(f'{{"user": "a@d.example", "recipients": 1, "at": "2026-10-01T10:00:00Z", "id": "t{i}"}}\n'
                           for i in range(3000)))
    rc, screen = on_terminal(["usage", "import", str(src), "--batch-size", "500"])
    assert rc == 0, screen
    assert "Importing" in screen and "100%" in screen
    assert "Imported 3,000 messages (3,000 emails)" in screen
    piped = run("usage", "import", str(src), check_rc=0)
    assert "Importing" not in piped.stderr and "%" not in piped.stderr
