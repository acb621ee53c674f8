"""The records the core returns: frozen dataclasses, each knowing its JSON shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Agency:
    id: int
    name: str
    created_at: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "created_at": self.created_at}


@dataclass(frozen=True, slots=True)
class Account:
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


@dataclass(frozen=True, slots=True)
class Domain:
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


@dataclass(frozen=True, slots=True)
class Credential:
    id: int
    login: str
    name: str
    domain: str
    account: str
    agency: str
    password_hash: str = field(repr=False)  # never printed, never in JSON
    created_at: str
    updated_at: str

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


@dataclass(frozen=True, slots=True)
class Missing:
    """A login asked for that does not exist (``user delete --missing-ok``)."""

    login: str

    def as_dict(self) -> dict[str, Any]:
        return {"login": self.login}


@dataclass(frozen=True, slots=True)
class SettingValue:
    key: str
    value: Any

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "value": self.value}


@dataclass(frozen=True, slots=True)
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
