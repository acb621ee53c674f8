"""The fleet on PostgreSQL: several real smtpctl processes on one database
hold the caps exactly as on one SQLite file, and `store copy` moves a store
from SQLite to PostgreSQL and back with equal totals."""

from __future__ import annotations

import json
import subprocess
import threading

import pytest

from smtpctl.core.billing.credits import add_credit, set_mode
from smtpctl.core.billing.prices import set_price
from smtpctl.core.directory.accounts import add_account, rename_account
from smtpctl.core.directory.agencies import add_agency
from smtpctl.core.directory.credentials import create_credential
from smtpctl.core.directory.domains import add_domain
from smtpctl.core.ingest.message import UsageInput
from smtpctl.core.metering.batch import import_usage
from smtpctl.core.store import Store
from tests.conftest import smtpctl_binary
from tests.e2e.servers import Running
from tests.e2e.test_policy_hostile import Client, build, events, race, request

pytestmark = pytest.mark.e2e


def test_twenty_parallel_user_creates_leave_exactly_five(pg_dsn, run):
    with Store.open(pg_dsn) as store:
        add_agency(store, "acme")
        add_account(store, "shop", "acme")
        add_domain(store, "d.example", account="shop")
    procs = [subprocess.Popen([smtpctl_binary(), "--db", pg_dsn, "user", "create", f"u{i}@d.example", "--generate",
                               "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                              text=True) for i in range(20)]
    results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0] * 5 + [5] * 15, results  # 5: a limit reached (docs/exit-codes.md)
    refusals = [err.strip() for code, _, err in results if code == 5]
    assert all(r.startswith("Error: d.example already holds 5 SMTP credentials") and "\n" not in r
               for r in refusals), refusals
    listed = json.loads(run("--db", pg_dsn, "user", "list", "--json", check_rc=0).stdout)
    assert len(listed) == 5
    with Store.open(pg_dsn) as store:
        assert store.scalar("SELECT count(*) FROM audit WHERE action = 'credential.create'") == 5


def test_two_policy_servers_on_one_database_hold_the_hard_cap(pg_dsn, run, tmp_path):
    login = "app@race.test"
    build(pg_dsn, {"race": (100, ["race.test"], [login])})
    servers = [Running(["--db", pg_dsn, "policy", "serve", "--listen", "127.0.0.1:0"], tmp_path / f"p{i}.log")
               for i in range(2)]
    try:
        answers = race(servers, login, "pg")
    finally:
        codes = [server.stop() for server in servers]
    assert codes == [0, 0]
    assert len(answers) == 40
    assert answers.count("action=DUNNO") == 11, answers  # 10 under the limit + the one that crosses it
    assert sum(a.startswith("action=REJECT 5.7.1") for a in answers) == 29
    status = json.loads(run("--db", pg_dsn, "usage", "status", "race", "--json", check_rc=0).stdout)[0]
    assert (status["sent"], status["blocked"], status["live_credentials"]) == (110, True, 0)
    for server in servers:
        assert "Traceback" not in server.text()
    assert sum(len(events(server, "policy")) for server in servers) == 40


def _fill(store: Store) -> None:
    add_agency(store, "Acme")
    add_account(store, "shop", "acme", daily_limit=1000)
    add_domain(store, "d.example", account="shop")
    add_domain(store, "in.example", agency="Acme")
    create_credential(store, "a@d.example", "a good long password")
    set_price(store, "0.7", "2020-01-01")  # the copy carries billing: prices, the credits ledger, modes
    add_credit(store, "Acme", "10", ref="payment-1")
    set_mode(store, "Acme", "prepaid")
    items = [UsageInput("outbound", "a@d.example", None, n % 7 + 1, 0, 0, None, f"m{n}", line=n + 1)
             for n in range(30)]
    items.append(UsageInput("inbound", None, "in.example", 4, 0, 0, None, "in1", line=31))
    import_usage(store, items)
    rename_account(store, "shop", "boutique")


def test_store_copy_sqlite_to_postgresql_and_back(pg_dsn, run, tmp_path):
    first, last = tmp_path / "first.db", tmp_path / "last.db"
    with Store.open(first) as store:
        _fill(store)
    to_pg = run("--db", str(first), "store", "copy", pg_dsn, "--json", check_rc=0)
    back = run("--db", pg_dsn, "store", "copy", str(last), "--json", check_rc=0)
    there, here = json.loads(to_pg.stdout), json.loads(back.stdout)
    assert there["counts"]["usage_events"] == 31 and there["counts"]["audit"] > 5
    # (the store.copy audit entry goes to each copy's source, after the copy)
    assert here["counts"] == there["counts"] and here["usage"] == there["usage"]
    reports = [json.loads(run("--db", db, "usage", "report", "--by", "account", "--json", check_rc=0).stdout)
               for db in (str(first), pg_dsn, str(last))]
    assert reports[0] == reports[1] == reports[2]
    audits = [json.loads(run("--db", db, "audit", "--account", "boutique", "--limit", "0", "--json",
                             check_rc=0).stdout) for db in (pg_dsn, str(last))]
    assert audits[0] == audits[1] and len(audits[0]) >= 4
    # the copies go on working: new ids continue after the copied ones
    run("--db", pg_dsn, "agency", "add", "Second", check_rc=0)
    run("--db", str(last), "agency", "add", "Second", check_rc=0)
    # a destination that holds data is refused, and left alone
    again = run("--db", str(first), "store", "copy", pg_dsn)
    assert again.returncode == 4 and again.stderr.startswith("Error: the copy destination ")
    assert len(json.loads(run("--db", pg_dsn, "agency", "list", "--json", check_rc=0).stdout)) == 2


ARGV_WARNING = ("Warning: {what} holds a password, which every local user can read in ps; give it in PGPASSWORD, "
                "~/.pgpass or a service file instead (docs/store.md)")


def test_a_password_on_argv_is_warned_about_and_nowhere_else(pg_dsn, run, tmp_path):
    """--db and store copy's destination are argv; SMTPCTL_DB, PGPASSWORD and a
    password-less DSN are not warned about."""
    run("--db", pg_dsn, "agency", "add", "acme", check_rc=0)
    quiet = run("--db", pg_dsn, "agency", "list", "--json", check_rc=0)
    assert quiet.stderr == ""
    with_password = pg_dsn + ("&" if "?" in pg_dsn else "?") + "password=hunter2"
    # trust authentication on the test cluster: the password is ignored, the command works
    listed = run("--db", with_password, "agency", "list", "--json")
    assert listed.returncode == 0 and [a["name"] for a in json.loads(listed.stdout)] == ["acme"]
    assert listed.stderr.splitlines() == [ARGV_WARNING.format(what="the --db DSN")]
    assert "hunter2" not in listed.stderr
    env_only = run("agency", "list", "--json", env={"SMTPCTL_DB": with_password})
    assert "Warning" not in env_only.stderr
    run("--db", str(tmp_path / "s.db"), "agency", "add", "other", check_rc=0)
    copied = run("--db", str(tmp_path / "s.db"), "store", "copy", with_password)
    assert copied.returncode == 4  # the destination holds data: refused, after the warning
    assert copied.stderr.splitlines()[0] == ARGV_WARNING.format(what="the destination DSN")
    assert "hunter2" not in copied.stderr


def test_postgresql_down_is_exit_7_one_line_and_nothing_written(pg_dsn, run, tmp_path):
    gone = f"postgresql://smtpctl:secret@/smtpctl?host={tmp_path}&connect_timeout=2"
    for args in (["agency", "add", "acme"], ["account", "list"], ["usage", "report"]):
        result = run(*args, env={"SMTPCTL_DB": gone})
        assert result.returncode == 7, (args, result.stderr)
        assert result.stdout == ""
        assert result.stderr.startswith("Error: cannot reach the PostgreSQL store postgresql://smtpctl@/smtpctl")
        assert result.stderr.count("\n") == 1 and "secret" not in result.stderr
        # The same DSN on argv (visible in ps): the same error, after a warning that says so (issue 23 item 8).
        on_argv = run("--db", gone, *args)
        assert (on_argv.returncode, on_argv.stdout) == (7, "")
        assert on_argv.stderr.splitlines() == [ARGV_WARNING.format(what="the --db DSN"), result.stderr.rstrip("\n")]
    # SMTPCTL_DB and postgres:// name the same store
    run("agency", "add", "acme", env={"SMTPCTL_DB": pg_dsn.replace("postgresql://", "postgres://")}, check_rc=0)
    listed = json.loads(run("--db", pg_dsn, "agency", "list", "--json", check_rc=0).stdout)
    assert [a["name"] for a in listed] == ["acme"]


def _own_cluster(tmp_path):
    """A PostgreSQL cluster of this test's own, to stop and start (.ci/pg)."""
    import os
    import shutil
    from pathlib import Path

    if shutil.which("initdb") is None and not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        pytest.skip("no PostgreSQL server binaries")
    import tempfile

    script = Path(__file__).resolve().parents[2] / ".ci" / "pg"
    base = Path(tempfile.mkdtemp(prefix="smtpctl-pg-"))  # short (a socket path), and one nobody can enter
    os.chmod(base, 0o755)
    started = subprocess.run(["bash", str(script), "start", str(base / "c")], capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    dsn = started.stdout.strip().split("=", 1)[1].strip("'")
    data = base / "c" / "data"
    as_user = ["runuser", "-u", "nobody", "--"] if os.getuid() == 0 else []
    pg_ctl = str(sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))[-1]) if Path("/usr/lib/postgresql").exists() \
        else shutil.which("pg_ctl")

    def ctl(*args: str) -> None:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-w", *args], check=True, capture_output=True)

    def stop_all() -> None:
        subprocess.run(["bash", str(script), "stop", str(base / "c")], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)

    return dsn, ctl, base / "c", stop_all


def test_postgresql_restart_under_load_loses_and_doubles_nothing(run, tmp_path):
    dsn, ctl, cluster, stop_all = _own_cluster(tmp_path)
    try:
        login = "app@shop.test"
        build(dsn, {"shop": (None, ["shop.test"], [login])})
        server = Running(["--db", dsn, "policy", "serve", "--listen", "127.0.0.1:0"], tmp_path / "p.log",
                         env={"SMTPCTL_BUSY_TIMEOUT": "2"})
        answers: dict[str, list[str]] = {}
        try:
            def ask(i: int) -> str:
                client = Client(server, "tcp")
                try:
                    answer = client.ask(request(sasl_username=login, sender=login, recipient_count="3",
                                                instance=f"i{i}", queue_id=f"Q{i}"))
                finally:
                    client.close()
                answers.setdefault(answer, []).append(f"i{i}")
                return answer

            for i in range(5):
                assert ask(i) == "action=DUNNO"
            ctl("-m", "fast", "stop")
            for i in range(5, 8):  # the database is down: Postfix is told to try again later
                assert ask(i) == "action=DEFER_IF_PERMIT 4.3.0 Policy service error; try again later"
            ctl("-l", str(cluster / "server.log"), "-o", f"-k {cluster} -c listen_addresses=''", "start")
            for i in range(5, 8):  # Postfix's retries, then new mail: the same server, no restart
                if ask(i) != "action=DUNNO":
                    assert ask(i) == "action=DUNNO"  # a first call may find the old connection gone
            for i in range(0, 8):  # every id again: metered once, never twice
                assert ask(i) == "action=DUNNO"
        finally:
            assert server.stop() == 0
        assert "Traceback" not in server.text()
        status = json.loads(run("--db", dsn, "usage", "status", "shop", "--json", check_rc=0).stdout)[0]
        assert status["sent"] == 8 * 3
        with Store.open(dsn) as store:
            assert store.usage_totals() == {"events": 8, "event_emails": 24, "daily_rows": 1, "daily_messages": 8,
                                            "daily_emails": 24}
    finally:
        stop_all()


def _send(server: Running, login: str, recipients: list[str]) -> int:
    """One authenticated message through a real `serve`; the SMTP code of its end."""
    import smtplib
    import ssl

    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    smtp = smtplib.SMTP(*server.addresses["submission"], timeout=60)
    try:
        smtp.starttls(context=context)
        smtp.login(login, "a good long password")
        smtp.sendmail(login, recipients, "Subject: fleet\r\n\r\nhello\r\n")
        return 250
    except smtplib.SMTPAuthenticationError as exc:
        return exc.smtp_code
    except (smtplib.SMTPDataError, smtplib.SMTPSenderRefused) as exc:
        return exc.smtp_code
    finally:
        smtp.close()


def _maildir_count(folder) -> int:
    return sum(1 for sub in ("new", "cur") if (folder / sub).exists() for _ in (folder / sub).iterdir())


def test_two_serve_processes_on_one_database_hold_the_hard_cap(pg_dsn, run, tmp_path):
    """Two `serve` nodes on one PostgreSQL store, 40 sessions of 10 recipients racing a 100/day account:
    exactly 11 messages accepted (the crossing one included), 110 emails billed, 11 delivered."""
    login = "app@race.test"
    build(pg_dsn, {"race": (100, ["race.test"], [login])})
    nodes = [Running(["--db", pg_dsn, "serve", "--submission", "127.0.0.1:0", "--smtps", "127.0.0.1:0",
                      "--auth-delay", "0", "--maildir", str(tmp_path / f"md{i}")], tmp_path / f"s{i}.log")
             for i in range(2)]
    try:
        barrier = threading.Barrier(40)
        codes: list[int] = []
        lock = threading.Lock()

        def one(i: int) -> None:
            barrier.wait()
            code = _send(nodes[i % 2], login, [f"r{i}-{k}@x.test" for k in range(10)])
            with lock:
                codes.append(code)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        for node in nodes:
            assert node.stop() == 0
    assert codes.count(250) == 11, codes
    assert sum(_maildir_count(tmp_path / f"md{i}") for i in range(2)) == 11
    status = json.loads(run("--db", pg_dsn, "usage", "status", "race", "--json", check_rc=0).stdout)[0]
    assert (status["sent"], status["blocked"], status["live_credentials"]) == (110, True, 0)


def test_postgresql_down_under_serve_is_temporary_and_recovers(run, tmp_path):
    """The database stops under a running `serve`: AUTH answers 454 4.7.0, MAIL in a session already
    authenticated 451 4.3.0 (one store_error line each, no traceback); it starts again and the same
    process serves again. Delivered equals billed throughout."""
    import smtplib
    import ssl

    dsn, ctl, cluster, stop_all = _own_cluster(tmp_path)
    try:
        login = "app@shop.test"
        build(dsn, {"shop": (None, ["shop.test"], [login])})
        maildir = tmp_path / "md"
        server = Running(["--db", dsn, "serve", "--submission", "127.0.0.1:0", "--smtps", "127.0.0.1:0",
                          "--auth-delay", "0", "--auth-cache-size", "0", "--maildir", str(maildir)],
                         tmp_path / "s.log", env={"SMTPCTL_BUSY_TIMEOUT": "2"})
        try:
            assert _send(server, login, ["a@x.test"]) == 250
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            waiting = smtplib.SMTP(*server.addresses["submission"], timeout=60)
            waiting.starttls(context=context)
            waiting.login(login, "a good long password")
            ctl("-m", "fast", "stop")
            assert _send(server, login, ["b@x.test"]) == 454
            assert waiting.mail(login) == (451, b"4.3.0 Temporary failure; try again later")
            waiting.close()
            ctl("-l", str(cluster / "server.log"), "-o", f"-k {cluster} -c listen_addresses=''", "start")
            codes = [_send(server, login, [f"c{i}@x.test"]) for i in range(3)]
            assert codes.count(250) >= 2 and set(codes) <= {250, 454}  # a first call may meet the old connection
        finally:
            assert server.stop() == 0
        log = server.text()
        assert "Traceback" not in log and "event=store_error" in log
        status = json.loads(run("--db", dsn, "usage", "status", "shop", "--json", check_rc=0).stdout)[0]
        delivered = _maildir_count(maildir)
        assert status["sent"] == delivered == 1 + codes.count(250)
    finally:
        stop_all()
