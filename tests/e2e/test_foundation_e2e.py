"""The installed smtpctl, run as a real process against a temp store."""

import hashlib
import json
import os
import sqlite3
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from smtpctl.core.store import Store
from tests.conftest import smtpctl_binary

pytestmark = pytest.mark.e2e


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_zero_setup_default_store(run, monkeypatch, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SMTPCTL_DB"}
    proc = subprocess.run([smtpctl_binary(), "agency", "add", "acme"], env=env, capture_output=True, text=True)
    assert (proc.returncode, proc.stderr) == (0, "Agency 'acme' created.\n")
    default = Path(env["XDG_DATA_HOME"]) / "smtpctl" / "smtpctl.db"
    assert default.exists()
    assert stat.S_IMODE(default.stat().st_mode) == 0o600
    assert stat.S_IMODE(default.parent.stat().st_mode) == 0o700


def test_python_dash_m_and_db_option(tmp_path):
    db = tmp_path / "other.db"
    # A read-only command does not create the store a path names: a typo must not look like an empty store.
    proc = subprocess.run([sys.executable, "-m", "smtpctl", "--db", str(db), "agency", "list", "--json"],
                          capture_output=True, text=True)
    assert (proc.returncode, proc.stdout) == (3, "")
    assert proc.stderr.startswith(f"Error: there is no store at {db} (named by --db/SMTPCTL_DB)")
    assert not db.exists()
    proc = subprocess.run([sys.executable, "-m", "smtpctl", "--db", str(db), "agency", "add", "acme", "--json"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "smtpctl", "--db", str(db), "agency", "list", "--json"],
                          capture_output=True, text=True)
    assert (proc.returncode, [a["name"] for a in json.loads(proc.stdout)]) == (0, ["acme"])


def test_config_file_names_the_store(tmp_path, run):
    db = tmp_path / "from-config.db"
    config = tmp_path / "c.toml"
    config.write_text(f'db = "{db}"\nactor = "ci-bot"\n')
    env = {k: v for k, v in os.environ.items() if k not in ("SMTPCTL_DB", "SMTPCTL_ACTOR")}
    env["SMTPCTL_CONFIG"] = str(config)
    proc = subprocess.run([smtpctl_binary(), "agency", "add", "acme"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    with Store.open(db) as store:
        assert [r["actor"] for r in store.audit_rows()] == ["ci-bot"]


def test_a_script_provisions_and_reads_back(run):
    run("agency", "add", "acme", check_rc=0)
    run("account", "add", "shop", "--agency", "acme", "--daily-limit", "900", check_rc=0)
    made = json.loads(run("domain", "add", "mail.shop.example", "--account", "shop", "--json", check_rc=0).stdout)
    assert made["status"] == "created"
    again = run("domain", "add", "mail.shop.example", "--account", "shop", "--exist-ok", "--json", check_rc=0)
    assert json.loads(again.stdout)["status"] == "unchanged"
    shown = json.loads(run("account", "show", "shop", "--json", check_rc=0).stdout)
    assert (shown["effective_daily_limit"], shown["domains"]) == (900, ["mail.shop.example"])


@pytest.mark.parametrize("make_bad, needle", [
    ("directory", "is a folder"),
    ("corrupt", "not a readable smtpctl store"),
    ("newer", "newer smtpctl"),
])
def test_bad_stores_exit_7_and_change_nothing(tmp_path, run, make_bad, needle):
    db = tmp_path / "bad.db"
    if make_bad == "directory":
        db.mkdir()
    elif make_bad == "corrupt":
        db.write_bytes(os.urandom(8192))
    else:
        run("--db", str(db), "agency", "add", "acme", check_rc=0)
        with sqlite3.connect(db) as conn:
            conn.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
                         "VALUES ('smtpctl', '9999_future', 'x')")
            conn.commit()
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = None if db.is_dir() else digest(db)
    proc = run("--db", str(db), "agency", "add", "other")
    assert proc.returncode == 7
    assert proc.stderr.startswith("Error: ") and needle in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    if before is not None:
        assert digest(db) == before


def _make_unwritable(path: Path) -> bool:
    if os.geteuid() != 0:
        path.chmod(0o400)
        return True
    return subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0


def test_unwritable_store_exits_7(tmp_path, run):
    db = tmp_path / "ro.db"
    run("--db", str(db), "agency", "add", "acme", check_rc=0)
    before = digest(db)
    if not _make_unwritable(db):
        pytest.skip("cannot make a file unwritable for root on this filesystem (chattr +i failed)")
    try:
        proc = run("--db", str(db), "agency", "add", "other")
        assert proc.returncode == 7, proc.stderr
        assert proc.stderr.startswith("Error: ") and proc.stderr.count("\n") == 1
        assert digest(db) == before
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(db)])


def test_parallel_writers_wait_instead_of_failing(run):
    """Twelve processes add the same agency and twelve distinct accounts at once."""
    run("agency", "add", "acme", check_rc=0)

    def add(i):
        return run("account", "add", f"acct-{i}", "--agency", "acme")

    def add_same(_):
        return run("agency", "add", "shared", "--exist-ok", "--json")

    with ThreadPoolExecutor(max_workers=12) as pool:
        distinct = list(pool.map(add, range(12)))
        same = list(pool.map(add_same, range(12)))
    assert [p.returncode for p in distinct] == [0] * 12, [p.stderr for p in distinct]
    assert [p.returncode for p in same] == [0] * 12, [p.stderr for p in same]
    statuses = sorted(json.loads(p.stdout)["status"] for p in same)
    assert statuses == ["created"] + ["unchanged"] * 11
    accounts = json.loads(run("account", "list", "--json", check_rc=0).stdout)
    assert len(accounts) == 12


def test_debug_shows_traceback_only_when_asked(tmp_path, run):
    db = tmp_path / "d"
    db.mkdir()
    quiet = run("--db", str(db), "agency", "list")
    assert "Traceback" not in quiet.stderr
    loud = run("--db", str(db), "agency", "list", env={"SMTPCTL_DEBUG": "1"})
    assert "Traceback" in loud.stderr and loud.returncode != 0


@pytest.mark.sqlite_only("store backup copies an SQLite file with the online backup API")
def test_backup_while_other_processes_write(run, tmp_path):
    """The online backup API copies a consistent store while writers keep going."""
    import threading

    run("agency", "add", "acme", check_rc=0)
    stop = threading.Event()
    written = []

    def writer(name):
        i = 0
        while not stop.is_set():
            proc = run("account", "add", f"{name}-{i}", "--agency", "acme")
            written.append(proc.returncode)
            i += 1

    threads = [threading.Thread(target=writer, args=(name,)) for name in ("left", "right")]
    for t in threads:
        t.start()
    try:
        copies = []
        for n in range(3):
            target = tmp_path / f"copy-{n}.db"
            run("store", "backup", str(target), check_rc=0)
            copies.append(target)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert written and set(written) == {0}
    for copy in copies:
        with Store.open(copy) as store:
            assert store.integrity_ok()
            counts = store.counts()
            agencies, accounts = counts["agencies"], counts["accounts"]
            audits = len(store.audit_rows(action="account.create"))
        assert agencies == 1 and accounts == audits  # every account with its audit row: one transaction each
