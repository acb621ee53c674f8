"""Password hashes made at test time by the tools operators made theirs with:
Dovecot's ``doveadm pw`` and ``mkpasswd`` (Debian's whois package).

Missing tools skip the test with the package to install; under CI (where
.ci/run installs dovecot-core and whois) they fail it instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

PW = "Correct-Horse-Battery-Staple-42"


def tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if not found:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing: .ci/run installs Debian's {package}")
        pytest.skip(f"{name} not installed (apt-get install {package})")
    return found


def doveadm_hash(scheme: str, password: str = PW) -> str:
    """``doveadm pw -s SCHEME -p PASSWORD``: a hash with its ``{SCHEME}`` prefix."""
    out = subprocess.run([tool("doveadm", "dovecot-core"), "pw", "-s", scheme, "-p", password],
                         capture_output=True, text=True, check=True, timeout=60)
    return out.stdout.strip()


def mkpasswd_hash(method: str, password: str = PW) -> str:
    """``mkpasswd -m METHOD --stdin``: a bare crypt(3) hash (``$6$...``, ``$5$...``)."""
    out = subprocess.run([tool("mkpasswd", "whois"), "-m", method, "--stdin"], input=password,
                         capture_output=True, text=True, check=True, timeout=60)
    return out.stdout.strip()


# (label, maker, the scheme smtpctl reports): every way of making a hash that
# the adoption docs promise, each with the prefix as its tool writes it.
MAKERS = [
    ("doveadm SHA512-CRYPT", lambda pw=PW: doveadm_hash("SHA512-CRYPT", pw), "sha512-crypt"),
    ("doveadm SHA256-CRYPT", lambda pw=PW: doveadm_hash("SHA256-CRYPT", pw), "sha256-crypt"),
    ("doveadm BLF-CRYPT", lambda pw=PW: doveadm_hash("BLF-CRYPT", pw), "bcrypt"),
    ("doveadm CRYPT", lambda pw=PW: doveadm_hash("CRYPT", pw), "bcrypt"),
    ("doveadm ARGON2ID", lambda pw=PW: doveadm_hash("ARGON2ID", pw), "argon2id"),
    ("doveadm ARGON2I", lambda pw=PW: doveadm_hash("ARGON2I", pw), "argon2i"),
    ("mkpasswd sha-512", lambda pw=PW: mkpasswd_hash("sha-512", pw), "sha512-crypt"),
    ("mkpasswd sha-256", lambda pw=PW: mkpasswd_hash("sha-256", pw), "sha256-crypt"),
    ("mkpasswd bcrypt", lambda pw=PW: mkpasswd_hash("bcrypt", pw), "bcrypt"),
    ("mkpasswd bcrypt-a", lambda pw=PW: mkpasswd_hash("bcrypt-a", pw), "bcrypt"),
]

# Hashes the same tools make that smtpctl refuses to adopt (label, maker).
REFUSED_MAKERS = [
    ("doveadm PLAIN", lambda pw=PW: doveadm_hash("PLAIN", pw)),
    ("doveadm MD5-CRYPT", lambda pw=PW: doveadm_hash("MD5-CRYPT", pw)),
    ("doveadm SSHA512", lambda pw=PW: doveadm_hash("SSHA512", pw)),
    ("mkpasswd yescrypt", lambda pw=PW: mkpasswd_hash("yescrypt", pw)),
    ("mkpasswd md5crypt", lambda pw=PW: mkpasswd_hash("md5crypt", pw)),
    ("mkpasswd descrypt", lambda pw=PW: mkpasswd_hash("descrypt", pw)),
]
