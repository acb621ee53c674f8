"""Pure rules of the service: names, domains, limits and store settings.

Nothing here touches the store; every function takes plain values and either
returns the normalised value or raises ``InvalidInput``.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Callable, NamedTuple

from smtpctl.core.model.errors import InvalidInput
from smtpctl.core.model.words import count, listing

# The defaults of docs/rules.md.
DEFAULT_SMTP_HOST = "smtp.mailgun.org"
DEFAULT_DAILY_LIMIT = 1500
DEFAULT_CREDENTIALS_PER_DOMAIN = 5
DEFAULT_PRICE_PER_1000 = Decimal("0.675")
DEFAULT_COMPARE_NAME = "Mailgun"
DEFAULT_COMPARE_PRICE_PER_1000 = Decimal("0.80")
DEFAULT_TIMEZONE = "UTC"
DEFAULT_MAX_RECIPIENTS_PER_MESSAGE = 1000  # Mailgun's documented per-message limit
MAX_RECIPIENTS_PER_MESSAGE = 100_000  # the most the setting may say (a message, not a mailing)

MAX_DAILY_LIMIT = 100_000_000
IMPORT_BATCH_SIZE = 20_000  # messages per transaction in `usage import` (docs/performance.md)
MAX_NAME_LENGTH = 64

_NAME_RE = r"^[A-Za-z0-9](?:[A-Za-z0-9 ._&'-]*[A-Za-z0-9._])?$"
_LDH_LABEL_RE = r"^(?!-)[a-z0-9-]{1,63}(?<!-)$"


def normalise_name(kind: str, name: str) -> str:
    """Validate an agency or account name and return it as stored.

    Names are what operators type, so they stay as given (case kept), but
    must be 1-64 characters: letters, digits, space and ``. _ & ' -``,
    starting with a letter or digit. Raises ``InvalidInput``.
    """
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"{kind} name must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(f"{kind} name is longer than {MAX_NAME_LENGTH} characters: {name[:20]!r}...")
    if not re.match(_NAME_RE, name):
        raise InvalidInput(
            f"invalid {kind} name {name!r}: use letters, digits, space and . _ & ' -, "
            "starting with a letter or digit"
        )
    return name


@lru_cache(maxsize=4096)  # pure, and IDNA is costly: the live paths see the same few domains all day
def normalise_domain(name: str) -> str:
    """Return a domain name as stored: lower case ASCII (IDNA A-label).

    A Unicode name is converted with UTS #46 mapping and IDNA 2008; a trailing
    dot is dropped. The name needs at least two labels, each 1-63 letters,
    digits or hyphens (no leading or trailing hyphen), 253 characters in all,
    and a top-level label that is not all digits (an IP address is not a
    sending domain). Raises ``InvalidInput``.
    """
    import idna

    raw = name.strip() if isinstance(name, str) else ""
    if not raw:
        raise InvalidInput("domain name must not be empty")
    candidate = raw[:-1] if raw.endswith(".") else raw
    try:
        ascii_name = idna.encode(candidate, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise InvalidInput(f"invalid domain name {raw!r}: {exc}") from None
    ascii_name = ascii_name.lower()
    labels = ascii_name.split(".")
    if len(labels) < 2:
        raise InvalidInput(f"invalid domain name {raw!r}: it needs at least two labels (e.g. mail.example.com)")
    if len(ascii_name) > 253:
        raise InvalidInput(f"invalid domain name {raw!r}: longer than 253 characters")
    for label in labels:
        if not re.match(_LDH_LABEL_RE, label):
            raise InvalidInput(
                f"invalid domain name {raw!r}: label {label!r} must be 1-63 letters, digits or hyphens"
            )
    if labels[-1].isdigit():
        raise InvalidInput(f"invalid domain name {raw!r}: an IP address is not a domain")
    return ascii_name


def domain_unicode(ascii_name: str) -> str:
    """The Unicode (U-label) form of a stored domain, for display."""
    if "xn--" not in ascii_name:
        return ascii_name
    import idna

    try:
        return idna.decode(ascii_name)
    except idna.IDNAError:
        return ascii_name


def shown(value: object, width: int = 40) -> str:
    """``repr(value)`` cut to ``width`` characters, so an error stays one short line."""
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= width else text[:width - 4] + "...'"


def whole_number(value: object, what: str, low: int, high: int) -> int:
    """A whole number from ``low`` to ``high``, given as an int or as text (``1500``, ``1_500``, ``1,500``).

    A bool, a float or text such as ``1e3``, ``NaN`` or ``1.5`` is refused:
    counts are typed by people and scripts, and a float is never exact.
    Raises ``InvalidInput`` naming ``what`` and the range.
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidInput(f"{what} must be a whole number, not {shown(value)}")
    if isinstance(value, int):
        number = value
    else:
        text = value.strip().replace("_", "").replace(",", "")
        # Digits only (ASCII), so nothing odd slips through int(): no 1e3, no ١٥٠٠, no 40,000-digit strings.
        if not re.fullmatch(r"[+-]?[0-9]{1,30}", text):
            raise InvalidInput(f"{what} must be a whole number from {low:,} to {high:,}, not {shown(value)}")
        number = int(text)
    if not low <= number <= high:
        raise InvalidInput(f"{what} must be between {low:,} and {high:,}, not {shown(number)}")
    return number


def validate_daily_limit(value: object) -> int:
    """A daily limit is a whole number of emails from 1 to 100,000,000."""
    return whole_number(value, "daily limit", 1, MAX_DAILY_LIMIT)


MAX_WINDOW_LIMIT = {"hour": MAX_DAILY_LIMIT, "day": MAX_DAILY_LIMIT, "month": 31 * MAX_DAILY_LIMIT}
WINDOW_ADJECTIVE = {"hour": "hourly", "day": "daily", "month": "monthly"}


def validate_window_limit(value: object, window: str) -> int:
    """A limit in ``window`` is a whole number of emails from 1 to 100,000,000
    (an hour, a day) or 3,100,000,000 (a month: 31 days at the most)."""
    return whole_number(value, f"{WINDOW_ADJECTIVE[window]} limit", 1, MAX_WINDOW_LIMIT[window])


MAX_PRICE_PER_1000 = Decimal(1000)
PRICE_PLACES = 6
MAX_EMAILS = 10**12  # a trillion emails: far beyond any one estimate or account, small enough for exact money
MAX_DAYS = 3660  # ten years of days, for estimates


def validate_price(value: object) -> Decimal:
    """A price in USD per 1,000 emails: a decimal from 0 to 1,000 with at most 6 places.

    Accepts ``0.675``, ``$0.675``, ``1e-3``; refuses NaN, Infinity, ``1e400``,
    negative prices and ``0.0000001``. Returns the value in plain notation
    (``1E+2`` becomes ``100``) so that what is stored reads back the same.
    Raises ``InvalidInput``.
    """
    if isinstance(value, (bool, float)):
        raise InvalidInput(f"price must be a decimal number such as 0.675, not {shown(value)}")
    text = str(value).strip()
    text = text[1:].strip() if text.startswith("$") else text
    if len(text) > 40:
        raise InvalidInput(f"price must be a decimal number such as 0.675, not {shown(value)}")
    try:
        price = Decimal(text)
    except InvalidOperation:
        raise InvalidInput(f"price must be a decimal number such as 0.675, not {shown(value)}") from None
    if not price.is_finite() or not 0 <= price <= MAX_PRICE_PER_1000:
        raise InvalidInput(f"price must be between 0 and {MAX_PRICE_PER_1000} USD per 1,000 emails, not {shown(value)}")
    step = Decimal(1).scaleb(-PRICE_PLACES)
    if price.quantize(step) != price:
        raise InvalidInput(f"price has more than {PRICE_PLACES} decimal places: {shown(value)}")
    # Plain notation, no exponent, no sign on zero, trailing zeros kept as given (0.80 stays 0.80).
    return Decimal(format(abs(price) if price == 0 else price, "f"))


def validate_email_count(value: object, what: str = "the number of emails") -> int:
    """A number of emails from 0 to 10^12 (estimates and counts)."""
    return whole_number(value, what, 0, MAX_EMAILS)


def validate_timezone(value: object) -> str:
    """A time-zone name from the IANA database, e.g. UTC or Europe/Berlin."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    name = str(value).strip()
    # ZoneInfo reads a file named by the key: refuse anything that is not a
    # plain zone name before it does (a folder such as "Europe" raised
    # IsADirectoryError, a NUL ValueError, a long name OSError).
    if not re.fullmatch(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*", name) or len(name) > 64:
        raise InvalidInput(f"unknown time zone {shown(name)} (use an IANA name such as UTC or Europe/Berlin)")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidInput(f"unknown time zone {shown(name)} (use an IANA name such as UTC or Europe/Berlin)") from None
    return name


def validate_host(value: object) -> str:
    """An SMTP server host name (a domain name, kept in ASCII)."""
    return normalise_domain(str(value))


def validate_credentials_per_domain(value: object) -> int:
    return whole_number(value, "credentials per domain", 1, 1000)


def validate_label(value: object) -> str:
    text = str(value).strip()
    if not text or len(text) > 40 or not text.isprintable():
        raise InvalidInput("a name must be 1-40 printable characters")
    return text


def validate_max_recipients(value: object) -> int:
    """Recipients one message may have: a whole number from 1 to 100,000."""
    return whole_number(value, "max recipients per message", 1, MAX_RECIPIENTS_PER_MESSAGE)


_TRUE, _FALSE = ("on", "true", "yes", "1"), ("off", "false", "no", "0")


def validate_switch(value: object) -> str:
    """A switch: ``on`` or ``off`` (true/false, yes/no and 1/0 are read too)."""
    text = str(value).strip().lower()
    if text in _TRUE:
        return "on"
    if text in _FALSE:
        return "off"
    raise InvalidInput(f"a switch is on or off, not {shown(value)}")


class Setting(NamedTuple):
    key: str
    default: object
    parse: Callable[[object], object]
    description: str


SETTINGS: dict[str, Setting] = {
    s.key: s
    for s in (
        Setting("smtp_host", DEFAULT_SMTP_HOST, validate_host, "SMTP server credential holders connect to"),
        Setting("timezone", DEFAULT_TIMEZONE, validate_timezone,
                "time zone whose calendar day the daily limit counts"),
        Setting("default_daily_limit", DEFAULT_DAILY_LIMIT, validate_daily_limit,
                "emails per account per day unless set per account"),
        Setting("credentials_per_domain", DEFAULT_CREDENTIALS_PER_DOMAIN, validate_credentials_per_domain,
                "live SMTP credentials one dedicated domain may hold"),
        Setting("price_per_1000", DEFAULT_PRICE_PER_1000, validate_price, "price in USD per 1,000 emails"),
        Setting("compare_name", DEFAULT_COMPARE_NAME, validate_label, "name of the provider prices are compared with"),
        Setting("compare_price_per_1000", DEFAULT_COMPARE_PRICE_PER_1000, validate_price,
                "comparison price in USD per 1,000 emails"),
        Setting("max_recipients_per_message", DEFAULT_MAX_RECIPIENTS_PER_MESSAGE, validate_max_recipients,
                "recipients one message may have; a larger message is refused, never billed"),
        Setting("sender_alignment", "on", validate_switch,
                "on: a credential may send only from its own account's dedicated domains"),
    )
}


def parse_setting(key: str, value: object) -> object:
    """Validate ``value`` for setting ``key``; raises ``InvalidInput``."""
    setting = SETTINGS.get(key)
    if setting is None:
        raise InvalidInput(f"unknown setting {key!r}; known settings: {', '.join(SETTINGS)}")
    return setting.parse(value)


# -- SMTP credentials ------------------------------------------------------------

MAX_LOCAL_PART = 64
_LOCAL_PART_RE = r"^[a-z0-9_+-]+(?:\.[a-z0-9_+-]+)*$"


@lru_cache(maxsize=4096)  # pure; a refused login raises, and exceptions are not cached
def parse_login(login: str) -> tuple[str, str]:
    """Split and normalise ``name@domain`` into (name, ascii domain).

    The name is an SMTP dot-atom local part, lower-cased, of 1-64 letters,
    digits and ``_ + -``, with single dots between them. We allow this subset
    of RFC 5321's atext because a login must also survive shells, URLs,
    config files and Dovecot's passwd-file unquoted. Raises ``InvalidInput``.
    """
    raw = login.strip() if isinstance(login, str) else ""
    if raw.count("@") != 1:
        raise InvalidInput(f"invalid login {login!r}: use the form name@domain")
    name, domain = raw.split("@")
    name = name.lower()
    if not name:
        raise InvalidInput(f"invalid login {login!r}: the name before @ is empty")
    if len(name) > MAX_LOCAL_PART:
        raise InvalidInput(f"invalid login {login!r}: the name is longer than {MAX_LOCAL_PART} characters")
    if not re.match(_LOCAL_PART_RE, name):
        raise InvalidInput(
            f"invalid login {login!r}: the name may hold letters, digits, _ + - and single dots "
            "(not at the start or end)"
        )
    return name, normalise_domain(domain)


def refuse_removal(kind: str, name: str, owned: dict[str, list[str]], history: dict[str, object],
                   first: str) -> None:
    """The removal rule (CLI.md): an agency or account goes only once it owns
    nothing and has no usage history, because billing history is never
    deleted. ``owned`` maps what it may own (a noun) to the names it still
    owns, ``history`` its billed emails (``emails``, ``first_day``,
    ``last_day``), ``first`` what to do first. Raises ``InvalidInput`` saying
    every reason; returns when it may go."""
    owns = [f"{count(len(names), noun)} ({listing(names)})" for noun, names in owned.items() if names]
    reasons = []
    if owns:
        reasons.append("it still owns " + " and ".join(owns))
    if history["emails"]:
        reasons.append(f"it has billing history ({count(history['emails'], 'email')}, {history['first_day']} to "
                       f"{history['last_day']}), which is never deleted, so it can never be removed "
                       f"(rename it instead: smtpctl {kind} rename)")
    if not reasons:
        return
    advice = f"; {first}" if owns and not history["emails"] else ""
    raise InvalidInput(f"cannot remove {kind} {name!r}: {'; and '.join(reasons)}{advice}; nothing was removed")


def credential_cap_reached(live: int, cap: int) -> bool:
    """Whether a domain holding ``live`` credentials may not take another."""
    return live >= cap


# Ports of the service (docs/rules.md), in the order they are shown.
SMTP_PORTS: tuple[tuple[int, str, str], ...] = (
    (25, "plain or STARTTLS", "STARTTLS offered; often blocked by ISPs and clouds"),
    (465, "implicit TLS", "TLS from the first byte (SMTPS)"),
    (587, "STARTTLS", "the submission port; recommended"),
    (2525, "STARTTLS", "alternate submission port where 587 is blocked"),
)
RECOMMENDED_PORT = 587
