"""The answer to one policy request, from the store.

Every protocol state gets an answer. A login that is not ours, or no login,
is ``DUNNO``. For our logins: a credential that is gone is refused in every
state; from MAIL on the envelope sender must be one of the account's own
(sender alignment); from DATA on ``recipient_count`` may not exceed
``max_recipients_per_message``; and at END-OF-MESSAGE the message is
admitted against the daily limit and recorded in one transaction (once per
``instance``), so the hard cap holds however many processes share the store.

The server runs ``check_and_admit`` for END-OF-MESSAGE (``metered``) as a
step of group commit, ``check`` (read only) for every other state, and
``settle`` on either's ``Answer``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from smtpctl.core.metering.live import Admission, admit_message, max_recipients, sender_allowed, sender_status
from smtpctl.servers.metrics import NOOP, Metrics
from smtpctl.servers.replies import DEFER_MALFORMED, DUNNO, REJECTS, TOO_MANY, reject, reject_sender
from smtpctl.servers.runtime import log_event

MAX_ECHO = 256  # the longest sender or login echoed back in a reply text
MAX_INSTANCE = 128  # Postfix's instance is about 20 characters; it becomes the usage event's id

SENDER_STATES = frozenset({"MAIL", "RCPT", "DATA", "END-OF-MESSAGE"})  # the envelope sender is known
COUNT_STATES = frozenset({"DATA", "END-OF-MESSAGE"})  # recipient_count is the message's (SMTPD_POLICY_README)


@dataclass(slots=True)
class Meter:
    """A message to admit: END-OF-MESSAGE's, once every check passed."""
    login: str
    recipients: int
    source_id: str


@dataclass(slots=True)
class Answer:
    """A request's action and the fields of its log line (``state`` among
    them); at END-OF-MESSAGE, the admission of its message, to ``settle``."""
    action: str
    info: dict[str, Any]
    admission: Admission | None = None


def state_of(attrs: dict[str, str]) -> str:
    return attrs.get("protocol_state", "").strip().upper()


def login_of(attrs: dict[str, str]) -> str:
    return attrs.get("sasl_username", "").strip().lower()


def metered(attrs: dict[str, str]) -> bool:
    """Is this request the one whose message is admitted (END-OF-MESSAGE)? Only
    it can write, so only it goes through group commit."""
    return state_of(attrs) == "END-OF-MESSAGE"


def parse_count(text: str | None) -> int | None:
    """``recipient_count`` as Postfix writes it (ASCII digits); None for
    anything else (negative, signed, non-numeric). An absurdly long number
    is returned as a number larger than any cap, not converted."""
    text = (text or "").strip() or "0"
    if not (text.isascii() and text.isdigit()):  # [0-9]+, not every Unicode digit
        return None
    return int(text) if len(text) <= 18 else 10**18


def _echo(text: str) -> str:
    return text if len(text) <= MAX_ECHO else text[:MAX_ECHO] + "..."


def check(store: Any, attrs: dict[str, str]) -> Answer:
    """The answer to a request in any state but END-OF-MESSAGE: reads only
    (the server runs it on a reader). Store errors propagate."""
    action, info, meter = precheck(store, attrs)
    assert meter is None, "only END-OF-MESSAGE has a message to admit (metered), and it goes to check_and_admit"
    return Answer(action, info)


def check_and_admit(store: Any, attrs: dict[str, str]) -> Answer:
    """``precheck``, then the admission of its message if it has one, on the
    store thread inside the caller's transaction (group commit's step)."""
    action, info, meter = precheck(store, attrs)
    if meter is None:
        return Answer(action, info)
    return Answer(action, info, admit_message(store, meter.login, meter.recipients, meter.source_id))


def precheck(store: Any, attrs: dict[str, str]) -> tuple[str, dict[str, Any], Meter | None]:
    """Everything but the metering: the answer, or (at END-OF-MESSAGE) the
    message to admit."""
    state = state_of(attrs)
    info: dict[str, Any] = {"state": state or "(none)"}
    if attrs.get("request") != "smtpd_access_policy":
        return DEFER_MALFORMED, {**info, "reason": "not an smtpd_access_policy request"}, None
    login = login_of(attrs)
    if not login:
        return DUNNO, {**info, "reason": "not authenticated"}, None
    info["login"] = login
    status = sender_status(store, login)
    if status == "unknown":
        return DUNNO, {**info, "reason": "not ours"}, None
    if status != "ok":
        if state == "END-OF-MESSAGE" and _already_billed(store, attrs):
            # Postfix asks again about a message whose answer it lost (a node died after billing it): it was
            # sent and billed before the credential went, so it must not bounce now (issue 23)
            return DUNNO, {**info, "reason": "already recorded", "metered": False}, None
        return REJECTS[status], {**info, "reason": status}, None
    if state in SENDER_STATES and "sender" in attrs:  # Postfix always sends it; empty is the null sender
        sender = attrs["sender"].strip()
        if not sender_allowed(store, login, sender):
            return (reject_sender(_echo(sender), _echo(login)),
                    {**info, "reason": "sender_mismatch", "sender": sender or "<>"}, None)
    if state not in COUNT_STATES:
        return DUNNO, info, None
    if state == "END-OF-MESSAGE" and (not attrs.get("recipient_count", "").strip()
                                      or not (attrs.get("instance") or attrs.get("queue_id"))):
        # Fail closed (docs/servers.md): Postfix always sends both at END-OF-MESSAGE; a request without them
        # cannot be metered, and answering DUNNO would let the message through unbilled and uncapped.
        missing = "recipient_count" if not attrs.get("recipient_count", "").strip() else "instance"
        return DEFER_MALFORMED, {**info, "reason": f"no {missing} to meter by", "metered": False}, None
    recipients = parse_count(attrs.get("recipient_count"))
    if recipients is None:
        return DEFER_MALFORMED, {**info, "reason": "recipient_count is not a number",
                                 "recipient_count": attrs.get("recipient_count")}, None
    info["recipients"] = recipients
    if recipients > max_recipients(store):
        return TOO_MANY, {**info, "reason": "too_many_recipients", "metered": False}, None
    if state != "END-OF-MESSAGE":
        return DUNNO, info, None
    instance = attrs.get("instance") or attrs.get("queue_id") or ""
    if len(instance) > MAX_INSTANCE:
        return DEFER_MALFORMED, {**info, "reason": f"instance longer than {MAX_INSTANCE} characters"}, None
    if recipients == 0 or not instance:
        return DUNNO, {**info, "reason": "nothing to meter", "metered": False}, None
    info["queue_id"] = attrs.get("queue_id") or None
    return DUNNO, info, Meter(login, recipients, source_id(attrs, instance))


def _already_billed(store: Any, attrs: dict[str, str]) -> bool:
    instance = attrs.get("instance") or attrs.get("queue_id") or ""
    return bool(instance) and len(instance) <= MAX_INSTANCE and store.source_id_stored(source_id(attrs, instance))


def source_id(attrs: dict[str, str], instance: str) -> str:
    """The message's id in the store, the same each time Postfix asks about
    it and unique across a fleet: ``instance`` is unique only within one
    Postfix host, so the id also names that host (``server_address``, the
    address its smtpd took the connection on) and the message's
    ``queue_id``. A request without them keeps the plain ``policy:INSTANCE``."""
    server, queue_id = attrs.get("server_address", "").strip(), attrs.get("queue_id", "").strip()
    if not server or not queue_id:
        return f"policy:{instance}"
    return f"policy:{server}/{queue_id[:MAX_INSTANCE]}/{instance}"


def settle(answer: Answer, metrics: Metrics = NOOP) -> tuple[str, dict[str, Any]]:
    """The action and log fields of an answer; at END-OF-MESSAGE, once its
    message was admitted or refused."""
    admission, info = answer.admission, answer.info
    if admission is None:
        return answer.action, info
    for crossing in admission.crossings:
        log_event("limit_exceeded", account=crossing.account, day=crossing.day, emails=crossing.emails,
                  limit=crossing.limit, revoked=",".join(crossing.revoked_credentials))
        metrics.crossing()
    info.update(metered=admission.status == "accepted")
    if info["metered"]:  # not a duplicate instance: Postfix asked again about a message already counted
        metrics.accepted(admission.emails)
    if not admission.accepted:
        return reject(admission.status, admission.refused_by), {**info, "reason": admission.status}
    # The message that crosses the limit is accepted (it is recorded and
    # billed); every later one is refused by admit_message.
    return DUNNO, info
