"""The records the core returns: immutable named records, each knowing its JSON shape.

They are ``typing.NamedTuple`` classes rather than frozen dataclasses because
every command imports them: creating these seven as frozen dataclasses took
4.3 ms of each start-up, as named tuples 0.4 ms, on a command that runs in
~60 ms (``python benchmarks/run.py --only startup``, docs/performance.md).
``Outcome`` holds a dict, so it stays a (cheap, not frozen) dataclass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple


class Agency(NamedTuple):
    id: int
    name: str
    created_at: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "created_at": self.created_at}


class Account(NamedTuple):
    id: int
    name: str
    agency: str
    daily_limit: int | None  # None: the store's default_daily_limit applies
    blocked_at: str | None
    block_kind: str | None  # "limit" (automatic) or "manual"
    block_reason: str | None
    created_at: str
    updated_at: str

    @property
    def blocked(self) -> bool:
        return self.blocked_at is not None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "agency": self.agency,
            "daily_limit": self.daily_limit,
            "blocked": self.blocked,
            "blocked_at": self.blocked_at,
            "block_kind": self.block_kind,
            "block_reason": self.block_reason,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


class Domain(NamedTuple):
    id: int
    name: str  # A-label, lower case
    unicode_name: str
    account: str | None  # set for a dedicated domain
    agency: str  # the owning agency (through the account for a dedicated one)
    created_at: str

    @property
    def kind(self) -> str:
        return "dedicated" if self.account is not None else "agency-assigned"

    @property
    def display_name(self) -> str:
        if self.unicode_name != self.name:
            return f"{self.unicode_name} ({self.name})"
        return self.name

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unicode_name": self.unicode_name,
            "kind": self.kind,
            "account": self.account,
            "agency": self.agency,
            "created_at": self.created_at,
        }


class Credential(NamedTuple):
    id: int
    login: str
    name: str
    domain: str
    account: str
    agency: str
    password_hash: str  # never printed (see __repr__), never in JSON
    created_at: str
    updated_at: str

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in zip(self._fields, self) if k != "password_hash")
        return f"Credential({shown})"

    @property
    def scheme(self) -> str:
        from smtpctl.core.model.passwords import scheme_of  # passlib loads only where a hash is read

        return scheme_of(self.password_hash)

    def as_dict(self) -> dict[str, Any]:
        return {
            "login": self.login,
            "domain": self.domain,
            "account": self.account,
            "agency": self.agency,
            "hash_scheme": self.scheme,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


class Missing(NamedTuple):
    """A login asked for that does not exist (``user delete --missing-ok``)."""

    login: str

    def as_dict(self) -> dict[str, Any]:
        return {"login": self.login}


class SettingValue(NamedTuple):
    key: str
    value: Any

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "value": self.value}


@dataclass
class Outcome:
    """What a provisioning call did: the object, whether it was created, and what else to say."""

    object: Any
    status: str  # "created", "unchanged", "updated", "deleted", "renamed", "missing"
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data = dict(self.object.as_dict()) if hasattr(self.object, "as_dict") else {}
        data["status"] = self.status
        data.update(self.extra)
        return data


class RevokedCredential(NamedTuple):
    """A credential revoked lately, kept for a while so that ``serve`` can tell
    its sender why its right password no longer works (core/store/revoked.py).
    ``password_hash`` is the revoked credential's stored hash, never a password."""

    login: str
    password_hash: str
    reason: str  # "daily_limit" or "operator_block"
    day: str | None  # the day whose daily limit was exceeded (daily_limit)
    revoked_at: str

    def as_dict(self) -> dict[str, Any]:
        return {"login": self.login, "reason": self.reason, "day": self.day, "revoked_at": self.revoked_at}
