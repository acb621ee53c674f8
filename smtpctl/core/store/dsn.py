"""PostgreSQL DSNs: what is one, and what of it is secret (its passwords).

A plain module (``re`` and ``urllib.parse`` only) so the CLI can warn about a
password on the command line without importing psycopg.
"""

from __future__ import annotations

import os
import re
from urllib.parse import unquote

DSN_SCHEMES = ("postgresql://", "postgres://")


def is_dsn(location: str | os.PathLike[str]) -> bool:
    """True for a PostgreSQL connection URI (``postgresql://…``, ``postgres://…``)."""
    return isinstance(location, str) and location.lower().startswith(DSN_SCHEMES)


def dsn_passwords(dsn: str) -> list[str]:
    """The passwords written in ``dsn``, as written and decoded: the URI's
    ``user:password@`` and any ``password=`` parameter (URI query or
    ``key=value`` form)."""
    found: list[str] = []
    userinfo = re.match(r"^[A-Za-z]+://([^@/?#]*)@", dsn)
    if userinfo and ":" in userinfo[1]:
        found.append(userinfo[1].split(":", 1)[1])
    found += re.findall(r"(?i)(?:^|[?&\s])password\s*=\s*([^&\s]*)", dsn)
    found += [unquote(s) for s in found]
    return sorted({s for s in found if s}, key=len, reverse=True)


def dsn_secrets(dsn: str) -> list[str]:
    """What an error text must never show: the DSN itself and its passwords
    (psycopg quotes either back when it cannot parse them: "invalid
    percent-encoded token", a bad IPv6 host). Longest first, for replacing."""
    return sorted({dsn, *dsn_passwords(dsn)}, key=len, reverse=True)
