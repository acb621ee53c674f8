"""The verified-login cache: what it remembers, and everything that makes it miss."""

import time

from smtpctl.servers.authcache import AuthCache

HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"


def test_remembers_a_verify_bound_to_login_password_and_stored_hash():
    cache = AuthCache(size=10, ttl=300)
    assert not cache.verified("a@d.example", "right password", HASH)
    cache.remember("a@d.example", "right password", HASH)
    assert cache.verified("a@d.example", "right password", HASH)
    assert not cache.verified("a@d.example", "wrong password", HASH)  # a guess is verified (and counted)
    assert not cache.verified("a@d.example", "right password", HASH + "x")  # reset / re-hash elsewhere
    assert not cache.verified("b@d.example", "right password", HASH)
    assert (cache.hits, cache.misses) == (1, 4)


def test_never_keeps_the_password():
    cache = AuthCache(size=10, ttl=300)
    cache.remember("a@d.example", "s3cret-passphrase", HASH)
    digest, _ = cache._entries["a@d.example"]
    assert b"s3cret" not in digest and len(digest) == 32
    other = AuthCache(size=10, ttl=300)  # another process: another key, another digest
    other.remember("a@d.example", "s3cret-passphrase", HASH)
    assert other._entries["a@d.example"][0] != digest


def test_entries_expire():
    cache = AuthCache(size=10, ttl=0.05)
    cache.remember("a@d.example", "pw", HASH)
    time.sleep(0.1)
    assert not cache.verified("a@d.example", "pw", HASH)


def test_size_bounds_the_entries_least_recently_used_first():
    cache = AuthCache(size=2, ttl=300)
    cache.remember("a@d.example", "pw", HASH)
    cache.remember("b@d.example", "pw", HASH)
    assert cache.verified("a@d.example", "pw", HASH)  # a is now the most recent
    cache.remember("c@d.example", "pw", HASH)
    assert len(cache) == 2
    assert cache.verified("a@d.example", "pw", HASH) and not cache.verified("b@d.example", "pw", HASH)


def test_size_zero_turns_it_off():
    cache = AuthCache(size=0, ttl=300)
    cache.remember("a@d.example", "pw", HASH)
    assert not cache.verified("a@d.example", "pw", HASH) and len(cache) == 0
