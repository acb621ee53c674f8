"""Every reply the servers send, in one table (as aiosmtpd's
``testing/statuscodes.py``): the SMTP replies of ``serve`` and the actions
of ``policy serve``. Scripts and monitoring match these bytes
(docs/servers.md): change one only on purpose.

A reply that carries a value (an address, a queue id) is a function of it;
a next hop's own reply is passed on by ``relayed``.
"""

from __future__ import annotations

from smtpctl.core.metering.rule import Limit
from smtpctl.core.model.rules import WINDOW_ADJECTIVE

# -- serve: SMTP replies --------------------------------------------------------

OK = "250 OK"
STORE_UNAVAILABLE = "451 4.3.0 Temporary failure; try again later"
STORE_UNAVAILABLE_AUTH = "454 4.7.0 Temporary authentication failure; try again later"
DELIVERY_FAILED = "451 4.3.0 Delivery failed temporarily; try again later"
NEXT_HOP_UNAVAILABLE = "451 4.4.1 Next hop unavailable; try again later"
TOO_MANY_AUTH = "454 4.7.0 Too many failed authentications; try again later"
CREDENTIAL_CHANGED = "421 4.7.0 Your SMTP credentials changed since you authenticated (reset or deleted); closing"
TOO_MANY_CONNECTIONS = {
    "client": "421 4.7.0 Too many connections from your address; try again later",
    "total": "421 4.7.0 Too many connections; try again later",
}
# What the store's checks answer (core/metering/live.py: a status), as the client reads it.
REFUSALS = {
    "revoked": "550 5.7.1 Your SMTP credentials were revoked (daily sending limit exceeded or removed by an "
               "operator); please contact support",
    "unknown": "550 5.7.1 Unknown sender",
    "over_limit": "550 5.7.1 Daily sending limit exceeded; message refused; please contact support",
    "too_many_recipients": "452 4.5.3 Too many recipients",
    # temporary (4xx): a top-up lets the client's retry through, credentials are kept
    "out_of_credits": "451 4.7.1 Your agency's prepaid credits are used up; sending resumes once it is topped up; "
                      "try again later",
    # temporary (4xx): an hour, a credential's day, a month, until the window resets; nothing is revoked
    "over_window_limit": "451 4.7.1 Sending limit reached; try again later",
    "invalid": "550 5.7.1 Message refused",
}


def auth_revoked(reason: str, day: str | None) -> str:
    """The 535 for the right password of a credential revoked lately
    (core/store/revoked.py): why it no longer works, where a plain 535 would
    read as a wrong password. An operator's reason for a block is not told
    (it may be an internal note); the limit's day is."""
    if reason == "daily_limit":
        return f"535 5.7.8 Authentication credentials revoked: daily sending limit exceeded on {day}; contact support"
    return "535 5.7.8 Authentication credentials revoked by an operator; contact support"


def window_full(limit: Limit) -> str:
    """What a window refusal says: whose limit, which window, until when
    (docs/limits.md). The same words in both servers after the code."""
    adjective = WINDOW_ADJECTIVE[limit.window]
    return (f"{adjective.capitalize()} sending limit of {limit.scope} {limit.subject} reached "
            f"({limit.limit:,} emails); try again after {limit.resets_at}")


def refusal(status: str, limit: Limit | None = None) -> str:
    """The reply refusing a message the store did not admit (``Admission.status``
    and, for a window, the limit that refused it)."""
    if status == "over_window_limit" and limit is not None:
        return "451 4.7.1 " + window_full(limit)
    return REFUSALS.get(status, REFUSALS["invalid"])


def header_from_not_owned(address: str, login: str) -> str:
    return f"550 5.7.1 <{address}>: header From address not owned by user {login}"


def sender_not_owned(address: str, login: str) -> str:
    return f"553 5.7.1 <{address}>: Sender address rejected: not owned by user {login}"


def queued(queue_id: str) -> str:
    return f"250 2.0.0 OK: queued as {queue_id}"


def next_hop_failed(exc: BaseException) -> tuple[int, bytes]:
    """The (code, text) standing for a next hop that failed during DATA, as ``relayed`` takes it."""
    return 451, f"4.4.1 Next hop failed ({type(exc).__name__}); try again later".encode()


def relayed(code: int, text: bytes | str) -> str:
    """A next hop's reply, passed on to the client on one line."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(text.split())}"


# -- policy serve: actions (Postfix SMTPD_POLICY_README) ----------------------------

DUNNO = "DUNNO"
DEFER_ERROR = "DEFER_IF_PERMIT 4.3.0 Policy service error; try again later"
DEFER_MALFORMED = "DEFER_IF_PERMIT 4.5.0 Malformed policy request"
TOO_MANY = "REJECT 5.5.3 Too many recipients"  # RFC 3463: X.5.3 too many recipients
REJECTS = {
    "revoked": "REJECT 5.7.1 SMTP credentials revoked: daily sending limit exceeded or removed; contact support",
    "over_limit": "REJECT 5.7.1 Daily sending limit exceeded; message refused; contact support",
    "too_many_recipients": TOO_MANY,
    # DEFER_IF_PERMIT: temporary, Postfix keeps the message queued and retries; a top-up lets it through
    "out_of_credits": "DEFER_IF_PERMIT 4.7.1 Agency's prepaid credits are used up; sending resumes once it is "
                      "topped up",
    "over_window_limit": "DEFER_IF_PERMIT 4.7.1 Sending limit reached; try again later",
    "invalid": "REJECT 5.7.1 Message refused",
}


def reject(status: str, limit: Limit | None = None) -> str:
    """The action refusing a message the store did not admit (``Admission.status``
    and, for a window, the limit that refused it)."""
    if status == "over_window_limit" and limit is not None:
        return "DEFER_IF_PERMIT 4.7.1 " + window_full(limit)
    return REJECTS.get(status, REJECTS["invalid"])


def reject_sender(sender: str, login: str) -> str:
    # Postfix puts its own context first ("<rcpt>: Recipient address rejected: ").
    return f"REJECT 5.7.1 Sender address <{sender}> not owned by user {login}"
