"""The credential commands: exact exit codes and output for every refusal."""

import json

import pytest

PW = "a good long password"


@pytest.fixture(autouse=True)
def world(cli):
    for args in (["agency", "add", "acme"], ["account", "add", "shop", "--agency", "acme"],
                 ["domain", "add", "d.example", "--account", "shop"],
                 ["domain", "add", "shared.example", "--agency", "acme"]):
        assert cli(*args).exit_code == 0


def create(cli, login, password=PW, *extra):
    return cli("user", "create", login, "--password-stdin", *extra, input=password + "\n")


def test_create_from_stdin(cli):
    result = create(cli, "Alice@D.example")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "SMTP credential alice@d.example created.\n")


def test_create_generate_prints_the_password_once_on_stdout(cli):
    result = cli("user", "create", "bot@d.example", "--generate")
    assert result.exit_code == 0
    password = result.stdout.strip()
    assert len(password) == 32 and password.isalnum() and result.stdout == password + "\n"
    assert result.stderr == ("SMTP credential bot@d.example created.\n"
                             "Generated password (shown once; store it now):\n")
    ok = cli("user", "verify", "bot@d.example", "--password-stdin", input=password + "\n")
    assert (ok.exit_code, ok.stderr) == (0, "Password matches bot@d.example.\n")
    shown = cli("user", "show", "bot@d.example", "--json")
    assert password not in shown.stdout


def test_create_generate_json(cli):
    data = json.loads(cli("user", "create", "bot@d.example", "--generate", "--json").stdout)
    assert set(data) == {"login", "domain", "account", "agency", "hash_scheme", "created_at", "updated_at",
                         "status", "password"}
    assert (data["status"], data["hash_scheme"], len(data["password"])) == ("created", "argon2id", 32)


def test_password_file(cli, tmp_path):
    secret = tmp_path / "pw"
    secret.write_text(PW + "\n")
    assert cli("user", "create", "a@d.example", "--password-file", str(secret)).exit_code == 0
    ok = cli("user", "verify", "a@d.example", "--password-file", str(secret))
    assert ok.exit_code == 0


def test_only_the_trailing_newline_is_stripped(cli):
    assert create(cli, "a@d.example", PW + " ").exit_code == 0
    assert cli("user", "verify", "a@d.example", "--password-stdin", input=PW + "\n").exit_code == 8
    assert cli("user", "verify", "a@d.example", "--password-stdin", input=PW + " \n").exit_code == 0


@pytest.mark.parametrize("args, stdin, code, error", [
    (["user", "create", "a@nope.example", "--generate"], None, 3, "Error: domain 'nope.example' not found\n"),
    (["user", "create", "a@shared.example", "--generate"], None, 2,
     "Error: shared.example is an agency-assigned domain; SMTP credentials live on a sub-account's dedicated "
     "domain (smtpctl domain add DOMAIN --account ACCOUNT)\n"),
    (["user", "create", "taken@d.example", "--generate"], None, 4,
     "Error: SMTP credential taken@d.example already exists\n"),
    (["user", "create", "a@d.example"], None, 2,
     "Error: no password given and no terminal to prompt on: use --password-stdin, --password-file PATH or "
     "--generate\n"),
    (["user", "create", "a@d.example", "--generate", "--password-stdin"], "x\n", 2,
     "Error: give only one of --password-stdin, --password-file PATH or --generate\n"),
    (["user", "create", "a@d.example", "--password-stdin"], "tiny\n", 2,
     "Error: the password is too short: it needs at least 12 characters\n"),
    (["user", "create", "a@d.example", "--password-stdin"], "line one is long\nline two\n", 2,
     "Error: the password input has more than one line; give exactly one line\n"),
    (["user", "create", "a@d.example", "--password-stdin"], "", 2,
     "Error: --password-stdin was given but stdin was empty\n"),
    (["user", "create", "a@d.example", "--password", "secret-on-argv"], None, 2,
     "Error: No such option: --password (Possible options: --password-file, --password-stdin)\n"),
    (["user", "create", "no-at-sign", "--generate"], None, 2,
     "Error: invalid login 'no-at-sign': use the form name@domain\n"),
    (["user", "verify", "taken@d.example", "--generate"], None, 2, "Error: No such option: --generate\n"),
    (["user", "verify", "ghost@d.example", "--password-stdin"], PW + "\n", 3,
     "Error: SMTP credential ghost@d.example not found\n"),
    (["user", "verify", "taken@d.example", "--password-stdin"], "wrong password!!\n", 8,
     "Error: the password does not match taken@d.example\n"),
    (["user", "reset", "ghost@d.example", "--generate"], None, 3, "Error: SMTP credential ghost@d.example not found\n"),
    (["user", "delete", "taken@d.example"], None, 2,
     "Error: Delete SMTP credential taken@d.example? Apps using it will stop sending. Refusing without --yes "
     "(no terminal to confirm on); nothing was changed\n"),
    (["user", "show", "ghost@d.example"], None, 3, "Error: SMTP credential ghost@d.example not found\n"),
    (["settings", "ghost@d.example"], None, 3, "Error: SMTP credential ghost@d.example not found\n"),
    (["settings", "--format", "env", "--port", "26"], None, 2, "Error: --port must be one of 25, 465, 587, 2525\n"),
    (["imap", "lookup", "hotmail"], None, 3,
     "Error: no IMAP settings for 'hotmail'; known providers: Gmail, Verizon, AOL, Amazon WorkMail, HostGator, "
     "IONOS, KingHost, Rackspace, TransIP, Bluehost, Titan, DreamHost, InMotion\n"),
])
def test_refusals(cli, args, stdin, code, error):
    assert create(cli, "taken@d.example").exit_code == 0
    before = cli("user", "list", "--json").stdout
    result = cli(*args, input=stdin)
    assert (result.exit_code, result.stdout, result.stderr) == (code, "", error)
    assert cli("user", "list", "--json").stdout == before


def test_sixth_credential_exits_5_naming_the_five(cli):
    for i in range(5):
        assert create(cli, f"u{i}@d.example").exit_code == 0
    result = create(cli, "u5@d.example")
    assert (result.exit_code, result.stdout) == (5, "")
    assert result.stderr == ("Error: d.example already holds 5 SMTP credentials, the most a domain may hold (5): "
                             "u0@d.example, u1@d.example, u2@d.example, u3@d.example, u4@d.example; "
                             "delete one first\n")


def test_blocked_account_exits_6_with_the_services_message(cli, isolated_store):
    from smtpctl.core.store import Store

    with Store.open(isolated_store) as store, store.write():
        store.execute("UPDATE accounts SET blocked_at = '2026-11-26T00:00:00Z', block_kind = 'manual', "
                      "block_reason = 'compliance'")
    result = cli("user", "create", "a@d.example", "--generate")
    assert (result.exit_code, result.stdout, result.stderr) == (
        6, "", "Error: SMTP Credential creation is blocked. Please contact support… (account shop is blocked by "
                "an operator: compliance; more: smtpctl account show shop)\n")


def test_exist_ok_leaves_password_and_prints_no_secret(cli):
    create(cli, "a@d.example")
    again = cli("user", "create", "a@d.example", "--generate", "--exist-ok")
    assert (again.exit_code, again.stdout) == (0, "")
    assert again.stderr == "SMTP credential a@d.example already exists (unchanged; password left as it is).\n"
    as_json = json.loads(cli("user", "create", "a@d.example", "--generate", "--exist-ok", "--json").stdout)
    assert as_json["status"] == "unchanged" and "password" not in as_json
    assert cli("user", "verify", "a@d.example", "--password-stdin", input=PW + "\n").exit_code == 0


def test_reset_and_delete(cli):
    create(cli, "a@d.example")
    reset = cli("user", "reset", "a@d.example", "--generate", "--json")
    new = json.loads(reset.stdout)["password"]
    assert json.loads(reset.stdout)["status"] == "updated"
    assert cli("user", "verify", "a@d.example", "--password-stdin", input=PW + "\n").exit_code == 8
    assert cli("user", "verify", "a@d.example", "--password-stdin", input=new + "\n").exit_code == 0
    deleted = cli("user", "delete", "a@d.example", "--yes")
    assert (deleted.exit_code, deleted.stderr) == (0, "SMTP credential a@d.example deleted.\n")
    assert cli("user", "list", "--json").stdout == "[]\n"


def test_list_filters(cli):
    cli("account", "add", "other", "--agency", "acme")
    cli("domain", "add", "o.example", "--account", "other")
    create(cli, "a@d.example")
    create(cli, "b@o.example")
    logins = lambda *f: [c["login"] for c in json.loads(cli("user", "list", "--json", *f).stdout)]  # noqa: E731
    assert logins() == ["a@d.example", "b@o.example"]
    assert logins("--domain", "o.example") == ["b@o.example"]
    assert logins("--account", "shop") == ["a@d.example"]
    assert logins("--agency", "acme") == ["a@d.example", "b@o.example"]
    csv_lines = cli("user", "list", "--csv").stdout.splitlines()
    assert csv_lines[0] == "login,domain,account,agency,hash_scheme,created_at,updated_at"
    assert cli("user", "list", "--domain", "nope.example").exit_code == 3


def test_show_includes_settings(cli):
    create(cli, "a@d.example")
    data = json.loads(cli("user", "show", "a@d.example", "--json").stdout)
    assert data["settings"]["username"] == "a@d.example"
    assert data["settings"]["host"] == "smtp.mailgun.org"
    assert "password_hash" not in json.dumps(data) and "$argon2" not in json.dumps(data)
    table = cli("user", "show", "a@d.example").stdout
    assert "smtp.mailgun.org" in table and "587 (recommended)" in table


def test_remove_domain_with_credentials_needs_yes(cli):
    create(cli, "a@d.example")
    create(cli, "b@d.example")
    refused = cli("domain", "remove", "d.example")
    assert (refused.exit_code, refused.stderr) == (
        2, "Error: Remove domain d.example and delete its 2 SMTP credentials? Refusing without --yes "
           "(no terminal to confirm on); nothing was changed\n")
    assert len(json.loads(cli("user", "list", "--json").stdout)) == 2
    done = cli("domain", "remove", "d.example", "--yes")
    assert (done.exit_code, done.stderr) == (0, "Domain d.example removed; 2 credentials deleted.\n")
    assert cli("user", "list", "--json").stdout == "[]\n"


def test_settings_formats(cli, tmp_path):
    create(cli, "a@d.example")
    env = cli("settings", "a@d.example", "--format", "env")
    assert env.stdout == ("SMTP_HOST=smtp.mailgun.org\nSMTP_PORT=587\nSMTP_SECURITY=starttls\n"
                          "SMTP_USERNAME=a@d.example\n")
    assert cli("settings", "--format", "env", "--port", "465").stdout.splitlines()[1:3] == [
        "SMTP_PORT=465", "SMTP_SECURITY=tls"]
    import tomllib

    data = tomllib.loads(cli("settings", "a@d.example", "--format", "toml").stdout)
    assert data["host"] == "smtp.mailgun.org" and data["username"] == "a@d.example"
    assert [p["port"] for p in data["ports"]] == [25, 465, 587, 2525]
    as_json = json.loads(cli("settings", "--json").stdout)
    assert set(as_json) == {"host", "username", "recommended_port", "ports"} and as_json["username"] is None
    cli("store", "set", "smtp_host", "smtp.example.net")
    assert cli("settings", "--format", "env").stdout.startswith("SMTP_HOST=smtp.example.net\n")


def test_imap(cli):
    data = json.loads(cli("imap", "lookup", "GMAIL", "--json").stdout)
    assert (data["host"], data["port"], data["password"]) == ("imap.gmail.com", 993, "an app password")
    assert "no IMAP or POP" in data["note_service"]
    listed = json.loads(cli("imap", "list", "--json").stdout)
    assert [(p["provider"], p["port"]) for p in listed[:3]] == [("Gmail", 993), ("Verizon", 995), ("AOL", 993)]
    assert len(listed) == 13
    table = cli("imap", "list")
    assert "SMTP credentials are not IMAP credentials" in table.stderr
