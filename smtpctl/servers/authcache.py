"""A verified-login cache for ``serve``, as Dovecot's ``auth_cache_size`` /
``auth_cache_ttl``: a repeat login by the same app skips the argon2id verify
(~40 ms of CPU) while the cache remembers it.

What is kept is never the password: an entry is a keyed digest
(HMAC-SHA256 under a random key made at start and never written anywhere)
of the login, the password and the **stored hash** the password verified
against. Every AUTH still reads the credential from the store, so:

- a reset (a new hash), a re-hash, a delete, a revoke at the limit or a
  revoking block misses at once, in this process and in every other process
  sharing the store, because the stored hash is part of the digest or the
  credential is gone;
- a wrong password never hits (its digest differs) and is verified and
  counted as a guess like any other;
- a hit proves the password right, so ``serve`` answers it without taking a
  slot of the AUTH throttle (no store write: the throttle is in the store,
  servers/guard.py); a client out of guesses is refused before the cache is
  asked, so the cache is never a way to test passwords past the throttle.

Entries live ``ttl`` seconds and at most ``size`` are kept (least recently
used first out). ``size`` 0 turns the cache off. The trade-off, as with
Dovecot's cache: a process memory dump holds the key and the digests, so a
password could be guessed against them at HMAC speed rather than argon2's;
keep the TTL short where that matters.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import secrets
import time

DEFAULT_SIZE = 10_000
DEFAULT_TTL = 300.0


class AuthCache:
    def __init__(self, size: int = DEFAULT_SIZE, ttl: float = DEFAULT_TTL):
        self.size, self.ttl = size, ttl
        self._key = secrets.token_bytes(32)
        self._entries: collections.OrderedDict[str, tuple[bytes, float]] = collections.OrderedDict()
        self.hits = self.misses = 0

    def _digest(self, login: str, password: str, stored_hash: str) -> bytes:
        message = "\0".join((login, password, stored_hash)).encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def verified(self, login: str, password: str, stored_hash: str) -> bool:
        """Did this login, with this password, verify against this stored hash within the TTL?"""
        if not self.size:
            return False
        entry = self._entries.get(login)
        if entry is not None:
            digest, expires = entry
            if time.monotonic() < expires and hmac.compare_digest(digest, self._digest(login, password, stored_hash)):
                self._entries.move_to_end(login)
                self.hits += 1
                return True
        self.misses += 1
        return False

    def remember(self, login: str, password: str, stored_hash: str) -> None:
        """Remember a successful verify (against the hash now stored)."""
        if not self.size:
            return
        self._entries[login] = (self._digest(login, password, stored_hash), time.monotonic() + self.ttl)
        self._entries.move_to_end(login)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
