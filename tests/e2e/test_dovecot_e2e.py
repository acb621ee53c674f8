"""The Dovecot passwd-file smtpctl writes, checked by the real doveadm."""

import os
import shutil
import subprocess
import tomllib

import pytest

from smtpctl.core.store import Store

pytestmark = pytest.mark.e2e

PW = "Correct-Horse-Battery-Staple-42"


def doveadm() -> str:
    found = shutil.which("doveadm")
    if not found:
        if os.environ.get("CI"):
            pytest.fail("doveadm is missing: .ci/run installs Debian's dovecot-core")
        pytest.skip("doveadm not installed (apt-get install dovecot-core)")
    return found


def test_every_stored_scheme_verifies_in_doveadm(run, tmp_path, isolated_store):
    from passlib.hash import bcrypt, sha512_crypt

    tool = doveadm()
    doc = tmp_path / "p.toml"
    doc.write_text('[[agencies]]\nname = "acme"\n[[accounts]]\nname = "shop"\nagency = "acme"\n'
                   '[[domains]]\nname = "d.example"\naccount = "shop"\n'
                   '[[credentials]]\nlogin = "gen@d.example"\ngenerate = true\n')
    secrets = tmp_path / "secrets.toml"
    run("apply", str(doc), "--secrets-out", str(secrets), check_rc=0)
    generated = tomllib.loads(secrets.read_text())["passwords"]["gen@d.example"]
    for login in ("argon@d.example", "blf@d.example", "sha@d.example"):
        run("user", "create", login, "--password-stdin", input=PW + "\n", check_rc=0)
    # Credentials migrated in from older systems keep their bcrypt / SHA512-CRYPT hashes.
    with Store.open(isolated_store) as store, store.write():
        store.execute("UPDATE credentials SET password_hash = ? WHERE login = 'blf@d.example'", [bcrypt.hash(PW)])
        store.execute("UPDATE credentials SET password_hash = ? WHERE login = 'sha@d.example'", [sha512_crypt.hash(PW)])
    passwd = tmp_path / "passwd"
    run("export", "--format", "dovecot", "--output", str(passwd), check_rc=0)
    entries = dict(line.split(":", 1) for line in passwd.read_text().splitlines())
    assert {login: h.split("}")[0] + "}" for login, h in entries.items()} == {
        "argon@d.example": "{ARGON2ID}", "blf@d.example": "{BLF-CRYPT}", "gen@d.example": "{ARGON2ID}",
        "sha@d.example": "{SHA512-CRYPT}"}
    for login, stored in entries.items():
        password = generated if login == "gen@d.example" else PW
        good = subprocess.run([tool, "pw", "-t", stored, "-p", password], capture_output=True, text=True)
        assert good.returncode == 0 and "(verified)" in good.stdout, (login, good.stdout, good.stderr)
        bad = subprocess.run([tool, "pw", "-t", stored, "-p", password + "x"], capture_output=True, text=True)
        assert bad.returncode != 0, login


@pytest.fixture
def world_readable_dir():
    """Dovecot's auth process runs as the dovecot user: it needs +x on every
    parent folder, which pytest's own 0700 temp root does not give."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="smtpctl-dovecot-") as tmp:
        os.chmod(tmp, 0o755)
        yield __import__("pathlib").Path(tmp)


def test_dovecot_passwd_file_authenticates_through_doveadm_auth(run, world_readable_dir):
    """A throw-away Dovecot instance (auth only) reading the exported file as is."""
    import grp
    import time

    tool = doveadm()
    try:
        grp.getgrnam("dovecot")
    except KeyError:
        pytest.skip("no dovecot group (dovecot-core not installed)")
    run("agency", "add", "acme", check_rc=0)
    run("account", "add", "shop", "--agency", "acme", check_rc=0)
    run("domain", "add", "d.example", "--account", "shop", check_rc=0)
    run("user", "create", "app@d.example", "--password-stdin", input=PW + "\n", check_rc=0)
    base = world_readable_dir
    (base / "run").mkdir()
    (base / "state").mkdir()
    passwd = base / "passwd"
    run("export", "--format", "dovecot", "--output", str(passwd), "--group", "dovecot", check_rc=0)
    assert oct(passwd.stat().st_mode & 0o777) == "0o640"
    conf = base / "dovecot.conf"
    conf.write_text(f"""
base_dir = {base}/run
state_dir = {base}/state
instance_name = smtpctl-test-{os.getpid()}
protocols = none
listen = 127.0.0.1
ssl = no
log_path = {base}/dovecot.log
auth_mechanisms = plain login
disable_plaintext_auth = no
passdb {{
  driver = passwd-file
  args = {passwd}
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}}
""")
    daemon = subprocess.Popen(["dovecot", "-F", "-c", str(conf)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if (base / "run" / "auth-client").exists():
                break
            time.sleep(0.05)
        log = base / "dovecot.log"
        ok = subprocess.run([tool, "-c", str(conf), "auth", "test", "app@d.example", PW],
                            capture_output=True, text=True, timeout=30)
        assert ok.returncode == 0 and "auth succeeded" in ok.stdout, (
            ok.stdout, ok.stderr, log.read_text() if log.exists() else "")
        bad = subprocess.run([tool, "-c", str(conf), "auth", "test", "app@d.example", PW + "x"],
                             capture_output=True, text=True, timeout=30)
        assert bad.returncode != 0 and "auth failed" in bad.stdout
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)
