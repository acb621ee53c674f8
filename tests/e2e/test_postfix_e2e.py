"""smtpctl policy serve driven by a real Postfix, with Dovecot SASL reading
the passwd-file smtpctl exported: real submissions, metered and then refused."""

import json
import os
import shutil
import smtplib
import ssl
import subprocess
import time
from collections import Counter

import pytest

from tests.e2e.postfix_rig import PostfixRig, free_port, missing_tools, wait_for
from tests.e2e.servers import Running

pytestmark = pytest.mark.e2e

PW = {"alice@acme.test": "Alice-Password-123", "bob@acme.test": "Bob-Password-456"}
MESSAGE = "From: {0}\r\nTo: t1@ext.test, t2@ext.test\r\nCc: c1@ext.test\r\nSubject: rig\r\n\r\nhello\r\n"


@pytest.fixture
def rig(run, tmp_path):
    missing = missing_tools()
    if missing or os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail(f"the Postfix rig needs root and {missing}: .ci/run installs postfix and dovecot-core")
        pytest.skip(f"needs root and {missing}")
    run("agency", "add", "acme", check_rc=0)
    run("account", "add", "acme", "--agency", "acme", "--daily-limit", "10", check_rc=0)
    run("domain", "add", "acme.test", "--account", "acme", check_rc=0)
    for login, password in PW.items():
        run("user", "create", login, "--password-stdin", input=password + "\n", check_rc=0)
    policy_port = free_port()
    policy = Running(["policy", "serve", "--listen", f"127.0.0.1:{policy_port}"], tmp_path / "policy.log")
    rig = PostfixRig(passwd=tmp_path / "unused", policy=f"inet:127.0.0.1:{policy_port}")
    rig.passwd = rig.root / "smtpctl.passwd"
    run("export", "--format", "dovecot", "--output", str(rig.passwd), "--group", "dovecot", check_rc=0)
    try:
        rig.start()
        yield rig, policy
    finally:
        rig.stop()
        policy.stop()
        if os.environ.get("SMTPCTL_KEEP_RIG"):
            print("rig kept in", rig.root)
        else:
            rig.cleanup()


def send(rig, login, recipients, password=None):
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", rig.submission_port, timeout=60) as client:
        client.starttls(context=context)
        client.login(login, password or PW[login])
        return client.sendmail(login, recipients, MESSAGE.format(login))


def test_postfix_meters_through_policy_and_refuses_over_the_limit(rig, run, another_store):
    postfix, policy = rig
    assert send(postfix, "alice@acme.test", ["t1@ext.test", "t2@ext.test", "c1@ext.test", "hidden@ext.test"]) == {}
    swaks = shutil.which("swaks")
    assert swaks, "swaks is installed by .ci/run"
    proc = subprocess.run(
        [swaks, "--server", "127.0.0.1", "--port", str(postfix.submission_port), "--tls", "--auth", "PLAIN",
         "--auth-user", "bob@acme.test", "--from", "bob@acme.test", "--to", "x1@ext.test,x2@ext.test,x3@ext.test"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "SWAKS_OPT_auth_password": PW["bob@acme.test"]})
    assert proc.returncode == 0, proc.stdout[-2000:]
    status = json.loads(run("usage", "status", "acme", "--json", check_rc=0).stdout)[0]
    assert (status["sent"], status["blocked"]) == (7, False)

    # 7 + 4 = 11 > 10: this message is accepted, recorded, and the credentials go.
    assert send(postfix, "alice@acme.test", ["a@ext.test", "b@ext.test", "c@ext.test", "d@ext.test"]) == {}
    status = json.loads(run("usage", "status", "acme", "--json", check_rc=0).stdout)[0]
    assert (status["sent"], status["blocked"], status["live_credentials"]) == (11, True, 0)

    # Dovecot still has the old passwd-file; the policy service refuses the mail.
    with pytest.raises(smtplib.SMTPDataError) as err:
        send(postfix, "bob@acme.test", ["late@ext.test"])
    assert err.value.smtp_code == 554 and b"5.7.1" in err.value.smtp_error
    assert json.loads(run("usage", "status", "acme", "--json", check_rc=0).stdout)[0]["sent"] == 11

    # After a fresh export the revoked logins no longer authenticate at all.
    run("export", "--format", "dovecot", "--output", str(postfix.passwd), "--group", "dovecot", check_rc=0)
    # Dovecot stats a passwd-file at most once a second before re-reading it.
    time.sleep(1.1)
    with pytest.raises(smtplib.SMTPAuthenticationError):
        send(postfix, "alice@acme.test", ["x@ext.test"])

    log = policy.text()
    assert log.count("event=policy action=DUNNO state=END-OF-MESSAGE") == 3
    assert "event=limit_exceeded account=acme" in log and "action=REJECT" in log

    # The log Postfix wrote, imported into a fresh store, tells the same story.
    wait_for("qmgr lines in the maillog", lambda: postfix.log().count("nrcpt=") >= 3)
    fresh = another_store
    run("--db", fresh, "agency", "add", "acme", check_rc=0)
    run("--db", fresh, "account", "add", "acme", "--agency", "acme", check_rc=0)
    run("--db", fresh, "domain", "add", "acme.test", "--account", "acme", check_rc=0)
    imported = json.loads(run("--db", fresh, "usage", "import", str(postfix.maillog), "--format", "postfix",
                              "--json", check_rc=0).stdout)
    assert (imported["messages"], imported["emails"]) == (3, 11)
    per_user = Counter()
    for row in json.loads(run("--db", fresh, "usage", "report", "--by", "user", "--json", check_rc=0).stdout)["rows"]:
        per_user[row["user"]] = row["emails"]
    assert per_user == {"alice@acme.test": 8, "bob@acme.test": 3}
