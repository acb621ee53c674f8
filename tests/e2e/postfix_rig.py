"""A loopback-only Postfix + Dovecot SASL instance for the project's tests.

Everything lives in one temporary folder; the machine's /etc/postfix and
/etc/dovecot are never touched. Postfix runs as a separate instance
(``postfix -c DIR``), writes its own log through postlogd (``maillog_file``),
relays everything to an ``smtp-sink``, authenticates SMTP AUTH through a
Dovecot auth-only instance that reads the passwd-file ``smtpctl export
--format dovecot`` wrote, and asks smtpctl's policy service at END-OF-DATA.

Traps this works around (learned from shared/tools/postfix-rig.sh):
- Dovecot's auth socket must live under the instance's own queue directory
  (``private/auth``), where Postfix's smtpd looks for it, owned by postfix;
- postlogd only writes ``maillog_file`` under ``maillog_file_prefixes``;
- daemons must not inherit the test's stdio (they would keep pipes open);
- every parent folder must be searchable by the postfix and dovecot users.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def wait_for(what: str, check, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def missing_tools() -> list[str]:
    tools = ["postfix", "postconf", "dovecot", "doveadm", "/usr/sbin/smtp-sink"]
    return [t for t in tools if not (shutil.which(t) or os.path.exists(t))]


class PostfixRig:
    def __init__(self, passwd: Path, policy: str):
        self.root = Path(tempfile.mkdtemp(prefix="smtpctl-rig-"))
        os.chmod(self.root, 0o755)
        self.passwd, self.policy = passwd, policy
        self.pf_dir, self.spool = self.root / "postfix", self.root / "spool"
        self.dc_dir = self.root / "dovecot"
        self.maillog = self.root / "maillog"
        self.submission_port, self.sink_port = free_port(), free_port()
        self.sink: subprocess.Popen | None = None
        self.dovecot: subprocess.Popen | None = None

    # -- configuration -----------------------------------------------------------------
    def _postconf(self, *args: str) -> None:
        subprocess.run(["postconf", "-c", str(self.pf_dir), *args], check=True, capture_output=True)

    def write_postfix(self) -> None:
        from smtpctl.servers.tls import self_signed

        self.pf_dir.mkdir(parents=True)
        cert, key, _ = self_signed(self.pf_dir / "tls", "mail.rig.test")
        shutil.copy("/usr/share/postfix/master.cf.dist", self.pf_dir / "master.cf")
        (self.pf_dir / "main.cf").write_text("")
        main = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.spool),
            "data_directory": str(self.root / "data"),
            "meta_directory": "/etc/postfix",
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": "mail.rig.test",
            "mydomain": "rig.test",
            "mydestination": "",
            "local_transport": "error:5.1.1 no local delivery on this rig",
            "alias_maps": "",
            "alias_database": "",
            "inet_interfaces": "loopback-only",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtp_bind_address": "127.0.0.1",
            "relayhost": f"[127.0.0.1]:{self.sink_port}",
            "maillog_file": str(self.maillog),
            "maillog_file_prefixes": f"/var, /dev/stdout, {self.root}",
            "smtpd_tls_cert_file": str(cert),
            "smtpd_tls_key_file": str(key),
            "smtp_tls_security_level": "none",
            "smtputf8_enable": "no",
            "biff": "no",
            # master.cf -o values cannot hold spaces: name them here.
            "smtpctl_eod_restrictions": f"check_policy_service {self.policy}",
            "smtpctl_sasl_only": "permit_sasl_authenticated, reject",
        }
        for name, value in main.items():
            self._postconf("-e", f"{name} = {value}")
        self._postconf("-M#", "smtp/inet")  # port 25 is not ours to take
        self._postconf("-F", "*/*/chroot=n")
        service = f"127.0.0.1:{self.submission_port}"
        self._postconf("-M", f"{service}/inet={service} inet n - n - - smtpd")
        for setting in (
            "syslog_name=postfix/submission",
            "smtpd_tls_security_level=encrypt",
            "smtpd_tls_auth_only=yes",
            "smtpd_sasl_auth_enable=yes",
            "smtpd_sasl_type=dovecot",
            "smtpd_sasl_path=private/auth",
            "smtpd_client_restrictions=",
            "smtpd_relay_restrictions=$smtpctl_sasl_only",
            "smtpd_recipient_restrictions=$smtpctl_sasl_only",
            "smtpd_end_of_data_restrictions=$smtpctl_eod_restrictions",
        ):
            self._postconf("-P", f"{service}/inet/{setting}")

    def write_dovecot(self) -> Path:
        (self.dc_dir / "run").mkdir(parents=True)
        (self.dc_dir / "state").mkdir()
        conf = self.dc_dir / "dovecot.conf"
        conf.write_text(f"""
base_dir = {self.dc_dir}/run
state_dir = {self.dc_dir}/state
instance_name = smtpctl-rig-{os.getpid()}
protocols = none
listen = 127.0.0.1
ssl = no
log_path = {self.dc_dir}/dovecot.log
auth_mechanisms = plain login
auth_username_format = %Lu
disable_plaintext_auth = no
passdb {{
  driver = passwd-file
  args = {self.passwd}
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}}
service auth {{
  unix_listener {self.spool}/private/auth {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
""")
        return conf

    # -- life cycle --------------------------------------------------------------------
    def start(self) -> "PostfixRig":
        quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.sink = subprocess.Popen(["/usr/sbin/smtp-sink", "-4", "-u", "nobody", "-h", "sink.rig.test",
                                      f"127.0.0.1:{self.sink_port}", "64"], start_new_session=True, **quiet)
        wait_for("smtp-sink", lambda: listening(self.sink_port))
        self.write_postfix()
        (self.root / "data").mkdir()
        shutil.chown(self.root / "data", "postfix", "postfix")
        self.spool.mkdir()  # postfix check creates the queue's own folders inside it
        subprocess.run(["postfix", "-c", str(self.pf_dir), "check"], check=True, capture_output=True)
        started = subprocess.run(["postfix", "-c", str(self.pf_dir), "start"], capture_output=True, text=True,
                                 stdin=subprocess.DEVNULL)
        assert started.returncode == 0, started.stdout + started.stderr
        wait_for("postfix submission", lambda: listening(self.submission_port))
        conf = self.write_dovecot()
        self.dovecot = subprocess.Popen(["dovecot", "-F", "-c", str(conf)], start_new_session=True, **quiet)
        wait_for("dovecot auth socket", lambda: (self.spool / "private" / "auth").exists())
        return self

    def stop(self) -> None:
        subprocess.run(["postfix", "-c", str(self.pf_dir), "stop"], capture_output=True, stdin=subprocess.DEVNULL)
        for proc in (self.dovecot, self.sink):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        pid_file = self.spool / "pid" / "master.pid"
        deadline = time.monotonic() + 20
        while pid_file.exists() and time.monotonic() < deadline:
            try:
                pid = int(pid_file.read_text().split()[0])
                os.kill(pid, 0)
            except (OSError, ValueError, IndexError):
                break
            time.sleep(0.1)

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        return self.maillog.read_text() if self.maillog.exists() else ""
