"""IMAP settings of common mailbox providers, as the service's article lists them.

The service hosts no mailboxes (no IMAP, no POP): these point a user to the
provider that holds their mailbox. SMTP credentials are not IMAP credentials.
"""

from __future__ import annotations

from dataclasses import dataclass

from smtpctl.core.errors import NotFound

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

    def as_dict(self) -> dict[str, object]:
        return {"provider": self.name, "host": self.host, "port": self.port, "username": self.username,
                "password": self.password, "note": self.note}


_LOOK_UP = "not listed by the article: look the settings up with the provider"

PROVIDERS: tuple[Provider, ...] = (
    Provider("Gmail", "imap.gmail.com", 993, "your full email address", "an app password",
             "SSL/TLS; turn on 2-step verification to create an app password"),
    # The article gives 995 (normally a POP3S port); we repeat it as given.
    Provider("Verizon", "imap.verizon.net", 995, None, None, "port as the article gives it"),
    Provider("AOL", "imap.aol.com", 993, None, None, "SSL/TLS"),
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
