"""Password hashing: the only module that imports passlib (libpass).

New hashes are argon2id with parallelism 1 (Dovecot verifies through
libsodium, which accepts only p=1). bcrypt and SHA512-CRYPT hashes, from
imports of older systems, still verify but are deprecated: a successful
verify hands back an argon2id hash to store instead.
"""

from __future__ import annotations

import secrets
import string
from functools import lru_cache
from typing import TYPE_CHECKING

from smtpctl.core.errors import InvalidInput

if TYPE_CHECKING:
    from passlib.context import CryptContext

MIN_LENGTH = 12
MAX_LENGTH = 128
GENERATED_LENGTH = 32
# Letters and digits only: a generated password pastes safely into a shell,
# a URL (no percent-encoding), TOML/YAML/.env files and SMTP AUTH.
GENERATED_ALPHABET = string.ascii_letters + string.digits

# 32 MiB, 2 passes, 1 lane: about 20-40 ms per verify on a 2-core machine
# (benchmarks/credentials.py); the OWASP minimum is 19 MiB and 2 passes.
ARGON2_MEMORY_KIB = 32768
ARGON2_TIME_COST = 2
ARGON2_PARALLELISM = 1

SCHEMES = {"argon2": "argon2id", "bcrypt": "bcrypt", "sha512_crypt": "sha512-crypt"}


@lru_cache(maxsize=1)
def context() -> "CryptContext":
    from passlib.context import CryptContext

    return CryptContext(
        schemes=["argon2", "bcrypt", "sha512_crypt"],
        default="argon2",
        deprecated=["bcrypt", "sha512_crypt"],
        argon2__type="ID",
        argon2__memory_cost=ARGON2_MEMORY_KIB,
        argon2__time_cost=ARGON2_TIME_COST,
        argon2__parallelism=ARGON2_PARALLELISM,
    )


def validate_password(password: str) -> str:
    """A chosen password: 12-128 characters, no control characters.

    A NUL, newline or other control character cannot travel in SMTP AUTH
    PLAIN or LOGIN. Raises ``InvalidInput`` (without echoing the password).
    """
    if not isinstance(password, str):
        raise InvalidInput("the password must be text")
    if len(password) < MIN_LENGTH:
        raise InvalidInput(f"the password is too short: it needs at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise InvalidInput(f"the password is too long: at most {MAX_LENGTH} characters")
    if any(ord(c) < 32 or ord(c) == 127 or 0x80 <= ord(c) < 0xA0 for c in password):
        raise InvalidInput("the password contains a control character (such as a newline, tab or NUL), "
                           "which cannot be sent in SMTP AUTH")
    return password


def single_line(text: str, source: str) -> str:
    """The password in ``text``: its one line, without the trailing newline and nothing else stripped.

    Raises ``InvalidInput`` naming ``source`` when there is more than one line.
    """
    line, _newline, rest = text.partition("\n")
    if rest:
        raise InvalidInput(f"{source} has more than one line; give exactly one line")
    return line


def generate_password() -> str:
    """A strong random password from ``secrets``: 32 letters and digits (~190 bits)."""
    return "".join(secrets.choice(GENERATED_ALPHABET) for _ in range(GENERATED_LENGTH))


def hash_password(password: str) -> str:
    """Hash a validated password with argon2id."""
    return context().hash(password)


def verify_password(password: str, stored_hash: str) -> tuple[bool, str | None]:
    """Check ``password`` against ``stored_hash`` (constant-time compare).

    Returns ``(matches, new_hash)``; ``new_hash`` is an argon2id hash to store
    when the password matched a deprecated scheme or weaker argon2 parameters.
    """
    ctx = context()
    try:
        scheme = ctx.identify(stored_hash, required=True)
    except ValueError:
        return False, None
    secret: str | bytes = password
    if scheme == "bcrypt":
        # bcrypt only ever saw the first 72 bytes (and bcrypt 5 refuses more):
        # verify the way the system that made the hash, and Dovecot, do.
        secret = password.encode("utf-8")[:72]
    if not ctx.verify(secret, stored_hash):
        return False, None
    return True, (ctx.hash(password) if ctx.needs_update(stored_hash) else None)


def scheme_of(stored_hash: str) -> str:
    """The scheme's name as shown to people: argon2id, bcrypt or sha512-crypt."""
    name = context().identify(stored_hash)
    return SCHEMES.get(name or "", name or "unknown")


def dovecot_scheme(stored_hash: str) -> str:
    """Dovecot's scheme prefix for a stored hash (``ARGON2ID``, ``BLF-CRYPT``, ``SHA512-CRYPT``)."""
    return {"argon2id": "ARGON2ID", "bcrypt": "BLF-CRYPT", "sha512-crypt": "SHA512-CRYPT"}[scheme_of(stored_hash)]


@lru_cache(maxsize=1)
def _decoy() -> str:
    return hash_password(generate_password())


def decoy_verify(password: str) -> None:
    """Spend what a real verify costs, for a login that does not exist, so a
    client cannot tell unknown logins from wrong passwords by the time taken."""
    context().verify(password, _decoy())
