"""Password hashing: the only module that imports passlib (libpass).

New hashes are argon2id with parallelism 1 (Dovecot verifies through
libsodium, which accepts only p=1). Hashes adopted from another mail server
(``adopt_hash``: argon2i, bcrypt, SHA512-CRYPT, SHA256-CRYPT, or argon2id
with other parameters) still verify but are deprecated: a successful verify
hands back an argon2id hash to store instead.
"""

from __future__ import annotations

import re
import string
import warnings
from functools import lru_cache
from typing import TYPE_CHECKING

from smtpctl.core.model.errors import InvalidInput

if TYPE_CHECKING:
    from passlib.context import CryptContext

MIN_LENGTH = 12
MAX_LENGTH = 128
GENERATED_LENGTH = 32
# Letters and digits only: a generated password pastes safely into a shell,
# a URL (no percent-encoding), TOML/YAML/.env files and SMTP AUTH.
GENERATED_ALPHABET = string.ascii_letters + string.digits

# 32 MiB, 2 passes, 1 lane: about 20-40 ms per verify on a 2-core machine
# (python benchmarks/run.py --only credentials); the OWASP minimum is 19 MiB and 2 passes.
ARGON2_MEMORY_KIB = 32768
ARGON2_TIME_COST = 2
ARGON2_PARALLELISM = 1

SCHEMES = {"argon2": "argon2id", "bcrypt": "bcrypt", "sha512_crypt": "sha512-crypt", "sha256_crypt": "sha256-crypt"}
DOVECOT_SCHEMES = {"argon2id": "ARGON2ID", "argon2i": "ARGON2I", "bcrypt": "BLF-CRYPT",
                   "sha512-crypt": "SHA512-CRYPT", "sha256-crypt": "SHA256-CRYPT"}
# A Dovecot {SCHEME} prefix and the schemes a hash under it may have. CRYPT
# is crypt(3): whatever the hash's own $id$ says.
ADOPTABLE_PREFIXES = {
    "ARGON2ID": {"argon2id"}, "ARGON2I": {"argon2i"}, "BLF-CRYPT": {"bcrypt"},
    "SHA512-CRYPT": {"sha512-crypt"}, "SHA256-CRYPT": {"sha256-crypt"},
    "CRYPT": {"bcrypt", "sha512-crypt", "sha256-crypt"},
}
ADOPTABLE = "argon2id, argon2i, bcrypt ($2y$, $2b$, $2a$), SHA512-CRYPT ($6$) and SHA256-CRYPT ($5$)"
_PREFIX = re.compile(r"\{([A-Za-z0-9._-]{1,32})\}")


@lru_cache(maxsize=1)
def context() -> "CryptContext":
    from passlib.context import CryptContext

    return CryptContext(
        schemes=["argon2", "bcrypt", "sha512_crypt", "sha256_crypt"],
        default="argon2",
        deprecated=["bcrypt", "sha512_crypt", "sha256_crypt"],
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



def generate_password() -> str:
    """A strong random password from ``secrets``: 32 letters and digits (~190 bits)."""
    # Here, not at the top: secrets and the hashlib it loads are ~6 ms of CPU at start-up
    # of every command that reaches this module (user list, account list, settings...).
    import secrets

    return "".join(secrets.choice(GENERATED_ALPHABET) for _ in range(GENERATED_LENGTH))


def hash_password(password: str) -> str:
    """Hash a validated password with argon2id."""
    return context().hash(password)


def verify_password(password: str, stored_hash: str) -> tuple[bool, str | None]:
    """Check ``password`` against ``stored_hash`` (constant-time compare).

    Returns ``(matches, new_hash)``; ``new_hash`` is an argon2id hash to store
    when the password matched a deprecated scheme or weaker argon2 parameters.
    Raises ``InvalidInput``, verifying nothing, for a stored hash that costs
    more than the ceiling (one stored before the ceiling existed: a verify
    would stall whoever waits for it).
    """
    scheme = handler_of(stored_hash)
    if scheme is None:
        return False, None
    ctx = context()
    costly = _over_ceiling(scheme, ctx.handler(scheme).from_string(stored_hash))
    if costly:
        raise InvalidInput(f"the stored {scheme_of(stored_hash)} hash costs more to verify than smtpctl accepts "
                           f"({costly}); it is not verified: give the credential a new password (user reset)")
    secret: str | bytes = password
    if scheme == "bcrypt":
        # bcrypt only ever saw the first 72 bytes (and bcrypt 5 refuses more):
        # verify the way the system that made the hash, and Dovecot, do.
        secret = password.encode("utf-8")[:72]
    if not ctx.verify(secret, stored_hash):
        return False, None
    return True, (ctx.hash(password) if ctx.needs_update(stored_hash) else None)


# Which of the context's schemes a hash is, by its prefix, as passlib's
# handlers tell (argon2 ``^\$argon2[a-z]+\$``, bcrypt its five idents,
# SHA-crypt ``$6$`` and ``$5$``; tests/core/test_passwords.py checks it
# agrees with ``CryptContext.identify``). The one identification: verify,
# adoption and display all ask it. Not the context's own: building the
# context imports passlib and argon2, ~30 ms of ``user list``, which shows
# every credential's scheme and verifies nothing.
_ARGON2_IDENT = re.compile(r"\$argon2[a-z]+\$")
_BCRYPT_IDENTS = ("$2$", "$2a$", "$2x$", "$2y$", "$2b$")


def handler_of(stored_hash: str) -> str | None:
    """The context's scheme (passlib's handler name) a hash belongs to, or None."""
    if _ARGON2_IDENT.match(stored_hash):
        return "argon2"
    if stored_hash.startswith(_BCRYPT_IDENTS):
        return "bcrypt"
    if stored_hash.startswith("$6$"):
        return "sha512_crypt"
    if stored_hash.startswith("$5$"):
        return "sha256_crypt"
    return None


def scheme_of(stored_hash: str) -> str:
    """The scheme's name as shown to people: argon2id, argon2i, bcrypt, sha512-crypt or sha256-crypt."""
    name = handler_of(stored_hash)
    if name == "argon2" and stored_hash.startswith("$argon2i$"):
        return "argon2i"
    return SCHEMES.get(name or "", "unknown")


def dovecot_scheme(stored_hash: str) -> str:
    """Dovecot's scheme prefix for a stored hash (``ARGON2ID``, ``BLF-CRYPT``, ``SHA512-CRYPT``...)."""
    return DOVECOT_SCHEMES[scheme_of(stored_hash)]


def adopt_hash(text: str) -> str:
    """The hash to store for a password hash made by another system.

    ``text`` is an argon2id/argon2i, bcrypt (``$2y$``, ``$2b$``, ``$2a$``),
    SHA512-CRYPT (``$6$``) or SHA256-CRYPT (``$5$``) hash, with or without
    a Dovecot ``{SCHEME}`` prefix (``ARGON2ID``, ``ARGON2I``, ``BLF-CRYPT``,
    ``SHA512-CRYPT``, ``SHA256-CRYPT``, ``CRYPT``); the hash must parse, not
    merely look like one. Returns it without the prefix. Raises
    ``InvalidInput`` naming the scheme, never quoting the hash: plain text,
    MD5, DES crypt, argon2d, a prefix that disagrees with the hash, garbage.
    """
    if not isinstance(text, str):
        raise InvalidInput("the password hash must be text")
    raw, prefix = text.strip(), None
    match = _PREFIX.match(raw)
    if match:
        prefix, raw = match.group(1).upper(), raw[match.end():]
        if prefix not in ADOPTABLE_PREFIXES:
            raise InvalidInput(f"the {{{match.group(1)}}} scheme is not accepted; smtpctl adopts {ADOPTABLE} "
                               "hashes (give this login a new password instead)")
    elif raw.startswith("{"):
        raise InvalidInput("the password hash starts with a malformed {SCHEME} prefix")
    name = handler_of(raw)
    if name is None:
        raise InvalidInput(f"not a password hash smtpctl adopts: it takes {ADOPTABLE} hashes; "
                           "plain text, MD5 and DES crypt are refused")
    shown = SCHEMES[name]
    try:
        with warnings.catch_warnings():
            # e.g. a bcrypt salt with stray padding bits: bcrypt ignores them, and
            # a warning on stderr would only clutter an import's report.
            warnings.simplefilter("ignore")
            parsed = context().handler(name).from_string(raw)
    except (ValueError, TypeError) as exc:
        reason = str(exc)
        if not reason or raw in reason or raw[-12:] in reason:  # never echo the hash
            reason = "it does not parse"
        raise InvalidInput(f"a malformed {shown} hash ({reason})") from None
    if name == "argon2" and parsed.type not in ("id", "i"):
        raise InvalidInput(f"argon2{parsed.type} hashes are not accepted; smtpctl adopts argon2id and argon2i")
    if name == "bcrypt" and parsed.ident not in ("$2y$", "$2b$", "$2a$"):
        raise InvalidInput(f"bcrypt {parsed.ident} hashes are not accepted; smtpctl adopts $2y$, $2b$ and $2a$")
    scheme = scheme_of(raw)
    if prefix is not None and scheme not in ADOPTABLE_PREFIXES[prefix]:
        raise InvalidInput(f"the {{{prefix}}} prefix does not match the hash, which is {scheme}")
    too_costly = _over_ceiling(name, parsed)
    if too_costly:
        raise InvalidInput(f"the {scheme} hash costs more to verify than smtpctl accepts ({too_costly}): every "
                           "login would pay it, and a stranger could stall AUTH with it; give this login a new "
                           "password instead")
    return raw


# The most an adopted hash may cost to verify (docs/credentials.md, "Adopting
# hashes"): well above each scheme's usual defaults (glibc and Dovecot's
# SHA-crypt 5,000 rounds and passlib's 656,000; bcrypt cost 10-12; argon2
# 19-64 MiB, 2-3 passes), far below what stalls a server: on this project's
# 2-core machine SHA512-CRYPT at 1,000,000 rounds verifies in ~1 s, bcrypt 14
# in ~1.2 s, argon2 at 256 MiB in ~0.6 s (``$6$rounds=999999999$`` took 8.5 s
# and argon2 at 4 GiB 4.2 GB of memory: issue 23).
MAX_SHA_CRYPT_ROUNDS = 1_000_000
MAX_BCRYPT_COST = 14
MAX_ARGON2_MEMORY_KIB = 262_144
MAX_ARGON2_TIME_COST = 16
MAX_ARGON2_PARALLELISM = 16


def _over_ceiling(name: str, parsed: object) -> str:
    """What in a parsed adoptable hash is over the ceiling, or ``""``."""
    if name in ("sha512_crypt", "sha256_crypt") and parsed.rounds > MAX_SHA_CRYPT_ROUNDS:
        return f"rounds={parsed.rounds:,}, at most {MAX_SHA_CRYPT_ROUNDS:,}"
    if name == "bcrypt" and parsed.rounds > MAX_BCRYPT_COST:
        return f"cost {parsed.rounds}, at most {MAX_BCRYPT_COST}"
    if name == "argon2":
        for what, value, most in (("m", parsed.memory_cost, MAX_ARGON2_MEMORY_KIB),
                                  ("t", parsed.rounds, MAX_ARGON2_TIME_COST),
                                  ("p", parsed.parallelism, MAX_ARGON2_PARALLELISM)):
            if value > most:
                return f"{what}={value:,}, at most {most:,}"
    return ""


def fingerprint(adopted_hash: str) -> str:
    """A SHA-256 fingerprint of an adopted hash, for the audit trail.

    It lets a re-run recognise a hash it already adopted after that hash was
    replaced by the argon2id rehash. It cannot be turned back into the hash,
    and a password guess cannot be tested against it without the hash's salt.
    """
    import hashlib  # here, not at the top: with secrets ~6 ms of every command that reads credentials

    return hashlib.sha256(adopted_hash.encode("utf-8")).hexdigest()


@lru_cache(maxsize=1)
def _decoy() -> str:
    return hash_password(generate_password())


def decoy_verify(password: str) -> None:
    """Spend what a real verify costs, for a login that does not exist, so a
    client cannot tell unknown logins from wrong passwords by the time taken."""
    context().verify(password, _decoy())
