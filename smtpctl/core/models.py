"""Frozen records the services return; each knows its JSON shape.

Written out rather than ``@dataclass(frozen=True)``: see ``records.py``.
"""

from __future__ import annotations

from smtpctl.core.records import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of every start-up)
if TYPE_CHECKING:
    from typing import Any


class Agency(Record):
    _fields = __match_args__ = ("id", "name", "created_at")
    id: int
    name: str
    created_at: str

    def __init__(self, id: int, name: str, created_at: str) -> None:
        d = self.__dict__
        d["id"] = id
        d["name"] = name
        d["created_at"] = created_at

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "created_at": self.created_at}


class Account(Record):
    _fields = __match_args__ = ("id", "name", "agency", "daily_limit", "blocked_at", "block_kind", "block_reason",
                                "created_at", "updated_at")
    id: int
    name: str
    agency: str
    daily_limit: int | None  # None: the store's default_daily_limit applies
    blocked_at: str | None
    block_kind: str | None  # "limit" (automatic) or "manual"
    block_reason: str | None
    created_at: str
    updated_at: str

    def __init__(self, id: int, name: str, agency: str, daily_limit: int | None, blocked_at: str | None,
                 block_kind: str | None, block_reason: str | None, created_at: str, updated_at: str) -> None:
        d = self.__dict__
        d["id"] = id
        d["name"] = name
        d["agency"] = agency
        d["daily_limit"] = daily_limit
        d["blocked_at"] = blocked_at
        d["block_kind"] = block_kind
        d["block_reason"] = block_reason
        d["created_at"] = created_at
        d["updated_at"] = updated_at

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


class Domain(Record):
    _fields = __match_args__ = ("id", "name", "unicode_name", "account", "agency", "created_at")
    id: int
    name: str  # A-label, lower case
    unicode_name: str
    account: str | None  # set for a dedicated domain
    agency: str  # the owning agency (through the account for a dedicated one)
    created_at: str

    def __init__(self, id: int, name: str, unicode_name: str, account: str | None, agency: str,
                 created_at: str) -> None:
        d = self.__dict__
        d["id"] = id
        d["name"] = name
        d["unicode_name"] = unicode_name
        d["account"] = account
        d["agency"] = agency
        d["created_at"] = created_at

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


class Credential(Record):
    _fields = __match_args__ = ("id", "login", "name", "domain", "account", "agency", "password_hash", "created_at",
                                "updated_at")
    _hidden = ("password_hash",)  # never printed, never in JSON
    id: int
    login: str
    name: str
    domain: str
    account: str
    agency: str
    password_hash: str
    created_at: str
    updated_at: str

    def __init__(self, id: int, login: str, name: str, domain: str, account: str, agency: str, password_hash: str,
                 created_at: str, updated_at: str) -> None:
        d = self.__dict__
        d["id"] = id
        d["login"] = login
        d["name"] = name
        d["domain"] = domain
        d["account"] = account
        d["agency"] = agency
        d["password_hash"] = password_hash
        d["created_at"] = created_at
        d["updated_at"] = updated_at

    @property
    def scheme(self) -> str:
        from smtpctl.core.passwords import scheme_of

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


class Outcome(Record):
    """What a provisioning call did: the object and whether it was created."""

    _fields = __match_args__ = ("object", "status", "extra")
    object: Any
    status: str  # "created", "unchanged", "updated", "deleted"
    extra: dict[str, Any]

    def __init__(self, object: Any, status: str, extra: dict[str, Any] | None = None) -> None:  # noqa: A002 - the field's name
        d = self.__dict__
        d["object"] = object
        d["status"] = status
        d["extra"] = {} if extra is None else extra

    def as_dict(self) -> dict[str, Any]:
        data = dict(self.object.as_dict()) if hasattr(self.object, "as_dict") else {}
        data["status"] = self.status
        data.update(self.extra)
        return data
