"""Mail-reading settings of common mailbox providers, as the service's help lists them.

The service hosts no mailboxes (no IMAP, no POP): these point a user to the
provider that holds their mailbox. SMTP credentials are not IMAP credentials.
"""

from __future__ import annotations

from dataclasses import dataclass

from smtpctl.core.model.errors import NotFound

NOTE = ("This service hosts no mailboxes: there is no IMAP or POP here, and SMTP credentials "
        "are not IMAP credentials. Read mail with your mailbox provider's own settings.")


@dataclass(frozen=True)
class Provider:
    name: str
    host: str | None = None
    port: int | None = None
    username: str | None = None
    password: str | None = None
    note: str | None = None
    protocol: str | None = None  # what the port speaks: IMAPS (993) or POP3S (995)

    def as_dict(self) -> dict[str, object]:
        return {"provider": self.name, "host": self.host, "port": self.port, "username": self.username,
                "password": self.password, "note": self.note, "protocol": self.protocol}


_LOOK_UP = "no settings in the service's list: look them up with the provider"

PROVIDERS: tuple[Provider, ...] = (
    Provider("Gmail", "imap.gmail.com", 993, "your full email address", "an app password",
             "SSL/TLS; turn on 2-step verification to create an app password", "IMAPS"),
    # The service's list gives port 995 with this IMAP host. 995 is POP3 over
    # TLS, not IMAP: we keep the data as listed and say what the port is.
    Provider("Verizon", "imap.verizon.net", 995, None, None,
             "995 is the POP3 over TLS port, not an IMAP one: ask Verizon for its IMAP port", "POP3S"),
    Provider("AOL", "imap.aol.com", 993, None, None, "SSL/TLS", "IMAPS"),
    *(Provider(name, note=_LOOK_UP) for name in (
        "Amazon WorkMail", "HostGator", "IONOS", "KingHost", "Rackspace", "TransIP", "Bluehost", "Titan",
        "DreamHost", "InMotion",
    )),
)


def _key(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def lookup(name: str) -> Provider:
    """Find a provider by name, ignoring case, spaces and punctuation; raises ``NotFound``."""
    wanted = _key(name)
    for provider in PROVIDERS:
        if _key(provider.name) == wanted or (wanted == "googlemail" and provider.name == "Gmail"):
            return provider
    raise NotFound(f"no IMAP settings for {name!r}; known providers: {', '.join(p.name for p in PROVIDERS)}")
