"""``smtpctl why``: can this credential (or account) send now, and if not,
every reason, each with the command that would fix it (docs/limits.md).

It reads what the metering paths read (the same limits in force,
``windows.in_force``, the same counters, the same credits) and explains;
it decides nothing the cap rule does not: a limit *stops* sending when the
rule would refuse the next message (its counter already over the limit).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from smtpctl.core.directory.accounts import effective_limit, get_account
from smtpctl.core.directory.settings import effective_settings, store_zone
from smtpctl.core.metering.credits import prepaid_agencies
from smtpctl.core.metering.windows import SenderWindows, in_force, periods, resets_at
from smtpctl.core.model import money, rules
from smtpctl.core.model.errors import Fix, InvalidInput, NotFound
from smtpctl.core.model.records import Account
from smtpctl.core.model.words import count
from smtpctl.core.reporting.throttle import throttled
from smtpctl.core.store import Store

WARN_SHARE = 0.8  # a limit this full is a note (the next messages may reach it)


@dataclass(frozen=True)
class Reason:
    """One thing that stops sending (``stops``) or is worth knowing (a note)."""

    kind: str
    detail: str
    fix: Fix | None = None
    stops: bool = True


@dataclass
class Answer:
    subject: str
    account: str
    can_send: bool
    reasons: list[Reason] = field(default_factory=list)
    notes: list[Reason] = field(default_factory=list)
    limits: list[dict[str, Any]] = field(default_factory=list)


def why(store: Store, subject: str) -> Answer:
    """Why ``subject`` (``LOGIN@DOMAIN`` or an account name) can or cannot send now.

    Raises ``NotFound`` (no such account, or a login whose domain is not in
    the store) or ``InvalidInput`` (a login on an agency-assigned domain)."""
    login = None
    if "@" in subject:
        name, domain_name = rules.parse_login(subject)
        login = f"{name}@{domain_name}"
        domain = store.domain(domain_name)
        if domain is None:
            raise NotFound(f"domain {domain_name} is not in the store, so {login} is not a credential of this service")
        if domain.account is None:
            raise InvalidInput(f"{login} cannot send: {domain_name} is agency-assigned and holds no SMTP credentials")
        account = get_account(store, domain.account)
    else:
        account = get_account(store, subject)
    answer = Answer(login or account.name, account.name, True)
    add = answer.reasons.append
    credentials = store.account_logins(account.id)
    if login is not None and login not in credentials:
        add(_missing_credential(store, account, login))
    elif login is None and not credentials:
        add(Reason("no_credentials", f"account {account.name} has no SMTP credentials",
                   None if account.blocked else Fix(("user", "create", "LOGIN@DOMAIN", "--generate"))))
    if account.blocked:
        _block(store, account, answer, stops=not credentials)
    _limits(store, account, login if login in credentials else None, answer)
    if login is not None:
        _throttle(store, login, answer)
    _alignment(store, account, login, answer)
    answer.can_send = not answer.reasons
    return answer


def _missing_credential(store: Store, account: Account, login: str) -> Reason:
    entries = store.audit_entries(action="account.limit_exceeded", limit=50)
    for entry in entries:
        if entry["account"] == account.name and login in entry["details"].get("revoked_credentials", []):
            details = entry["details"]
            return Reason("credential_revoked",
                          f"{login} was revoked at {entry['at']}: account {account.name} crossed its daily limit "
                          f"of {details['limit']:,} emails on {details['day']} ({details['emails']:,} sent)",
                          _create_fix(account, login))
    deleted = store.audit_entries(action="credential.delete", limit=200)
    for entry in deleted:
        if entry["object_name"] == login:
            return Reason("credential_deleted", f"{login} was deleted at {entry['at']} by {entry['actor']}",
                          _create_fix(account, login))
    return Reason("credential_missing", f"{login} is not an SMTP credential (account {account.name} has "
                  f"{count(len(store.account_logins(account.id)), 'credential')})", _create_fix(account, login))


def _create_fix(account: Account, login: str) -> Fix:
    if account.blocked:  # creation is blocked until the block is lifted
        return Fix(("account", "unblock", account.name))
    return Fix(("user", "create", login, "--generate"))


def _block(store: Store, account: Account, answer: Answer, *, stops: bool) -> None:
    action = "account.limit_exceeded" if account.block_kind == "limit" else "account.block"
    entries = [e for e in store.audit_entries(action=action, limit=50) if e["account"] == account.name]
    by = f" by {entries[0]['actor']}" if entries else ""
    what = "crossing its daily limit" if account.block_kind == "limit" else "an operator"
    reason = Reason("account_blocked",
                    f"account {account.name} is blocked since {account.blocked_at}{by} ({what}: "
                    f"{account.block_reason}); no SMTP credential can be created for it",
                    Fix(("account", "unblock", account.name)), stops)
    (answer.reasons if stops else answer.notes).append(reason)


def _limits(store: Store, account: Account, login: str | None, answer: Answer) -> None:
    zone = store_zone(store)
    when = periods(store.now(), zone)
    account_hour, account_month = store.limit_columns("accounts", account.id, ["hourly_limit", "monthly_limit"])
    credential_hour = credential_day = None
    if login is not None:
        credential = store.credential(login)
        credential_hour, credential_day = store.limit_columns("credentials", credential.id,
                                                              ["hourly_limit", "daily_limit"])
    agency = store.agency(account.agency)
    (agency_month,) = store.limit_columns("agencies", agency.id, ["monthly_limit"])
    sender = SenderWindows(account.id, account.name, agency.id, agency.name, login or "",
                           effective_limit(store, account), account_hour, account_month, credential_hour,
                           credential_day, agency_month)
    limits, counters = in_force(sender, when, zone)
    for limit, counter in zip(limits, counters):
        used = store.window_total(*counter)
        resets = limit.resets_at or resets_at(limit.window, counter.period, zone)
        answer.limits.append({"scope": limit.scope, "subject": limit.subject, "window": limit.window, "used": used,
                              "limit": limit.limit, "resets_at": resets})
        adjective = rules.WINDOW_ADJECTIVE[limit.window]
        fix_scope = {"account": ("account", "set-limit", account.name), "agency": ("agency", "set-limit", agency.name),
                     "credential": ("user", "set-limit", login or "")}[limit.scope]
        window_arg = () if limit.permanent else ("--window", limit.window)
        if used > limit.limit:
            if limit.permanent:
                detail = (f"account {account.name} is over its daily limit ({used:,} of {limit.limit:,} emails "
                          f"today): its credentials were revoked, and every message today is refused")
                add = Reason("limit_exceeded", detail, Fix(("account", "set-limit", account.name, "N")))
            else:
                add = Reason("limit_reached",
                             f"{limit.scope} {limit.subject} has reached its {adjective} limit ({used:,} of "
                             f"{limit.limit:,} emails): refused until {resets}",
                             Fix((*fix_scope, "N", *window_arg)))
            answer.reasons.append(add)
        elif used >= WARN_SHARE * limit.limit:
            then = ("the message that crosses it revokes the account's credentials" if limit.permanent
                    else f"then refused until {resets}")
            answer.notes.append(Reason("limit_near", f"{limit.scope} {limit.subject} has used {used:,} of its "
                                       f"{adjective} limit of {limit.limit:,} emails; {then}",
                                       Fix((*fix_scope, "N", *window_arg)), stops=False))
    credits = prepaid_agencies(store, [agency.id]).get(agency.id)
    if credits is not None:
        balance = credits.credits - credits.charges
        if balance <= 0:
            answer.reasons.append(Reason("out_of_credits", f"agency {agency.name}'s prepaid credits are used up "
                                         f"(balance {money.to_cents(balance) + 0} USD)",
                                         Fix(("billing", "credit", agency.name, "AMOUNT"))))


def _throttle(store: Store, login: str, answer: Answer) -> None:
    """serve's AUTH throttle on this login (at serve's default caps: the
    caps are serve's options; ``auth throttle list`` takes them)."""
    for budget in throttled(store, login=login):
        if budget.scope != "login" or not budget.failures:
            continue
        fix = Fix(("auth", "throttle", "clear", "--login", login))
        if budget.blocking:
            answer.reasons.append(Reason(
                "auth_throttled", f"{login} has {count(budget.failures, 'failed password guess')} counted (cap "
                f"{budget.limit}): serve answers its AUTH with 454 from every untrusted client until "
                f"{budget.unblocks_at}", fix))
        else:
            answer.notes.append(Reason(
                "auth_failures", f"{login} has {count(budget.failures, 'failed password guess')} counted of the "
                f"{budget.limit} serve allows before it refuses the login's AUTH (until {budget.clears_at})", fix,
                stops=False))


def _alignment(store: Store, account: Account, login: str | None, answer: Answer) -> None:
    if effective_settings(store)["sender_alignment"] == "off":
        return
    domains = [d.name for d in store.domains(account=account.name)]
    who = login or f"account {account.name}'s credentials"
    answer.notes.append(Reason("sender_alignment", f"{who} may send only as addresses in {', '.join(domains)} "
                               "(store setting sender_alignment; header From too)", None, stops=False))


def as_dict(answer: Answer, word_fix) -> dict[str, Any]:
    """The ``--json`` shape (docs/json-output.md); ``word_fix`` writes a Fix as a command."""
    def one(reason: Reason) -> dict[str, Any]:
        return {"kind": reason.kind, "detail": reason.detail, "fix": word_fix(reason.fix) if reason.fix else None}

    return {"subject": answer.subject, "account": answer.account, "can_send": answer.can_send,
            "reasons": [one(r) for r in answer.reasons], "notes": [one(r) for r in answer.notes],
            "limits": answer.limits}
