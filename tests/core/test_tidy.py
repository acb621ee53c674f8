"""Undo and tidy (issue 11, part 2): rename, remove, multi-delete, unset,
setting and limit warnings, blocked entries in a plan. Real SQLite files."""

import json
from datetime import date, timedelta, timezone
from decimal import Decimal

import pytest

from smtpctl.cli.output import word
from smtpctl.core.billing.prices import set_price
from smtpctl.core.directory.accounts import add_account, remove_account, rename_account, set_account_limit
from smtpctl.core.directory.agencies import add_agency, remove_agency, rename_agency
from smtpctl.core.directory.audit import audit_entries
from smtpctl.core.directory.credentials import create_credential, credential_deletion_plan, delete_credentials
from smtpctl.core.directory.domains import add_domain, remove_domain
from smtpctl.core.directory.settings import effective_settings, set_setting, store_zone, today, unset_setting
from smtpctl.core.ingest.message import build_input
from smtpctl.core.metering.batch import record_usage
from smtpctl.core.metering.enforcement import block_account, unblock_account
from smtpctl.core.model.clock import iso_z, utc_now
from smtpctl.core.model.errors import AlreadyExists, Blocked, Fix, InvalidInput, NotFound, Notice
from smtpctl.core.provisioning import apply as provisioning
from smtpctl.core.reporting.report import usage_report
from smtpctl.core.reporting.status import usage_status
from smtpctl.core.store import Store

PW = "a good long password"


def msg(user, n=1, at=None):
    return build_input(direction="outbound", user=user, domain=None, to=None, cc=None, bcc=None, recipients=n,
                       at=at, source_id=None, default_tz=timezone.utc)


@pytest.fixture
def store(store_at):
    with Store.open(store_at, actor="ops") as s:
        add_agency(s, "acme")
        add_account(s, "shop", "acme", daily_limit=10)
        add_domain(s, "d.example", account="shop")
        create_credential(s, "a@d.example", PW)
        yield s


def content(store):
    tables = ("agencies", "accounts", "domains", "credentials", "settings", "usage_daily", "audit")
    return {t: store.query(f"SELECT * FROM {t} ORDER BY 1") for t in tables}


def last_audit(store):
    row = store.query("SELECT action, object_name, account, details FROM audit ORDER BY id DESC LIMIT 1")[0]
    return row["action"], row["object_name"], row["account"], json.loads(row["details"])


# -- rename --------------------------------------------------------------------------


def test_account_rename_keeps_usage_reports_and_audit_with_the_account(store):
    past = iso_z(utc_now() - timedelta(days=40))  # always before this month
    record_usage(store, msg("a@d.example", 3, at=past))
    record_usage(store, msg("a@d.example", 2))
    outcome = rename_account(store, "shop", "Shop Two")
    assert (outcome.status, outcome.object.name, outcome.extra) == ("renamed", "Shop Two", {"old_name": "shop"})
    assert last_audit(store) == ("account.rename", "Shop Two", "Shop Two", {"old": "shop", "new": "Shop Two"})
    assert store.account("shop") is None and store.credential("a@d.example").account == "Shop Two"
    since = (utc_now() - timedelta(days=45)).date().isoformat()
    report = usage_report(store, since=since, by=["account"])
    assert [(r["account"], r["emails"]) for r in report["rows"]] == [("Shop Two", 5)]
    assert [r["account"] for r in usage_status(store)] == ["Shop Two"]
    trail = audit_entries(store, account="shop two", limit=0)
    assert [r["action"] for r in reversed(trail)] == [
        "account.create", "domain.create", "credential.create", "account.rename"]


def test_agency_rename_follows_in_reports_and_owners(store):
    record_usage(store, msg("a@d.example"))
    outcome = rename_agency(store, "ACME", "Acme Agency")
    assert (outcome.status, outcome.extra["old_name"]) == ("renamed", "acme")
    assert last_audit(store) == ("agency.rename", "Acme Agency", None, {"old": "acme", "new": "Acme Agency"})
    assert store.account("shop").agency == "Acme Agency" and store.domain("d.example").agency == "Acme Agency"
    report = usage_report(store, by=["agency"])
    assert [r["agency"] for r in report["rows"]] == ["Acme Agency"]


def test_rename_refusals_change_nothing(store):
    add_account(store, "other", "acme")
    before = content(store)
    with pytest.raises(AlreadyExists, match="^account 'other' already exists \\(agency 'acme'\\); nothing was renamed$"):
        rename_account(store, "shop", "OTHER")
    with pytest.raises(InvalidInput, match="^invalid account name '-bad'"):
        rename_account(store, "shop", "-bad")
    with pytest.raises(NotFound, match="^account 'ghost' not found$"):
        rename_account(store, "ghost", "new")
    add_agency(store, "b")
    before = content(store)
    with pytest.raises(AlreadyExists, match="^agency 'b' already exists; nothing was renamed$"):
        rename_agency(store, "acme", "B")
    assert content(store) == before


def test_rename_to_the_same_name_is_unchanged_and_case_only_is_a_rename(store):
    assert rename_account(store, "shop", "shop").status == "unchanged"
    assert rename_account(store, "shop", "Shop").status == "renamed"
    assert store.account("shop").name == "Shop"


def test_audit_follows_a_chain_of_renames_but_not_a_reused_name(store):
    rename_account(store, "shop", "mid")
    rename_account(store, "mid", "last")
    add_account(store, "shop", "acme")  # the old name, now another account
    set_account_limit(store, "shop", 5)
    ours = [(r["action"], r["account"]) for r in audit_entries(store, account="last", limit=0)]
    assert ours == [("account.rename", "last"), ("account.rename", "mid"), ("credential.create", "shop"),
                    ("domain.create", "shop"), ("account.create", "shop")]
    theirs = [r["action"] for r in audit_entries(store, account="shop", limit=0)]
    assert theirs == ["account.set_limit", "account.create"]


def test_audit_of_a_name_reused_after_a_removal_is_the_new_account_only(store):
    add_account(store, "temp", "acme")
    remove_account(store, "temp")
    add_account(store, "temp", "acme", daily_limit=7)
    rows = audit_entries(store, account="temp", limit=0)
    assert [(r["action"], r["details"].get("daily_limit")) for r in rows] == [("account.create", 7)]


# -- remove --------------------------------------------------------------------------


def test_remove_account_names_what_it_owns(store):
    before = content(store)
    with pytest.raises(InvalidInput) as err:
        remove_account(store, "shop")
    assert err.value.message == (
        "cannot remove account 'shop': it still owns 1 dedicated domain (d.example) and 1 SMTP credential "
        "(a@d.example); remove its domains first (smtpctl domain remove DOMAIN, which deletes their credentials); "
        "nothing was removed")
    assert err.value.exit_code == 2
    assert content(store) == before


def test_remove_account_and_agency_once_empty(store):
    remove_domain(store, "d.example")
    with pytest.raises(InvalidInput, match="^cannot remove agency 'acme': it still owns 1 account \\(shop\\); "):
        remove_agency(store, "acme")
    outcome = remove_account(store, "shop")
    assert (outcome.status, outcome.object.name) == ("deleted", "shop")
    assert last_audit(store) == ("account.delete", "shop", "shop", {
        "agency": "acme", "daily_limit": 10, "block_kind": None, "block_reason": None})
    add_domain(store, "shared.example", agency="acme")
    with pytest.raises(InvalidInput, match="it still owns 1 agency-assigned domain \\(shared.example\\)"):
        remove_agency(store, "acme")
    remove_domain(store, "shared.example")
    assert remove_agency(store, "acme").status == "deleted"
    assert last_audit(store)[:2] == ("agency.delete", "acme")
    assert store.agencies() == [] and store.accounts() == []


def test_billing_history_is_never_removed(store):
    record_usage(store, msg("a@d.example", 3))
    remove_domain(store, "d.example")
    day = today(store)
    with pytest.raises(InvalidInput) as err:
        remove_account(store, "shop")
    assert err.value.message == (
        f"cannot remove account 'shop': it has billing history (3 emails, {day} to {day}), which is never deleted, "
        "so it can never be removed (rename it instead: smtpctl account rename); nothing was removed")
    with pytest.raises(InvalidInput) as err:
        remove_agency(store, "acme")
    assert err.value.message.startswith("cannot remove agency 'acme': it still owns 1 account (shop); and it has "
                                        f"billing history (3 emails, {day} to {day}), which is never deleted")
    assert store.account("shop") is not None


def test_inbound_history_keeps_an_agency(store):
    add_domain(store, "shared.example", agency="acme")
    record_usage(store, build_input(direction="inbound", user=None, domain="shared.example", to=None, cc=None,
                                          bcc=None, recipients=2, at=None, source_id=None, default_tz=timezone.utc))
    remove_domain(store, "shared.example")
    remove_domain(store, "d.example")
    remove_account(store, "shop")
    with pytest.raises(InvalidInput, match="^cannot remove agency 'acme': it has billing history \\(2 emails"):
        remove_agency(store, "acme")


def test_long_lists_are_cut_in_the_message(store):
    set_setting(store, "credentials_per_domain", "20")
    for i in range(12):
        add_domain(store, f"d{i:02}.example", account="shop")
    with pytest.raises(InvalidInput, match="13 dedicated domains \\(d.example, d00.example, .*, d08.example and 3 "
                                           "more\\)"):
        remove_account(store, "shop")


# -- user delete ---------------------------------------------------------------------


def test_delete_several_is_all_or_nothing(store):
    create_credential(store, "b@d.example", PW)
    before = content(store)
    with pytest.raises(NotFound) as err:
        delete_credentials(store, ["a@d.example", "x@d.example", "y@d.example"])
    assert (err.value.message, err.value.exit_code) == (
        "2 SMTP credentials not found: x@d.example, y@d.example; nothing was deleted (--missing-ok deletes the "
        "others)", 3)
    with pytest.raises(InvalidInput, match="invalid login 'nope'"):
        delete_credentials(store, ["a@d.example", "nope"], missing_ok=True)
    assert content(store) == before
    outcomes = delete_credentials(store, ["A@d.example", "x@d.example", "b@d.example", "a@d.example"],
                                           missing_ok=True)
    assert [(o.status, o.object.login) for o in outcomes] == [
        ("deleted", "a@d.example"), ("missing", "x@d.example"), ("deleted", "b@d.example")]
    assert store.credentials() == []
    actions = [r["action"] for r in store.query("SELECT action FROM audit WHERE action = 'credential.delete'")]
    assert actions == ["credential.delete", "credential.delete"]
    again = delete_credentials(store, ["a@d.example"], missing_ok=True)
    assert [o.as_dict() for o in again] == [{"login": "a@d.example", "status": "missing"}]


def test_delete_refuses_when_the_confirmed_list_changed(store):
    present, missing = credential_deletion_plan(store, ["a@d.example", "n@d.example"], missing_ok=True)
    assert (present, missing) == (["a@d.example"], ["n@d.example"])
    create_credential(store, "n@d.example", PW)  # appears between the question and the answer
    with pytest.raises(InvalidInput, match="changed while you confirmed; nothing was deleted"):
        delete_credentials(store, ["a@d.example", "n@d.example"], missing_ok=True, expected=present)
    assert store.credential("a@d.example") is not None and store.credential("n@d.example") is not None


def test_one_missing_login_keeps_its_message(store):
    with pytest.raises(NotFound, match="^SMTP credential x@d.example not found$"):
        delete_credentials(store, ["x@d.example"])


# -- settings ------------------------------------------------------------------------


def test_unset_goes_back_to_the_default_and_is_audited(store):
    set_setting(store, "credentials_per_domain", "3")
    outcome = unset_setting(store, "credentials_per_domain")
    assert (outcome.status, outcome.object.value) == ("updated", 5)
    assert last_audit(store) == ("setting.unset", "credentials_per_domain", None, {"old": "3", "new": "5"})
    assert "credentials_per_domain" not in store.settings()
    assert unset_setting(store, "credentials_per_domain").status == "unchanged"
    before = content(store)
    with pytest.raises(InvalidInput, match="^unknown setting 'nope'; known settings: smtp_host, "):
        unset_setting(store, "nope")
    assert content(store) == before


def test_setting_warnings_for_departures_from_the_rules(store):
    assert set_setting(store, "credentials_per_domain", "5").extra["warnings"] == []
    assert set_setting(store, "credentials_per_domain", "8").extra["warnings"] == [
        "credentials_per_domain 8 departs from the service's rule of at most 5 SMTP credentials per dedicated "
        "domain"]
    assert set_setting(store, "default_daily_limit", "2000").extra["warnings"] == [
        "default_daily_limit 2,000 departs from the service's rule of 1,500 emails per account per day"]
    assert set_price(store, "0.70").extra["warnings"] == [
        "price_per_1000 0.70 departs from the service's price of $0.675 per 1,000 emails"]
    assert set_setting(store, "smtp_host", "smtp.example.net").extra["warnings"] == []
    assert set_price(store, "0.675").extra["warnings"] == []


def test_lower_cap_and_default_limit_already_reached(store):
    create_credential(store, "b@d.example", PW)
    assert set_setting(store, "credentials_per_domain", "1").extra["warnings"] == [
        "1 domain already holds more than 1 SMTP credential (d.example); they keep them, and take no new one until "
        "below the cap"]
    add_account(store, "free", "acme")
    add_domain(store, "f.example", account="free")
    unset_setting(store, "credentials_per_domain")
    create_credential(store, "z@f.example", PW)
    record_usage(store, msg("z@f.example", 4))
    warnings = set_setting(store, "default_daily_limit", "4").extra["warnings"]
    assert warnings[1] == ("1 account on the default limit already sent 4 or more emails today: free (4); the next "
                           "email of each blocks it and revokes its SMTP credentials")


def test_a_price_change_never_reprices_the_past(store):
    # issue 24: 2 emails on a past day, then a new price from today; the past keeps its price
    past = utc_now() - timedelta(days=40)
    record_usage(store, msg("a@d.example", 2, at=iso_z(past)))
    changed = set_price(store, "0.90")
    assert (changed.status, changed.extra["from"], changed.extra["was"]) == ("created", today(store), "0.675")
    assert effective_settings(store)["price_per_1000"] == Decimal("0.90")
    day = past.astimezone(store_zone(store)).date().isoformat()
    old = usage_report(store, since=day, until=day)
    assert (old["price_per_1000"], old["total"]["cost"]) == ("0.675", "0.00135")
    record_usage(store, msg("a@d.example", 1000))
    both = usage_report(store, since=day, by=["day"])
    assert both["prices"] == [{"since": day, "until": (date.fromisoformat(today(store)) - timedelta(days=1)).isoformat(),
                               "price_per_1000": "0.675"},
                              {"since": today(store), "until": today(store), "price_per_1000": "0.90"}]
    assert [(r["day"], r["emails"], r["cost"]) for r in both["rows"]] == [(day, 2, "0.00135"),
                                                                         (today(store), 1000, "0.90")]
    assert both["total"]["cost"] == "0.90135"


# -- limits: unblock and set-limit ---------------------------------------------------


def test_unblock_over_today_warns_and_set_limit_echoes(store):
    record_usage(store, msg("a@d.example", 11))
    assert store.account("shop").blocked
    lifted = unblock_account(store, "shop")
    assert (lifted["status"], lifted["sent_today"], lifted["effective_daily_limit"]) == ("unblocked", 11, 10)
    assert lifted["warnings"] == [Notice(
        "shop has already sent 11 emails today, over its daily limit of 10: its next email blocks it again and "
        "revokes its SMTP credentials", Fix(("account", "set-limit", "shop", "N"), "raise the limit with"))]
    assert lifted["warnings"][0].message == (
        "shop has already sent 11 emails today, over its daily limit of 10: its next email blocks it again and "
        "revokes its SMTP credentials; raise the limit with: smtpctl account set-limit shop N")
    raised = set_account_limit(store, "shop", "20")
    assert (raised.status, raised.extra) == ("updated", {"previous_daily_limit": 10, "effective_daily_limit": 20,
                                                         "sent_today": 11, "warnings": []})
    lowered = set_account_limit(store, "shop", "11")
    assert [w.message for w in lowered.extra["warnings"]] == [
        "shop has already sent 11 emails today, at its daily limit of 11: its next email blocks credential "
        "creation and revokes its SMTP credentials; raise the limit with: smtpctl account set-limit shop N"]
    assert unblock_account(store, "shop")["warnings"] == []  # not blocked: nothing lifted


def test_unblock_under_the_limit_is_quiet(store):
    block_account(store, "shop", "review")
    assert unblock_account(store, "shop")["warnings"] == []


# -- blocked account: user create and apply --------------------------------------------


def test_create_on_a_blocked_account_names_account_reason_and_command(store):
    add_account(store, "Big Shop", "acme")
    add_domain(store, "big.example", account="Big Shop")
    block_account(store, "Big Shop", "compliance review")
    with pytest.raises(Blocked) as err:
        create_credential(store, "x@big.example", PW)
    # The core says which account and the fix as data; the CLI words the fix as a shell command.
    assert (err.value.subject, err.value.fix) == ("Big Shop", Fix(("account", "show", "Big Shop")))
    assert word(err.value) == (
        "SMTP Credential creation is blocked. Please contact support… (account Big Shop is blocked by an operator: "
        "compliance review; more: smtpctl account show 'Big Shop')")


DOC = """
version = 1
[[agencies]]
name = "acme"
[[accounts]]
name = "shop"
agency = "acme"
daily_limit = 10
[[accounts]]
name = "fresh"
agency = "acme"
[[domains]]
name = "d.example"
account = "shop"
[[domains]]
name = "f.example"
account = "fresh"
[[credentials]]
login = "a@d.example"
generate = true
[[credentials]]
login = "new@d.example"
generate = true
[[credentials]]
login = "ok@f.example"
generate = true
"""


def test_plan_marks_blocked_entries_and_skip_blocked_applies_the_rest(store):
    block_account(store, "shop", "review")
    doc = provisioning.parse_document(DOC)
    plan = provisioning.make_plan(store, doc)
    assert [(c.action, c.name) for c in plan.changes if c.kind == "credential"] == [
        ("unchanged", "a@d.example"), ("blocked", "new@d.example"), ("create", "ok@f.example")]
    assert plan.blocked[0].details == {"entry": "credentials[1]", "account": "shop", "block_kind": "manual",
                                       "block_reason": "review"}
    assert plan.summary()["blocked"] == 1
    before = content(store)
    with pytest.raises(Blocked) as err:
        provisioning.apply_document(store, doc)
    assert err.value.message == (
        "SMTP Credential creation is blocked. Please contact support… (credentials[1] new@d.example: account shop "
        "is blocked (review)); nothing was applied; --skip-blocked applies the rest of the file; more: smtpctl "
        "account show shop")
    assert content(store) == before
    applied = provisioning.apply_document(store, doc, skip_blocked=True)
    assert applied.summary() == {"create": 3, "update": 0, "unchanged": 4, "delete": 0, "blocked": 1}
    assert store.credential("ok@f.example") is not None and store.credential("new@d.example") is None
