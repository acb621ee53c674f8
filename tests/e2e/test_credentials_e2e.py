"""Credentials driven through the installed binary, the way scripts and CI do."""

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import on_terminal, smtpctl_binary

pytestmark = pytest.mark.e2e

PW = "Correct-Horse-Battery-Staple-42"


@pytest.fixture
def domain(run):
    run("agency", "add", "acme", check_rc=0)
    run("account", "add", "shop", "--agency", "acme", check_rc=0)
    run("domain", "add", "d.example", "--account", "shop", check_rc=0)
    return "d.example"


def test_script_generates_parses_json_and_verifies(run, domain):
    created = run("user", "create", "app@d.example", "--generate", "--json", check_rc=0)
    data = json.loads(created.stdout)
    assert data["status"] == "created" and created.stderr == ""
    password = data["password"]
    ok = run("user", "verify", "app@d.example", "--password-stdin", input=password + "\n")
    assert (ok.returncode, ok.stderr) == (0, "Password matches app@d.example.\n")
    bad = run("user", "verify", "app@d.example", "--password-stdin", input=password[:-1] + "\n")
    assert bad.returncode == 8
    env = run("settings", "app@d.example", "--format", "env", check_rc=0).stdout
    assert "SMTP_USERNAME=app@d.example\n" in env and password not in env


def test_twenty_parallel_creators_end_with_exactly_five(run, domain, tmp_path):
    """20 processes start `user create` on one domain at the same moment."""
    binary = smtpctl_binary()
    start = tmp_path / "go"
    # Each process waits for the same file, so they hit the store together.
    script = ('while [ ! -e "$1" ]; do sleep 0.005; done; exec "$2" user create "$3" --generate --json')
    procs = [
        subprocess.Popen(["sh", "-c", script, "sh", str(start), binary, f"user{i:02d}@{domain}"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        for i in range(20)
    ]
    time.sleep(0.5)
    start.write_text("go")
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    codes = sorted(rc for rc, _, _ in results)
    assert codes == [0] * 5 + [5] * 15, results
    errors = [err for rc, _, err in results if rc != 0]
    assert all(e.startswith("Error: d.example already holds 5 SMTP credentials") for e in errors), errors
    assert not any("locked" in err or "Traceback" in err for _, _, err in results)
    listed = json.loads(run("user", "list", "--json", check_rc=0).stdout)
    winners = sorted(json.loads(out)["login"] for rc, out, _ in results if rc == 0)
    assert sorted(c["login"] for c in listed) == winners and len(winners) == 5


@pytest.mark.sqlite_only("reads the raw bytes of the SQLite file and its WAL")
def test_raw_store_file_holds_no_password(run, domain, isolated_store):
    run("user", "create", "a@d.example", "--password-stdin", input=PW + "\n", check_rc=0)
    generated = json.loads(run("user", "create", "b@d.example", "--generate", "--json", check_rc=0).stdout)["password"]
    run("user", "reset", "a@d.example", "--password-stdin", input=PW[::-1] + "\n", check_rc=0)
    run("user", "verify", "a@d.example", "--password-stdin", input=PW[::-1] + "\n", check_rc=0)
    blobs = b"".join(p.read_bytes() for p in isolated_store.parent.iterdir() if p.is_file())
    assert b"$argon2id$" in blobs  # the store really is what we searched
    for secret in (PW, PW[::-1], generated):
        assert secret.encode() not in blobs
        assert secret.encode("utf-16-le") not in blobs


def _scan_processes(secret: str, stop: threading.Event, found: list) -> None:
    needle = secret.encode()
    while not stop.is_set():
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            for part in ("cmdline", "environ"):
                try:
                    data = Path(f"/proc/{pid}/{part}").read_bytes()
                except OSError:
                    continue
                if needle in data:
                    found.append((pid, part, data.replace(b"\0", b" ")[:200]))
        time.sleep(0.001)


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_no_documented_flow_puts_a_password_in_argv(run, domain, tmp_path):
    """Scan every process's argv (what `ps` shows) and environment while the
    documented flows run; the password must never appear."""
    secret_file = tmp_path / "pw"
    secret_file.write_text(PW + "\n")
    flows = [
        (["user", "create", "a@d.example", "--password-stdin"], PW + "\n"),
        (["user", "verify", "a@d.example", "--password-stdin"], PW + "\n"),
        (["user", "reset", "a@d.example", "--password-file", str(secret_file)], None),
        (["user", "verify", "a@d.example", "--password-file", str(secret_file)], None),
        (["user", "create", "b@d.example", "--password-file", str(secret_file)], None),
    ]
    # The scanner must be able to see a secret in argv, or its silence proves nothing.
    probe = subprocess.Popen(["sh", "-c", "sleep 2", "sh", PW], stdout=subprocess.DEVNULL)
    stop, found = threading.Event(), []
    scanner = threading.Thread(target=_scan_processes, args=(PW, stop, found), daemon=True)
    scanner.start()
    try:
        time.sleep(0.3)
        probe.kill()
        probe.wait()
        assert found, "the /proc scanner did not see a password placed in argv"
        found.clear()
        for args, stdin in flows:
            proc = run(*args, input=stdin)
            assert proc.returncode == 0, (args, proc.stderr)
    finally:
        stop.set()
        scanner.join()
    assert found == []


def test_terminal_prompt_asks_twice_and_hides_the_password(run, domain):
    rc, screen = on_terminal(
        ["user", "create", "tty@d.example"],
        [("Password:", PW), ("Repeat for confirmation:", PW)],
    )
    assert rc == 0, screen
    assert "SMTP credential tty@d.example created." in screen
    assert PW not in screen  # no echo
    run("user", "verify", "tty@d.example", "--password-stdin", input=PW + "\n", check_rc=0)


def test_terminal_confirms_a_delete(run, domain):
    run("user", "create", "gone@d.example", "--generate", check_rc=0)
    rc, screen = on_terminal(["user", "delete", "gone@d.example"], [("[y/N]:", "n")])
    assert rc == 2 and "not confirmed; nothing was changed" in screen
    rc, screen = on_terminal(["user", "delete", "gone@d.example"], [("[y/N]:", "y")])
    assert rc == 0 and "deleted" in screen
    assert json.loads(run("user", "list", "--json", check_rc=0).stdout) == []
