"""Where notices go: webhook endpoints, each with its secret and the kinds it takes."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from smtpctl.core.directory.secret_input import read_secret_file
from smtpctl.core.model import rules
from smtpctl.core.model.clock import iso_z
from smtpctl.core.model.errors import Fix, InvalidInput, NotFound
from smtpctl.core.model.records import Outcome
from smtpctl.core.notices.outbox import KINDS
from smtpctl.core.store import Store

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # generated; Standard Webhooks asks for 24 to 64
MIN_SECRET_BYTES, MAX_SECRET_BYTES = 24, 64
MAX_URL = 2048


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A webhook endpoint; ``events`` None: every kind (also kinds added later)."""

    id: int
    url: str
    events: tuple[str, ...] | None
    created_at: str

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "url": self.url, "events": list(self.events) if self.events else None,
                "created_at": self.created_at}


def _endpoint(row: dict[str, Any]) -> Endpoint:
    events = json.loads(row["events"])
    return Endpoint(int(row["id"]), row["url"], tuple(events) or None, row["created_at"])


def parse_url(url: str, *, allow_insecure: bool = False) -> str:
    """A webhook URL: ``https://``, or ``http://`` to a loopback address (or
    anywhere with ``allow_insecure``). Raises ``InvalidInput``."""
    if not url or len(url) > MAX_URL or not url.isprintable() or any(c.isspace() for c in url):
        raise InvalidInput(f"the URL must be 1 to {MAX_URL:,} printable characters without spaces, "
                           f"not {rules.shown(url)}")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise InvalidInput(f"{rules.shown(url)} is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not host:
        raise InvalidInput(f"a webhook URL is https://HOST/PATH (or http:// to a loopback address), not "
                           f"{rules.shown(url)}")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("a webhook URL must not carry a user or password: the store and the audit trail keep "
                           "it in the clear; notices are signed with the endpoint's secret instead")
    if scheme == "http" and not allow_insecure and not _loopback(host):
        raise InvalidInput(f"http:// sends notices unencrypted; use https://, or http:// to a loopback address "
                           f"(127.0.0.1, ::1, localhost), or pass --allow-insecure: {rules.shown(url)}")
    return url


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_events(events: list[str]) -> tuple[str, ...]:
    """The kinds an endpoint takes, each once, in the order given; empty: all. Raises ``InvalidInput``."""
    unknown = [kind for kind in events if kind not in KINDS]
    if unknown:
        raise InvalidInput(f"unknown event kind {rules.shown(unknown[0])}; the kinds are: {', '.join(KINDS)}")
    return tuple(dict.fromkeys(events))


def generate_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def parse_secret(text: str, source: str) -> str:
    """A ``whsec_`` secret: the prefix, then base64 of 24 to 64 bytes. Raises
    ``InvalidInput`` naming ``source`` (never the secret)."""
    text = text.strip()
    if not text:
        raise InvalidInput(f"{source} is empty; it must hold one whsec_... secret")
    if not text.startswith(SECRET_PREFIX):
        raise InvalidInput(f"{source} does not hold a whsec_... secret (Standard Webhooks' format)")
    try:
        key = base64.b64decode(text[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{source}: the part after whsec_ is not base64") from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise InvalidInput(f"{source}: the secret is {len(key)} bytes; it must be {MIN_SECRET_BYTES} to "
                           f"{MAX_SECRET_BYTES} bytes (base64 after whsec_)")
    return text


def read_secret(path: Path) -> str:
    """The secret in the file at ``path`` (at most 1 KiB, one line). Raises ``InvalidInput``."""
    return parse_secret(read_secret_file(path, f"--secret-file {path}"), f"--secret-file {path}")


def add_endpoint(store: Store, url: str, events: list[str], *, secret: str | None = None,
                 allow_insecure: bool = False) -> Outcome:
    """Add a webhook endpoint that takes ``events`` (empty: every kind); audited
    as ``notify.add`` (without the secret). ``secret`` None: one is generated
    and returned once in ``Outcome.extra["secret"]``. Raises ``InvalidInput``."""
    url = parse_url(url, allow_insecure=allow_insecure)
    kinds = parse_events(events)
    generated = secret is None
    secret = generate_secret() if secret is None else parse_secret(secret, "the secret")
    with store.write():
        created_at = iso_z(store.now())
        endpoint_id = store.insert_endpoint(url, json.dumps(list(kinds)), secret, created_at)
        store.audit("notify.add", "endpoint", str(endpoint_id),
                    details={"url": url, "events": list(kinds) or None, "generated_secret": generated})
        endpoint = get_endpoint(store, endpoint_id)
    return Outcome(endpoint, "created", {"secret": secret} if generated else {})


def get_endpoint(store: Store, endpoint_id: object) -> Endpoint:
    """Raises ``InvalidInput`` (not an id) or ``NotFound``."""
    row = store.endpoint(parse_id(endpoint_id))
    if row is None:
        raise NotFound(f"webhook endpoint {endpoint_id} not found", fix=Fix(("notify", "list"), "list them with"))
    return _endpoint(row)


def endpoint_secret(store: Store, endpoint_id: int) -> str:
    """The endpoint's signing secret, for the sender only."""
    row = store.endpoint(endpoint_id)
    if row is None:
        raise NotFound(f"webhook endpoint {endpoint_id} not found")
    return row["secret"]


def parse_id(value: object) -> int:
    return rules.whole_number(value, "the endpoint id", 1, 2**62)


def list_endpoints(store: Store) -> list[Endpoint]:
    return [_endpoint(row) for row in store.endpoints()]


def remove_endpoint(store: Store, endpoint_id: object) -> Outcome:
    """Remove an endpoint and its deliveries (sent or not); audited as ``notify.remove``. Raises ``NotFound``."""
    with store.write():
        endpoint = get_endpoint(store, endpoint_id)
        store.delete_endpoint(endpoint.id)
        store.audit("notify.remove", "endpoint", str(endpoint.id), details={"url": endpoint.url})
    return Outcome(endpoint, "deleted")
