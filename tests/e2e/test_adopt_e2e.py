"""Move in with existing passwords: hashes made by doveadm and mkpasswd, imported
with the real smtpctl, then used for SMTP AUTH against a real `smtpctl serve`."""

import json
import smtplib
import ssl
import subprocess

import pytest

from tests.e2e.servers import Running
from tests.real_hashes import PW, doveadm_hash, mkpasswd_hash, tool

pytestmark = pytest.mark.e2e

# login -> (how its hash was made, the scheme smtpctl reports before the rehash)
ADOPTED = {
    "sha512@d.example": (lambda: doveadm_hash("SHA512-CRYPT"), "sha512-crypt"),
    "blf@d.example": (lambda: doveadm_hash("BLF-CRYPT"), "bcrypt"),
    "sha256@d.example": (lambda: mkpasswd_hash("sha-256"), "sha256-crypt"),
    "argon2i@d.example": (lambda: doveadm_hash("ARGON2I"), "argon2i"),
}


def tls_client() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the server's self-signed certificate
    return context


def schemes(run) -> dict[str, str]:
    return {u["login"]: u["hash_scheme"] for u in json.loads(run("user", "list", "--json", check_rc=0).stdout)}


def test_imported_hashes_authenticate_in_serve_and_are_rehashed(run, tmp_path):
    run("agency", "add", "acme", check_rc=0)
    run("account", "add", "shop", "--agency", "acme", check_rc=0)
    run("domain", "add", "d.example", "--account", "shop", check_rc=0)
    made = {login: make() for login, (make, _) in ADOPTED.items()}
    passwd = tmp_path / "users"
    passwd.write_text("".join(f"{login}:{made[login]}:5000:5000::/var/vmail/{login}::\n" for login in ADOPTED))
    imported = run("user", "import", str(passwd), "--format", "dovecot", "--json", check_rc=0)
    assert json.loads(imported.stdout)["created"] == len(ADOPTED)
    assert schemes(run) == {login: scheme for login, (_, scheme) in ADOPTED.items()}
    # Until the first login, the Dovecot export carries the adopted hash with its own prefix.
    exported = tmp_path / "smtpctl.passwd"
    run("export", "--format", "dovecot", "--output", str(exported), check_rc=0)
    for line in exported.read_text().splitlines():
        login, stored = line.split(":", 1)
        assert stored.split("}")[-1] == made[login].split("}")[-1]
        checked = subprocess.run([tool("doveadm", "dovecot-core"), "pw", "-t", stored, "-p", PW],
                                 capture_output=True, text=True, timeout=60)
        assert checked.returncode == 0 and "(verified)" in checked.stdout, (login, checked.stderr)

    server = Running(["serve", "--submission", "127.0.0.1:0", "--smtps", "127.0.0.1:0", "--auth-delay", "0.1",
                     "--max-auth-failures", "100"],
                     tmp_path / "serve.log")
    try:
        for login in ADOPTED:
            with smtplib.SMTP(*server.addresses["submission"], timeout=30) as client:
                client.ehlo()
                client.starttls(context=tls_client())
                client.ehlo()
                with pytest.raises(smtplib.SMTPAuthenticationError):
                    client.login(login, "not-" + PW)
            assert schemes(run)[login] == ADOPTED[login][1]  # a failed AUTH changes nothing
            with smtplib.SMTP(*server.addresses["submission"], timeout=30) as client:
                client.ehlo()
                client.starttls(context=tls_client())
                client.ehlo()
                code, _ = client.login(login, PW)
                assert code == 235
            # The 235 came after the new hash was stored.
            assert schemes(run)[login] == "argon2id"
    finally:
        assert server.stop() == 0, server.text()
    log = server.text()
    assert PW not in log and not any(made[login].split("}")[-1] in log for login in ADOPTED)

    rehashes = json.loads(run("audit", "--action", "credential.rehash", "--json", check_rc=0).stdout)
    assert sorted((e["object_name"], e["details"]["from"], e["details"]["to"]) for e in rehashes) == sorted(
        (login, scheme, "argon2id") for login, (_, scheme) in ADOPTED.items())
    # The password still works after the rehash, and a re-run of the import is "unchanged".
    for login in ADOPTED:
        run("user", "verify", login, "--password-stdin", input=PW + "\n", check_rc=0)
    again = json.loads(run("user", "import", str(passwd), "--format", "dovecot", "--json", check_rc=0).stdout)
    assert (again["created"], again["unchanged"], again["lines_rejected"]) == (0, len(ADOPTED), 0)
    assert set(schemes(run).values()) == {"argon2id"}
