"""The README's objects, created and removed again by the installed smtpctl."""

import json

from tests.conftest import on_terminal

SESSION = [
    ["agency", "add", "acme"],
    ["account", "add", "shop", "--agency", "acme"],
    ["domain", "add", "mail.shop.example", "--account", "shop"],
    ["domain", "add", "shared.acme.example", "--agency", "acme"],
    ["user", "create", "app@mail.shop.example", "--generate"],
]

TEARDOWN = [
    ["user", "delete", "app@mail.shop.example", "--missing-ok", "--yes"],
    ["domain", "remove", "mail.shop.example", "--yes"],
    ["domain", "remove", "shared.acme.example", "--yes"],
    ["account", "remove", "shop", "--yes"],
    ["agency", "remove", "acme", "--yes"],
]


def test_quickstart_agency_is_removed(run):
    run("agency", "add", "Acme Agency", check_rc=0)
    done = run("agency", "remove", "Acme Agency", "--yes", check_rc=0)
    assert (done.stdout, done.stderr) == ("", "Agency 'Acme Agency' removed.\n")
    assert run("agency", "list", "--json", check_rc=0).stdout == "[]\n"


def test_first_session_objects_are_torn_down_in_order(run):
    for args in SESSION:
        run(*args, check_rc=0)
    refused = run("agency", "remove", "acme", "--yes")
    assert (refused.returncode, refused.stderr) == (
        2, "Error: cannot remove agency 'acme': it still owns 1 account (shop) and 1 agency-assigned domain "
           "(shared.acme.example); remove its accounts and domains first (smtpctl account remove, smtpctl domain "
           "remove); nothing was removed\n")
    for args in TEARDOWN:
        run(*args, check_rc=0)
    counts = json.loads(run("store", "info", "--json", check_rc=0).stdout)["counts"]
    assert (counts["agencies"], counts["accounts"], counts["domains"], counts["credentials"]) == (0, 0, 0, 0)
    actions = [r["action"] for r in json.loads(run("audit", "--json", "--limit", "5", check_rc=0).stdout)]
    assert actions == ["agency.delete", "account.delete", "domain.delete", "domain.delete", "credential.delete"]
    # CI runs its teardown again: the credential step is idempotent.
    again = run(*TEARDOWN[0], check_rc=0)
    assert again.stderr == "SMTP credential app@mail.shop.example does not exist (unchanged).\n"


def test_after_usage_the_account_stays_and_can_be_renamed(run):
    for args in SESSION:
        run(*args, check_rc=0)
    run("usage", "record", "--user", "app@mail.shop.example", "--to", "a@example.net", "--cc", "b@example.net",
        check_rc=0)
    for args in TEARDOWN[:3]:
        run(*args, check_rc=0)
    refused = run("account", "remove", "shop", "--yes")
    assert refused.returncode == 2
    assert "it has billing history (2 emails, " in refused.stderr and "never deleted" in refused.stderr
    run("account", "rename", "shop", "shop-archived", check_rc=0)
    report = json.loads(run("usage", "report", "--json", check_rc=0).stdout)
    assert [(r["account"], r["emails"]) for r in report["rows"]] == [("shop-archived", 2)]


def test_terminal_confirms_a_removal(run):
    run("agency", "add", "Acme Agency", check_rc=0)
    rc, screen = on_terminal(["agency", "remove", "Acme Agency"], [("[y/N]:", "n")])
    assert rc == 2 and "Remove agency 'Acme Agency'?" in screen and "not confirmed; nothing was changed" in screen
    assert len(json.loads(run("agency", "list", "--json", check_rc=0).stdout)) == 1
    rc, screen = on_terminal(["agency", "remove", "Acme Agency"], [("[y/N]:", "y")])
    assert rc == 0 and "Agency 'Acme Agency' removed." in screen
