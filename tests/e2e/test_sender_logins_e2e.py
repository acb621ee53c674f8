"""`export --format postfix-sender-logins`: the smtpd_sender_login_maps table,
checked against the sender-alignment rule and by the real postmap."""

import os
import shutil
import stat
import subprocess

import pytest

from smtpctl.core.directory.accounts import add_account
from smtpctl.core.directory.agencies import add_agency
from smtpctl.core.directory.credentials import create_credential, delete_credential
from smtpctl.core.directory.domains import add_domain
from smtpctl.core.metering.live import sender_allowed
from smtpctl.core.provisioning.export import postfix_sender_logins
from smtpctl.core.store import Store

pytestmark = pytest.mark.e2e

PW = "a good long password"
TABLE = ("@acme.test\tann@news.acme.test,bob@acme.test\n"
         "@news.acme.test\tann@news.acme.test,bob@acme.test\n"
         "@other.test\teve@other.test\n"
         "@xn--bcher-kva.test\tann@news.acme.test,bob@acme.test\n"
         "@bücher.test\tann@news.acme.test,bob@acme.test\n")


@pytest.fixture
def world(isolated_store):
    with Store.open(isolated_store) as store:
        add_agency(store, "acme")
        add_account(store, "shop", "acme")
        add_account(store, "other", "acme")
        add_account(store, "quiet", "acme")
        for domain, account in (("acme.test", "shop"), ("news.acme.test", "shop"), ("bücher.test", "shop"),
                                ("other.test", "other"), ("quiet.test", "quiet")):
            add_domain(store, domain, account=account)
        add_domain(store, "shared.test", agency="acme")  # agency-assigned: no sender of ours
        for login in ("bob@acme.test", "ann@news.acme.test", "eve@other.test", "gone@other.test"):
            create_credential(store, login, PW)
        delete_credential(store, "gone@other.test")  # deleted: owns nothing any more
    return isolated_store


def test_the_table(world, run):
    result = run("export", "--format", "postfix-sender-logins", check_rc=0)
    assert (result.stdout, result.stderr) == (TABLE, "")


def test_the_table_says_what_the_alignment_rule_says(world):
    with Store.open(world) as store:
        owners = {}
        for line in postfix_sender_logins(store).splitlines():
            key, logins = line.split("\t")
            owners[key] = set(logins.split(","))
        logins = [c.login for c in store.credentials()]
        for domain in [d.name for d in store.domains()] + ["paypal.com"]:
            for login in logins:
                assert (login in owners.get(f"@{domain}", set())) == sender_allowed(
                    store, login, f"someone@{domain}"), (login, domain)


def test_written_atomically(world, run, tmp_path):
    out = tmp_path / "sender_logins"
    out.write_text("old\n")
    result = run("export", "--format", "postfix-sender-logins", "--output", str(out), check_rc=0)
    assert (result.stdout, result.stderr) == ("", f"Wrote {out} (5 sender domains).\n")
    assert out.read_text() == TABLE
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging file left
    result = run("export", "--format", "postfix-sender-logins", "--output", str(out), "--group", "no-such-group")
    assert (result.returncode, result.stderr) == (2, "Error: unknown group 'no-such-group'\n")
    assert out.read_text() == TABLE


def test_empty_store_writes_an_empty_table(run, tmp_path):
    out = tmp_path / "sender_logins"
    result = run("export", "--format", "postfix-sender-logins", "--output", str(out), check_rc=0)
    assert result.stderr == f"Wrote {out} (0 sender domains).\n" and out.read_text() == ""


def postmap() -> str:
    found = shutil.which("postmap") or ("/usr/sbin/postmap" if os.path.exists("/usr/sbin/postmap") else None)
    if not found:
        if os.environ.get("CI"):
            pytest.fail("postmap is missing: .ci/run installs Debian's postfix")
        pytest.skip("postmap not installed (apt-get install postfix)")
    return found


@pytest.mark.parametrize("smtputf8", ["yes", "no"])
def test_postmap_reads_the_table(world, run, tmp_path, smtputf8):
    tool = postmap()
    config = tmp_path / "postfix"
    config.mkdir()
    (config / "main.cf").write_text(f"compatibility_level = 3.6\nsmtputf8_enable = {smtputf8}\n")
    table = tmp_path / "sender_logins"
    run("export", "--format", "postfix-sender-logins", "--output", str(table), check_rc=0)
    built = subprocess.run([tool, "-c", str(config), f"hash:{table}"], capture_output=True, text=True)
    assert (built.returncode, built.stderr) == (0, "")

    def query(kind: str, key: str) -> tuple[int, str]:
        found = subprocess.run([tool, "-c", str(config), "-q", key, f"{kind}:{table}"], capture_output=True,
                               text=True)
        return found.returncode, found.stdout

    for kind in ("texthash", "hash"):
        assert query(kind, "@acme.test") == (0, "ann@news.acme.test,bob@acme.test\n")
        assert query(kind, "@ACME.Test") == (0, "ann@news.acme.test,bob@acme.test\n")  # keys fold case
        assert query(kind, "@bücher.test") == (0, "ann@news.acme.test,bob@acme.test\n")
        assert query(kind, "@other.test") == (0, "eve@other.test\n")
        for missing in ("@quiet.test", "@shared.test", "@paypal.com"):
            assert query(kind, missing) == (1, ""), (kind, missing)
