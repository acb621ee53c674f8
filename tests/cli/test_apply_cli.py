"""apply, export and audit: exact exit codes and output; secrets never shown."""

import json
import stat
import tomllib

import pytest

PW = "a long ci password"

DOC = """
version = 1
[[agencies]]
name = "acme"
[[accounts]]
name = "shop"
agency = "acme"
[[domains]]
name = "d.example"
account = "shop"
[[credentials]]
login = "app@d.example"
generate = true
[[credentials]]
login = "ci@d.example"
password_env = "CI_PW"
"""


@pytest.fixture
def doc(tmp_path, monkeypatch):
    monkeypatch.setenv("CI_PW", PW)
    path = tmp_path / "prov.toml"
    path.write_text(DOC)
    return path


def test_dry_run_then_apply_then_unchanged(cli, doc, tmp_path):
    secrets = tmp_path / "secrets.toml"
    dry = cli("apply", str(doc), "--dry-run", "--json", "--secrets-out", str(secrets))
    data = json.loads(dry.stdout)
    assert (dry.exit_code, data["dry_run"], data["summary"]) == (
        0, True, {"create": 5, "update": 0, "unchanged": 0, "delete": 0, "blocked": 0})
    assert cli("agency", "list", "--json").stdout == "[]\n"
    assert not secrets.exists()
    applied = cli("apply", str(doc), "--secrets-out", str(secrets))
    assert applied.exit_code == 0
    assert applied.stderr == ("Applied: 5 created, 0 updated, 0 unchanged, 0 deleted.\n"
                              f"Generated passwords for 1 credential(s) are in {secrets} (mode 0600).\n")
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    password = tomllib.loads(secrets.read_text())["passwords"]["app@d.example"]
    assert password not in applied.stdout + applied.stderr
    assert PW not in applied.stdout + applied.stderr
    audit = cli("audit", "--json", "--limit", "0").stdout
    assert password not in audit and PW not in audit
    ok = cli("user", "verify", "app@d.example", "--password-stdin", input=password + "\n")
    assert ok.exit_code == 0
    again = cli("apply", str(doc))
    assert (again.exit_code, again.stdout) == (0, "")
    assert again.stderr == "Nothing to change.\nApplied: 0 created, 0 updated, 5 unchanged, 0 deleted.\n"


def test_generated_passwords_need_somewhere_to_go(cli, doc, isolated_store):
    error = "Error: the plan generates 1 password(s); give --secrets-out PATH to keep them (they are never printed)\n"
    result = cli("apply", str(doc))
    assert (result.exit_code, result.stderr) == (2, error)
    if not isinstance(isolated_store, str):  # a refused run leaves no empty store file behind
        assert not isolated_store.exists() and not isolated_store.parent.exists()
    # the dry run refuses what the real run refuses, after printing the plan
    dry = cli("apply", str(doc), "--dry-run")
    assert (dry.exit_code, dry.stderr) == (2, "Plan: 5 to create, 0 to update, 0 unchanged, 0 to delete.\n" + error)
    assert "create │ credential │ app@d.example" in dry.stdout
    dry_json = cli("apply", str(doc), "--dry-run", "--json")
    assert (dry_json.exit_code, dry_json.stderr, json.loads(dry_json.stdout)["summary"]["create"]) == (2, error, 5)
    assert cli("agency", "list", "--json").stdout == "[]\n"


def test_secrets_out_json_and_no_overwrite(cli, doc, tmp_path):
    out = tmp_path / "s.json"
    out.write_text("{}")
    refused = cli("apply", str(doc), "--secrets-out", str(out))
    assert (refused.exit_code, refused.stderr) == (
        4, f"Error: --secrets-out {out} already exists; move it away or choose another path\n")
    out.unlink()
    result = cli("apply", str(doc), "--secrets-out", str(out), "--json")
    assert json.loads(result.stdout)["secrets_out"] == str(out)
    assert set(json.loads(out.read_text())["passwords"]) == {"app@d.example"}


def test_literal_password_is_refused(cli, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[credentials]]\nlogin = "a@d.example"\npassword = "hunter2hunter2"\n')
    result = cli("apply", str(bad))
    assert result.exit_code == 2
    assert result.stderr == ("Error: credentials[0] a@d.example: a literal password is refused; use password_env, "
                             "password_file, password_hash or generate = true\n")
    assert "hunter2" not in result.stderr


def test_rule_breaking_file_exits_with_the_rules_code(cli, doc, tmp_path):
    five = DOC + "".join(f'[[credentials]]\nlogin = "u{i}@d.example"\ngenerate = true\n' for i in range(4))
    path = tmp_path / "six.toml"
    path.write_text(five)
    result = cli("apply", str(path), "--secrets-out", str(tmp_path / "s.toml"))
    assert (result.exit_code, result.stderr) == (
        5, "Error: credentials[5] u3@d.example: d.example would hold 6 SMTP credentials; the most a domain may hold "
           "is 5\n")
    assert cli("agency", "list", "--json").stdout == "[]\n"
    assert not (tmp_path / "s.toml").exists()


def test_prune_needs_yes_without_a_terminal(cli, doc, tmp_path):
    cli("apply", str(doc), "--secrets-out", str(tmp_path / "s1.toml"))
    cli("user", "create", "stray@d.example", "--password-stdin", input=PW + "\n")
    dry = json.loads(cli("apply", str(doc), "--prune", "--dry-run", "--json").stdout)
    assert [(c["action"], c["name"]) for c in dry["changes"] if c["action"] != "unchanged"] == [
        ("would-delete", "stray@d.example")]
    refused = cli("apply", str(doc), "--prune")
    assert (refused.exit_code, refused.stderr) == (
        2, "Error: --prune will delete 1 object(s): credential stray@d.example. Refusing without --yes (no terminal "
           "to confirm on); nothing was changed\n")
    done = cli("apply", str(doc), "--prune", "--yes")
    assert done.exit_code == 0 and "1 deleted" in done.stderr
    assert cli("user", "show", "stray@d.example").exit_code == 3


def test_apply_from_stdin(cli, monkeypatch):
    result = cli("apply", "-", "--json", input='[[agencies]]\nname = "piped"\n')
    assert json.loads(result.stdout)["summary"]["create"] == 1


def test_export_formats_round_trip(cli, doc, tmp_path):
    cli("apply", str(doc), "--secrets-out", str(tmp_path / "s.toml"))
    exported = cli("export").stdout
    data = tomllib.loads(exported)
    assert data["credentials"] == [{"login": "app@d.example", "generate": True},
                                   {"login": "ci@d.example", "generate": True}]
    assert json.loads(cli("export", "--format", "json").stdout) == data
    dovecot = cli("export", "--format", "dovecot").stdout.splitlines()
    assert [line.split(":")[0] for line in dovecot] == ["app@d.example", "ci@d.example"]
    assert all(line.split(":", 1)[1].startswith("{ARGON2ID}$argon2id$") for line in dovecot)
    out = tmp_path / "passwd"
    written = cli("export", "--format", "dovecot", "--output", str(out))
    assert (written.exit_code, written.stdout, written.stderr) == (0, "", f"Wrote {out} (2 credentials).\n")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and out.read_text().splitlines() == dovecot
    re_applied = cli("apply", "-", input=exported)
    assert re_applied.exit_code == 0 and "5 unchanged" in re_applied.stderr


def test_audit_filters(cli, doc, tmp_path, monkeypatch):
    cli("apply", str(doc), "--secrets-out", str(tmp_path / "s.toml"))
    monkeypatch.setenv("SMTPCTL_ACTOR", "alice")
    cli("account", "set-limit", "shop", "50")
    rows = json.loads(cli("audit", "--json").stdout)
    assert rows[0]["action"] == "account.set_limit" and rows[0]["actor"] == "alice"
    assert [r["id"] for r in rows] == sorted((r["id"] for r in rows), reverse=True)
    assert set(rows[0]) == {"id", "at", "actor", "action", "object_type", "object_name", "account", "details"}
    creds = json.loads(cli("audit", "--action", "credential", "--json").stdout)
    assert [r["object_name"] for r in creds] == ["ci@d.example", "app@d.example"]
    assert json.loads(cli("audit", "--actor", "alice", "--json").stdout)[0]["details"] == {"old": None, "new": 50,
                                                                                          "default_daily_limit": 1500}
    assert len(json.loads(cli("audit", "--account", "shop", "--limit", "2", "--json").stdout)) == 2
    assert json.loads(cli("audit", "--since", "2999-01-01", "--json").stdout) == []
    assert len(json.loads(cli("audit", "--until", "2999-01-01", "--json", "--limit", "0").stdout)) == 6
    csv_lines = cli("audit", "--csv", "--limit", "1").stdout.splitlines()
    assert csv_lines[0] == "id,at,actor,action,object_type,object_name,account,details"
    bad = cli("audit", "--since", "last week")
    assert (bad.exit_code, bad.stderr) == (
        2, "Error: invalid date or time 'last week': use 2026-11-26, today, yesterday, 7d (7 days ago) "
           "or 2026-11-26T10:00:00Z\n")
