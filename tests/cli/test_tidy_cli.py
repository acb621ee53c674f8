"""Undo and tidy on the command line: exact exit codes, stdout and stderr."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

PW = "a good long password"


@pytest.fixture(autouse=True)
def world(cli):
    for args in (["agency", "add", "acme"], ["account", "add", "shop", "--agency", "acme", "--daily-limit", "10"],
                 ["domain", "add", "d.example", "--account", "shop"]):
        assert cli(*args).exit_code == 0
    for login in ("a@d.example", "b@d.example"):
        assert cli("user", "create", login, "--password-stdin", input=PW + "\n").exit_code == 0


def out(result):
    return result.exit_code, result.stdout, result.stderr


# -- rename --------------------------------------------------------------------------


def test_account_rename_and_the_report_shows_the_new_name(cli):
    assert cli("usage", "record", "--user", "a@d.example", "--recipients", "2").exit_code == 0
    assert out(cli("account", "rename", "shop", "Shop Two")) == (
        0, "", "Account 'shop' renamed to 'Shop Two'; its history follows.\n")
    report = json.loads(cli("usage", "report", "--json").stdout)
    assert [(r["account"], r["emails"]) for r in report["rows"]] == [("Shop Two", 2)]
    audit = json.loads(cli("audit", "--account", "Shop Two", "--json", "--limit", "0").stdout)
    assert [(r["action"], r["account"]) for r in audit][:2] == [("account.rename", "Shop Two"),
                                                                 ("credential.create", "shop")]
    assert audit[0]["details"] == {"old": "shop", "new": "Shop Two"}
    assert out(cli("account", "show", "shop")) == (3, "", "Error: account 'shop' not found\n")


@pytest.mark.parametrize("args, code, error", [
    (["account", "rename", "shop", "other"], 4,
     "Error: account 'other' already exists (agency 'acme'); nothing was renamed\n"),
    (["account", "rename", "shop", "bad/name"], 2,
     "Error: invalid account name 'bad/name': use letters, digits, space and . _ & ' -, starting with a letter or "
     "digit\n"),
    (["account", "rename", "ghost", "new"], 3, "Error: account 'ghost' not found\n"),
    (["agency", "rename", "acme", "Other Agency"], 4, "Error: agency 'Other Agency' already exists; nothing was "
                                                      "renamed\n"),
    (["agency", "rename", "acme", ""], 2, "Error: agency name must not be empty\n"),
    (["agency", "rename", "ghost", "x"], 3, "Error: agency 'ghost' not found\n"),
])
def test_rename_refusals(cli, args, code, error):
    cli("account", "add", "other", "--agency", "acme")
    cli("agency", "add", "Other Agency")
    before = cli("audit", "--json", "--limit", "0").stdout
    assert out(cli(*args)) == (code, "", error)
    assert cli("audit", "--json", "--limit", "0").stdout == before


def test_agency_rename_json(cli):
    data = json.loads(cli("agency", "rename", "acme", "Acme Agency", "--json").stdout)
    assert (data["name"], data["status"], data["old_name"]) == ("Acme Agency", "renamed", "acme")
    assert json.loads(cli("account", "show", "shop", "--json").stdout)["agency"] == "Acme Agency"
    assert out(cli("agency", "rename", "Acme Agency", "Acme Agency")) == (
        0, "", "Agency 'Acme Agency' already has that name (unchanged).\n")


# -- remove --------------------------------------------------------------------------


def test_remove_refused_while_it_owns_something(cli):
    assert out(cli("account", "remove", "shop", "--yes")) == (
        2, "", "Error: cannot remove account 'shop': it still owns 1 dedicated domain (d.example) and 2 SMTP "
               "credentials (a@d.example, b@d.example); remove its domains first (smtpctl domain remove DOMAIN, "
               "which deletes their credentials); nothing was removed\n")
    assert out(cli("agency", "remove", "acme", "--yes")) == (
        2, "", "Error: cannot remove agency 'acme': it still owns 1 account (shop); remove its accounts and "
               "domains first (smtpctl account remove, smtpctl domain remove); nothing was removed\n")


def test_remove_needs_yes_without_a_terminal_then_removes(cli):
    assert cli("domain", "remove", "d.example", "--yes").exit_code == 0
    assert out(cli("account", "remove", "shop")) == (
        2, "", "Error: Remove account 'shop'? Refusing without --yes (no terminal to confirm on); nothing was "
               "changed\n")
    assert out(cli("account", "remove", "shop", "--yes")) == (0, "", "Account 'shop' removed.\n")
    data = json.loads(cli("agency", "remove", "acme", "--yes", "--json").stdout)
    assert (data["name"], data["status"]) == ("acme", "deleted")
    assert cli("agency", "list", "--json").stdout == "[]\n"
    actions = [r["action"] for r in json.loads(cli("audit", "--json").stdout)][:2]
    assert actions == ["agency.delete", "account.delete"]
    assert out(cli("agency", "remove", "acme", "--yes")) == (3, "", "Error: agency 'acme' not found\n")


def test_billing_history_is_never_removed(cli):
    cli("usage", "record", "--user", "a@d.example", "--recipients", "3")
    cli("domain", "remove", "d.example", "--yes")
    result = cli("account", "remove", "shop", "--yes")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: cannot remove account 'shop': it has billing history (3 emails, ")
    assert result.stderr.endswith("), which is never deleted, so it can never be removed (rename it instead: "
                                  "smtpctl account rename); nothing was removed\n")
    assert json.loads(cli("account", "show", "shop", "--json").stdout)["name"] == "shop"


@pytest.mark.parametrize("alias, documented", [
    (["agency", "delete"], "remove"), (["account", "delete"], "remove"), (["domain", "delete"], "remove"),
    (["user", "remove"], "delete"),
])
def test_the_other_verb_is_a_hidden_alias(cli, alias, documented):
    group = cli(alias[0], "--help").stdout
    assert f" {documented} " in group and f" {alias[1]} " not in group
    assert cli(*alias, "--help").exit_code == 0


def test_aliases_do_the_same(cli):
    assert out(cli("user", "remove", "a@d.example", "b@d.example", "--yes")) == (
        0, "", "SMTP credential a@d.example deleted.\nSMTP credential b@d.example deleted.\n")
    assert out(cli("domain", "delete", "d.example")) == (0, "", "Domain d.example removed; 0 credentials deleted.\n")
    assert out(cli("account", "delete", "shop", "--yes")) == (0, "", "Account 'shop' removed.\n")
    assert out(cli("agency", "delete", "acme", "--yes")) == (0, "", "Agency 'acme' removed.\n")


# -- user delete ---------------------------------------------------------------------


def test_user_delete_several_needs_yes_and_lists_them(cli):
    assert out(cli("user", "delete", "a@d.example", "b@d.example")) == (
        2, "", "Error: Delete 2 SMTP credentials (a@d.example, b@d.example)? Apps using them will stop sending. "
               "Refusing without --yes (no terminal to confirm on); nothing was changed\n")
    assert len(json.loads(cli("user", "list", "--json").stdout)) == 2


def test_user_delete_is_all_or_nothing_without_missing_ok(cli):
    assert out(cli("user", "delete", "a@d.example", "gone@d.example", "--yes")) == (
        3, "", "Error: 1 SMTP credential not found: gone@d.example; nothing was deleted (--missing-ok deletes the "
               "others)\n")
    assert out(cli("user", "delete", "gone@d.example", "--yes")) == (
        3, "", "Error: SMTP credential gone@d.example not found\n")
    assert out(cli("user", "delete", "a@d.example", "bad login", "--yes")) == (
        2, "", "Error: invalid login 'bad login': use the form name@domain\n")
    assert len(json.loads(cli("user", "list", "--json").stdout)) == 2


def test_user_delete_missing_ok_is_idempotent(cli):
    first = cli("user", "delete", "a@d.example", "gone@d.example", "b@d.example", "--missing-ok", "--yes", "--json")
    data = json.loads(first.stdout)
    assert first.exit_code == 0
    assert [(d["login"], d["status"]) for d in data] == [
        ("a@d.example", "deleted"), ("gone@d.example", "missing"), ("b@d.example", "deleted")]
    assert data[1] == {"login": "gone@d.example", "status": "missing"}
    assert set(data[0]) == {"login", "domain", "account", "agency", "hash_scheme", "created_at", "updated_at",
                            "status"}
    # Nothing left to delete: no confirmation needed, exit 0.
    assert out(cli("user", "delete", "a@d.example", "b@d.example", "--missing-ok")) == (
        0, "", "SMTP credential a@d.example does not exist (unchanged).\n"
               "SMTP credential b@d.example does not exist (unchanged).\n")


# -- store unset and set warnings ----------------------------------------------------------


def test_store_set_warns_and_unset_goes_back(cli):
    assert out(cli("store", "set", "credentials_per_domain", "8")) == (
        0, "", "Setting credentials_per_domain = 8 (updated).\n"
               "Warning: credentials_per_domain 8 departs from the service's rule of at most 5 SMTP credentials per "
               "dedicated domain\n")
    assert out(cli("store", "unset", "credentials_per_domain")) == (
        0, "", "Setting credentials_per_domain = 5 (back to the default).\n")
    assert out(cli("store", "unset", "credentials_per_domain")) == (
        0, "", "Setting credentials_per_domain = 5 (already the default; unchanged).\n")
    assert out(cli("store", "unset", "nope")) == (
        2, "", "Error: unknown setting 'nope'; known settings: smtp_host, timezone, default_daily_limit, "
               "credentials_per_domain, price_per_1000, compare_name, compare_price_per_1000, "
                   "max_recipients_per_message, sender_alignment\n")
    shown = json.loads(cli("store", "show", "--json").stdout)
    assert shown["credentials_per_domain"] == 5
    actions = [r["action"] for r in json.loads(cli("audit", "--action", "setting", "--json").stdout)]
    assert actions == ["setting.unset", "setting.set"]


def test_a_price_set_from_today_keeps_past_days_at_their_price(cli):
    from datetime import timedelta

    from smtpctl.core.model.clock import iso_z, utc_now

    past = utc_now() - timedelta(days=40)
    cli("usage", "record", "--user", "a@d.example", "--recipients", "4", "--at", iso_z(past))
    today = utc_now().date().isoformat()
    result = cli("store", "set", "price_per_1000", "0.5")
    assert (result.exit_code, result.stderr) == (0, (
        f"Setting price_per_1000 = 0.50 from today, {today} (created); earlier days keep the price they had (smtpctl "
        "billing set-price PRICE --from DATE sets a price from another day).\n"
        "Warning: price_per_1000 0.50 departs from the service's price of $0.675 per 1,000 emails\n"))
    day = past.date().isoformat()
    report = json.loads(cli("usage", "report", "--since", day, "--until", day, "--json").stdout)
    assert (report["price_per_1000"], report["total"]["cost"]) == ("0.675", "0.0027")
    assert json.loads(cli("store", "show", "--json").stdout)["price_per_1000"] == "0.5"
    back = cli("store", "unset", "price_per_1000", "--json")
    assert json.loads(back.stdout)["value"] == "0.675"


# -- unblock and set-limit ---------------------------------------------------------------


def test_unblock_over_the_limit_warns_and_set_limit_echoes(cli):
    cli("usage", "record", "--user", "a@d.example", "--recipients", "12")
    assert out(cli("account", "unblock", "shop")) == (
        0, "", "Credential creation unblocked for shop. Credentials deleted by the block are not restored; create new "
               "ones.\nWarning: shop has already sent 12 emails today, over its daily limit of 10: its next email "
               "blocks it again and revokes its SMTP credentials; raise the limit with: smtpctl account set-limit "
               "shop N\n")
    assert out(cli("account", "set-limit", "shop", "12")) == (
        0, "", "Account 'shop' daily limit set to 12 emails a day (was 10 emails).\nWarning: shop has already sent "
               "12 emails today, at its daily limit of 12: its next email blocks credential creation and revokes its "
               "SMTP credentials; raise the limit with: smtpctl account set-limit shop N\n")
    assert out(cli("account", "set-limit", "shop", "default")) == (
        0, "", "Account 'shop' daily limit set to the default (1,500 emails) a day (was 12 emails).\n")
    assert out(cli("account", "set-limit", "shop", "default")) == (
        0, "", "Account 'shop' daily limit is already the default (1,500 emails) (unchanged).\n")
    data = json.loads(cli("account", "set-limit", "shop", "5", "--json").stdout)
    assert (data["daily_limit"], data["previous_daily_limit"], data["sent_today"], len(data["warnings"])) == (
        5, None, 12, 1)


def test_every_command_in_a_message_is_shell_quoted(cli):
    """A name that needs quoting, in a core error's fix, a core notice (on
    stderr and in --json) and the CLI's own warning: each command can be
    pasted into a shell as it is printed."""
    for args in (["account", "add", "Bob's shop", "--agency", "acme", "--daily-limit", "2"],
                 ["domain", "add", "bob.example", "--account", "Bob's shop"]):
        assert cli(*args).exit_code == 0
    assert cli("user", "create", "a@bob.example", "--password-stdin", input=PW + "\n").exit_code == 0
    crossing = cli("usage", "record", "--user", "a@bob.example", "--recipients", "3")
    assert crossing.stderr.splitlines()[-1].endswith(
        "credential creation is blocked until an operator runs smtpctl account unblock 'Bob'\"'\"'s shop'")
    blocked = cli("user", "create", "b@bob.example", "--generate")
    assert (blocked.exit_code, blocked.stderr.endswith(
        "more: smtpctl account show 'Bob'\"'\"'s shop')\n")) == (6, True)
    fix = "raise the limit with: smtpctl account set-limit 'Bob'\"'\"'s shop' N"
    unblocked = cli("account", "unblock", "Bob's shop", "--json")
    assert json.loads(unblocked.stdout)["warnings"][0].endswith(fix)
    assert unblocked.stderr.endswith(fix + "\n")


# -- blocked accounts: user create and apply -----------------------------------------------


def test_user_create_on_a_blocked_account_says_which_and_why(cli):
    cli("account", "block", "shop", "--reason", "compliance review")
    assert out(cli("user", "create", "c@d.example", "--generate")) == (
        6, "", "Error: SMTP Credential creation is blocked. Please contact support… (account shop is blocked by an "
               "operator: compliance review; more: smtpctl account show shop)\n")


DOC = """
version = 1
[[accounts]]
name = "fresh"
agency = "acme"
[[domains]]
name = "f.example"
account = "fresh"
[[credentials]]
login = "new@d.example"
password_env = "NEW_PW"
[[credentials]]
login = "ok@f.example"
password_env = "NEW_PW"
"""

BLOCKED_ERROR = ("Error: SMTP Credential creation is blocked. Please contact support… (credentials[0] "
                 "new@d.example: account shop is blocked (review)); nothing was applied; --skip-blocked applies the "
                 "rest of the file; more: smtpctl account show shop\n")


@pytest.fixture
def blocked_doc(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("NEW_PW", PW)
    cli("account", "block", "shop", "--reason", "review")
    path = tmp_path / "prov.toml"
    path.write_text(DOC)
    return path


def test_apply_dry_run_prints_the_whole_plan_then_exits_6(cli, blocked_doc):
    dry = cli("apply", str(blocked_doc), "--dry-run")
    assert dry.exit_code == 6
    assert [line.replace("│", " ").split()[:3] for line in dry.stdout.splitlines()[2:]] == [
        ["create", "account", "fresh"], ["create", "domain", "f.example"], ["blocked", "credential", "new@d.example"],
        ["create", "credential", "ok@f.example"]]
    assert dry.stderr == "Plan: 3 to create, 0 to update, 0 unchanged, 0 to delete, 1 blocked.\n" + BLOCKED_ERROR
    data = json.loads(cli("apply", str(blocked_doc), "--dry-run", "--json").stdout)
    assert data["summary"] == {"create": 3, "update": 0, "unchanged": 0, "delete": 0, "blocked": 1}
    assert data["changes"][2] == {"action": "blocked", "type": "credential", "name": "new@d.example", "details": {
        "entry": "credentials[0]", "account": "shop", "block_kind": "manual", "block_reason": "review"}}
    ok = cli("apply", str(blocked_doc), "--dry-run", "--skip-blocked")
    assert ok.exit_code == 0
    assert ok.stderr.endswith("Warning: would skip 1 credential(s) on blocked accounts: new@d.example (account "
                              "shop)\n")


def test_apply_refuses_then_skip_blocked_applies_the_rest(cli, blocked_doc):
    before = cli("export").stdout
    assert out(cli("apply", str(blocked_doc))) == (6, "", BLOCKED_ERROR)
    assert cli("export").stdout == before
    done = cli("apply", str(blocked_doc), "--skip-blocked")
    assert done.exit_code == 0
    assert done.stderr == ("Applied: 3 created, 0 updated, 0 unchanged, 0 deleted, 1 blocked.\n"
                           "Warning: skipped 1 credential(s) on blocked accounts: new@d.example (account shop)\n")
    logins = [u["login"] for u in json.loads(cli("user", "list", "--json").stdout)]
    assert logins == ["a@d.example", "b@d.example", "ok@f.example"]
    assert cli("account", "unblock", "shop").exit_code == 0
    last = cli("apply", str(blocked_doc), "--json")
    assert json.loads(last.stdout)["summary"] == {"create": 1, "update": 0, "unchanged": 3, "delete": 0,
                                                  "blocked": 0}


# -- fuzz: no exit 1, no traceback, one Error line, nothing changed on failure ---------------

WORDS = st.one_of(st.sampled_from(["acme", "shop", "ACME", "Shop", "d.example", "a@d.example", "default", "-x",
                                   "--yes", "price_per_1000", "timezone", "", " "]),
                  st.text(st.characters(blacklist_categories=("Cs",)), max_size=70))
COMMANDS = st.sampled_from([
    ["agency", "rename"], ["agency", "remove"], ["agency", "delete"], ["account", "rename"], ["account", "remove"],
    ["account", "delete"], ["user", "delete"], ["user", "remove"], ["store", "unset"], ["store", "set"],
    ["account", "set-limit"], ["account", "unblock"],
])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=COMMANDS, words=st.lists(WORDS, max_size=3), flags=st.lists(
    st.sampled_from(["--missing-ok", "--json"]), max_size=2))
def test_fuzz_tidy_commands(cli, command, words, flags):
    before = cli("audit", "--json", "--limit", "0").stdout
    result = cli(*command, *words, *flags)
    assert result.exit_code in (0, 2, 3, 4), (result.exit_code, result.stderr)
    assert "Traceback" not in result.stderr
    if result.exit_code:
        assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, result.stderr
        assert cli("audit", "--json", "--limit", "0").stdout == before
