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
