"""The short-lived record of revoked credentials: when an account's
credentials are revoked (its daily limit crossed, or an operator's block
with ``--revoke``), each one's login and stored hash are kept for
``KEPT_FOR`` seconds in the same transaction as the revocation. ``serve``
reads it for a login that is no live credential: a password that verifies
against the recorded hash is told why it no longer works (a distinct 535,
not counted as a guess) instead of reading as a wrong password.

What is kept is the hash the credential already had, never a password;
deleting a credential by hand (``user delete``, ``apply``) records nothing:
that is the credential's ordinary end, not a refusal to explain. Expiry is
on the store's clock (seconds since the epoch, as the AUTH throttle's), so
every node reads the same lifetime; an expired row is never read, and rows
are pruned by ``serve``'s housekeeping (with the throttle's).
"""

from __future__ import annotations

from smtpctl.core.model.clock import now_iso
from smtpctl.core.model.records import RevokedCredential
from smtpctl.core.store.clock import EPOCH_NOW

KEPT_FOR = 7 * 86400.0  # a week: a sender's weekly job still hears why, and an old hash does not linger
REASONS = ("daily_limit", "operator_block")


class RevokedQueries:
    def record_revoked_credentials(self, account_id: int, reason: str, day: str | None = None) -> int:
        """Keep the login and stored hash of each of the account's live
        credentials as revoked for ``reason`` (``day``: the day whose limit was
        exceeded); call inside ``write()``, before they are deleted. A login
        revoked before is recorded again (the latest revocation is the one
        its sender hears of). Returns the number of credentials recorded."""
        if reason not in REASONS:
            raise ValueError(f"unknown revocation reason {reason!r}")
        return self.backend.execute(
            "INSERT INTO revoked_credentials (login, password_hash, reason, day, revoked_at, expires) "
            f"SELECT c.login, c.password_hash, ?, ?, ?, {EPOCH_NOW[self.engine]} + ? "
            "FROM credentials c JOIN domains d ON d.id = c.domain_id WHERE d.account_id = ? "
            "ON CONFLICT (login) DO UPDATE SET password_hash = excluded.password_hash, reason = excluded.reason, "
            "day = excluded.day, revoked_at = excluded.revoked_at, expires = excluded.expires",
            [reason, day, now_iso(), KEPT_FOR, account_id]).rowcount

    def revoked_credential(self, login: str) -> RevokedCredential | None:
        """The record of ``login``'s revocation, if it was revoked within ``KEPT_FOR``."""
        rows = self.query(
            "SELECT login, password_hash, reason, day, revoked_at FROM revoked_credentials "
            f"WHERE login = ? AND expires > {EPOCH_NOW[self.engine]}", [login])
        return RevokedCredential(**rows[0]) if rows else None

    def prune_revoked_credentials(self) -> int:
        """Delete the records past their lifetime; the number deleted."""
        return self.backend.execute(
            f"DELETE FROM revoked_credentials WHERE expires <= {EPOCH_NOW[self.engine]}").rowcount
