import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from passlib.hash import bcrypt, sha512_crypt

from smtpctl.core.model import passwords
from smtpctl.core.model.errors import InvalidInput

GOOD = "correct horse battery staple"


def test_new_hashes_are_argon2id_with_one_lane():
    stored = passwords.hash_password(GOOD)
    assert stored.startswith("$argon2id$v=19$m=32768,t=2,p=1$")
    assert passwords.scheme_of(stored) == "argon2id"
    assert passwords.dovecot_scheme(stored) == "ARGON2ID"
    assert passwords.verify_password(GOOD, stored) == (True, None)
    assert passwords.verify_password(GOOD + "x", stored) == (False, None)


@pytest.mark.parametrize("legacy, scheme, dovecot", [
    (bcrypt.using(rounds=5).hash(GOOD), "bcrypt", "BLF-CRYPT"),
    (sha512_crypt.using(rounds=5000).hash(GOOD), "sha512-crypt", "SHA512-CRYPT"),
])
def test_deprecated_schemes_verify_and_hand_back_argon2id(legacy, scheme, dovecot):
    assert passwords.scheme_of(legacy) == scheme
    assert passwords.dovecot_scheme(legacy) == dovecot
    ok, new_hash = passwords.verify_password(GOOD, legacy)
    assert ok and new_hash.startswith("$argon2id$")
    assert passwords.verify_password(GOOD, new_hash) == (True, None)
    assert passwords.verify_password("wrong password!", legacy) == (False, None)


def test_bcrypt_verifies_long_passwords_like_bcrypt_did():
    legacy = bcrypt.using(rounds=5).hash("x" * 72)
    ok, new_hash = passwords.verify_password("x" * 100, legacy)
    assert ok
    # The fresh hash is of the whole password the user typed.
    assert passwords.verify_password("x" * 100, new_hash)[0]
    assert not passwords.verify_password("x" * 72, new_hash)[0]


def test_garbage_hash_never_matches():
    assert passwords.verify_password(GOOD, "not-a-hash") == (False, None)


@pytest.mark.parametrize("bad, reason", [
    ("tiny-pw", "too short"), ("x" * 129, "too long"), ("twelve chars\n", "control character"),
    ("with\x00nul-inside", "control character"), ("tab\there-and-more", "control character"),
])
def test_chosen_passwords_are_validated(bad, reason):
    with pytest.raises(InvalidInput, match=reason) as err:
        passwords.validate_password(bad)
    assert bad not in str(err.value)


def test_unicode_and_spaces_are_fine():
    assert passwords.validate_password("pässwört mit leerzeichen") == "pässwört mit leerzeichen"


@settings(max_examples=50)
@given(st.integers(min_value=0, max_value=10))
def test_generated_passwords_are_strong_and_paste_safe(_):
    password = passwords.generate_password()
    assert len(password) >= 24
    assert password.isascii() and password.isalnum()
    assert passwords.validate_password(password) == password


def test_generated_passwords_differ():
    assert len({passwords.generate_password() for _ in range(200)}) == 200


# -- hashes too costly to verify (issue 23: a hostile import stalled AUTH) -----------------

HOSTILE = {
    "sha512-crypt": ("$6$rounds=999999999$abcdefghijklmnop$" + "a" * 86, "rounds=999,999,999, at most 1,000,000"),
    "sha256-crypt": ("$5$rounds=1000001$abcdefghijklmnop$" + "a" * 43, "rounds=1,000,001, at most 1,000,000"),
    "bcrypt": ("$2b$31$" + "a" * 53, "cost 31, at most 14"),
    "argon2id": ("$argon2id$v=19$m=4194304,t=3,p=1$c29tZXNhbHRzb21lc2FsdA$" + "a" * 43,
                 "m=4,194,304, at most 262,144"),
    "argon2i": ("$argon2i$v=19$m=65536,t=100,p=1$c29tZXNhbHRzb21lc2FsdA$" + "a" * 43, "t=100, at most 16"),
}


@pytest.mark.parametrize("scheme", sorted(HOSTILE))
def test_a_hash_costlier_than_the_ceiling_is_refused_without_verifying_it(scheme):
    text, why = HOSTILE[scheme]
    with pytest.raises(InvalidInput) as err:
        passwords.adopt_hash(text)
    assert err.value.message == (
        f"the {scheme} hash costs more to verify than smtpctl accepts ({why}): every login would pay it, and a "
        "stranger could stall AUTH with it; give this login a new password instead")
    assert text not in err.value.message


def test_hashes_at_the_ceiling_are_adopted():
    at_most = [
        "$6$rounds=1000000$abcdefghijklmnop$" + "a" * 86,
        "$2b$14$" + "a" * 53,
        "$argon2id$v=19$m=262144,t=16,p=16$c29tZXNhbHRzb21lc2FsdA$" + "a" * 43,
    ]
    for text in at_most:
        assert passwords.adopt_hash(text) == text


def _scheme_by_passlib(stored_hash):
    """What scheme_of said when it asked the CryptContext (before it read the prefix itself)."""
    name = passwords.context().identify(stored_hash)
    if name == "argon2" and stored_hash.startswith("$argon2i$"):
        return "argon2i"
    return passwords.SCHEMES.get(name or "", name or "unknown")


@pytest.mark.parametrize("stored_hash", [
    passwords.hash_password(GOOD), "$argon2i$v=19$m=512,t=2,p=2$5VtWOO3cGWYQHEMaYGbsfQ$AcmqasQgW/wI6wAHAMk4aQ",
    "$argon2d$v=19$m=512,t=2,p=2$c2FsdHNhbHQ$aGFzaA", "$argon2$x", "$argon2id", "$ARGON2ID$v=19$",
    bcrypt.using(rounds=5).hash(GOOD), "$2$05$x", "$2a$05$x", "$2x$05$x", "$2y$05$x", "$2b$05$x", "$2c$05$x",
    sha512_crypt.using(rounds=5000).hash(GOOD), "$6$", "$5$rounds=5000$salt$hash", "$1$md5$hash", "$7$",
    "", "plain text", "{SHA512-CRYPT}$6$x", " $6$x", "$argon2id$\n",
])
def test_scheme_of_reads_the_prefix_as_the_context_identifies(stored_hash):
    assert passwords.handler_of(stored_hash) == passwords.context().identify(stored_hash)
    assert passwords.scheme_of(stored_hash) == _scheme_by_passlib(stored_hash)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["$argon2", "$argon2i", "$argon2id", "$2", "$2a", "$2b", "$2y", "$2x", "$5", "$6", "$", ""]),
       st.text(alphabet="$abcdiz0159=,A", max_size=12))
def test_scheme_of_agrees_with_the_context_on_any_text(prefix, rest):
    assert passwords.handler_of(prefix + rest) == passwords.context().identify(prefix + rest)
    assert passwords.scheme_of(prefix + rest) == _scheme_by_passlib(prefix + rest)
