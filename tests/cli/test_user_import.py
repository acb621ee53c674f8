"""smtpctl user import and apply's password_hash: exact output, exit codes, no hash ever printed."""

import json

import pytest

from tests.real_hashes import PW, doveadm_hash, mkpasswd_hash


@pytest.fixture
def world(cli):
    for args in (("agency", "add", "acme"), ("account", "add", "shop", "--agency", "acme"),
                 ("domain", "add", "d.example", "--account", "shop"),
                 ("domain", "add", "shared.example", "--agency", "acme")):
        assert cli(*args).exit_code == 0


def bare(made: str) -> str:
    return made.split("}", 1)[1] if made.startswith("{") else made


def test_dovecot_import_table_summary_and_exit_codes(cli, world, tmp_path):
    sha, blf = doveadm_hash("SHA512-CRYPT"), doveadm_hash("BLF-CRYPT")
    src = tmp_path / "users"
    src.write_text(f"# from mail1\n\na@d.example:{sha}:5000:5000::/var/vmail/a::\nb@d.example:{blf}\n")
    dry = cli("user", "import", str(src), "--format", "dovecot", "--dry-run")
    assert dry.exit_code == 0
    assert dry.stdout.splitlines()[0].split() == ["Line", "┃", "Login", "┃", "Status", "┃", "Hash"]
    assert "a@d.example │ would be created │ sha512-crypt" in dry.stdout
    assert dry.stderr == "Plan: 2 created, 0 updated, 0 unchanged, 0 lines rejected (nothing was written).\n"
    assert json.loads(cli("user", "list", "--json").stdout) == []
    done = cli("user", "import", str(src), "--format", "dovecot")
    assert (done.exit_code, done.stderr) == (0, "Imported: 2 created, 0 updated, 0 unchanged, 0 lines rejected.\n")
    assert "b@d.example │ created │ bcrypt" in done.stdout
    again = cli("user", "import", str(src), "--format", "dovecot")
    assert (again.exit_code, again.stdout, again.stderr) == (
        0, "", "Nothing to change.\nImported: 0 created, 0 updated, 2 unchanged, 0 lines rejected.\n")
    users = {u["login"]: u["hash_scheme"] for u in json.loads(cli("user", "list", "--json").stdout)}
    assert users == {"a@d.example": "sha512-crypt", "b@d.example": "bcrypt"}
    for out in (dry, done, again):
        assert bare(sha) not in out.stdout + out.stderr and bare(blf) not in out.stdout + out.stderr


def test_rejected_lines_exit_2_and_good_lines_are_kept(cli, world, tmp_path):
    sha = mkpasswd_hash("sha-512")
    src = tmp_path / "postfix-accounts.cf"
    src.write_text(f"ok@d.example|{{SHA512-CRYPT}}{sha}\nx@nowhere.example|{{SHA512-CRYPT}}{sha}\n"
                   f"y@shared.example|{sha}\nz@d.example|{{PLAIN}}{PW}\n")
    result = cli("user", "import", str(src), "--format", "dms", "--json")
    assert result.exit_code == 2
    assert json.loads(result.stdout) == {
        "format": "dms", "dry_run": False, "created": 1, "updated": 0, "unchanged": 0, "lines_rejected": 3,
        "logins": [{"line": 1, "login": "ok@d.example", "status": "created", "hash_scheme": "sha512-crypt"}],
        "rejected": [
            {"line": 2, "login": "x@nowhere.example",
             "reason": "domain nowhere.example does not exist (smtpctl domain add nowhere.example --account ACCOUNT)"},
            {"line": 3, "login": "y@shared.example",
             "reason": "shared.example is an agency-assigned domain; SMTP credentials live on a sub-account's "
                       "dedicated domain"},
            {"line": 4, "login": "z@d.example",
             "reason": "the {PLAIN} scheme is not accepted; smtpctl adopts argon2id, argon2i, bcrypt ($2y$, $2b$, "
                       "$2a$), SHA512-CRYPT ($6$) and SHA256-CRYPT ($5$) hashes (give this login a new password "
                       "instead)"}]}
    assert result.stderr == "Error: 3 lines rejected (in the JSON summary); every other line was imported\n"
    assert PW not in result.stdout and sha not in result.stdout
    people = cli("user", "import", str(src), "--format", "dms")
    assert people.exit_code == 2
    assert people.stderr.splitlines()[:4] == [
        "Nothing to change.",
        "Imported: 0 created, 0 updated, 1 unchanged, 3 lines rejected.",
        "  line 2: x@nowhere.example: domain nowhere.example does not exist (smtpctl domain add nowhere.example "
        "--account ACCOUNT)",
        "  line 3: y@shared.example: shared.example is an agency-assigned domain; SMTP credentials live on a "
        "sub-account's dedicated domain"]
    assert people.stderr.splitlines()[-1] == "Error: 3 lines rejected (listed above); every other line was imported"
    dry = cli("user", "import", str(src), "--format", "dms", "--dry-run")
    assert (dry.exit_code, dry.stderr.splitlines()[-1]) == (
        2, "Error: 3 lines rejected (listed above); nothing was written")
    assert PW not in people.stderr


def test_another_password_needs_update(cli, world, tmp_path):
    first, second = tmp_path / "one", tmp_path / "two"
    first.write_text(f"a@d.example:{doveadm_hash('SHA256-CRYPT')}\n")
    second.write_text(f"a@d.example:{doveadm_hash('SHA256-CRYPT', 'Another-Password-99')}\n")
    assert cli("user", "import", str(first), "--format", "dovecot").exit_code == 0
    refused = cli("user", "import", str(second), "--format", "dovecot")
    assert (refused.exit_code, refused.stderr) == (
        2, "Nothing to change.\nImported: 0 created, 0 updated, 0 unchanged, 1 line rejected.\n"
           "  line 1: a@d.example: exists with another password (--update replaces it)\n"
           "Error: 1 line rejected (listed above); every other line was imported\n")
    updated = cli("user", "import", str(second), "--format", "dovecot", "--update")
    assert (updated.exit_code, updated.stderr) == (0, "Imported: 0 created, 1 updated, 0 unchanged, 0 lines rejected.\n")
    verify = cli("user", "verify", "a@d.example", "--password-stdin", "--json", input="Another-Password-99\n")
    assert (verify.exit_code, json.loads(verify.stdout)) == (
        0, {"login": "a@d.example", "match": True, "hash_scheme": "argon2id"})
    entry = json.loads(cli("audit", "--action", "credential.rehash", "--json").stdout)[0]
    assert (entry["object_name"], entry["details"]) == ("a@d.example", {"from": "sha256-crypt", "to": "argon2id"})


def test_stdin_and_bad_invocations(cli, world, tmp_path):
    ok = cli("user", "import", "-", "--format", "dovecot", "--json",
             input=f"a@d.example:{doveadm_hash('ARGON2ID')}\n")
    assert (ok.exit_code, json.loads(ok.stdout)["created"]) == (0, 1)
    missing = cli("user", "import", str(tmp_path / "nope"), "--format", "dovecot")
    assert (missing.exit_code, missing.stderr) == (2, f"Error: cannot read the accounts file {tmp_path / 'nope'}: No such file or directory\n")
    binary = tmp_path / "bin"
    binary.write_bytes(b"\xff\xfe\x00")
    assert cli("user", "import", str(binary), "--format", "dms").stderr == f"Error: {binary} is not UTF-8 text\n"
    wrong = cli("user", "import", str(binary), "--format", "mailu")
    assert wrong.exit_code == 2 and wrong.stderr.startswith("Error: Invalid value for '--format'")
    no_format = cli("user", "import", str(binary))
    assert no_format.exit_code == 2 and "--format" in no_format.stderr


def test_apply_password_hash_end_to_end_through_the_cli(cli, world, tmp_path):
    blf = doveadm_hash("BLF-CRYPT")
    doc = tmp_path / "p.toml"
    doc.write_text(f'[[credentials]]\nlogin = "app@d.example"\npassword_hash = "{blf}"\n')
    created = cli("apply", str(doc), "--json")
    assert (created.exit_code, json.loads(created.stdout)["changes"]) == (
        0, [{"action": "create", "type": "credential", "name": "app@d.example", "details": {"password": "hash:bcrypt"}}])
    assert cli("user", "verify", "app@d.example", "--password-stdin", input=PW + "\n").exit_code == 0
    again = cli("apply", str(doc))
    assert (again.exit_code, again.stderr) == (0, "Nothing to change.\nApplied: 0 created, 0 updated, 1 unchanged, "
                                                  "0 deleted.\n")
    doc.write_text('[[credentials]]\nlogin = "app@d.example"\npassword_hash = "{MD5}5f4dcc3b5aa765d61d8327deb882cf99"\n')
    refused = cli("apply", str(doc))
    assert (refused.exit_code, refused.stdout) == (2, "")
    assert refused.stderr.startswith("Error: credentials[0] app@d.example: the {MD5} scheme is not accepted")
    assert "5f4dcc3b" not in refused.stderr
    for output in (created, again):
        assert bare(blf) not in output.stdout + output.stderr


# -- issue 23 item 6: every read of an import is bounded ---------------------------------------

def _limited_run(args, stdin):
    """The installed smtpctl in a real process under a 1 GiB address-space limit:
    an unbounded read of /dev/zero would die with MemoryError (exit 1) here."""
    import resource
    import subprocess

    from tests.conftest import smtpctl_binary

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    return subprocess.run([smtpctl_binary(), *args], stdin=stdin, capture_output=True, timeout=60, preexec_fn=limit)


@pytest.mark.parametrize("source", ["/dev/zero", "-"])
def test_user_import_of_an_endless_input_fails_with_one_line_and_changes_nothing(cli, world, source):
    before = cli("user", "list", "--json").stdout
    with open("/dev/zero", "rb") as stdin:
        proc = _limited_run(["user", "import", source, "--format", "dovecot"], stdin)
    where = "/dev/zero" if source != "-" else "on stdin"
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        2, b"", f"Error: the accounts file {where} is larger than 67,108,864 bytes\n".encode())
    assert cli("user", "list", "--json").stdout == before


def test_apply_of_an_endless_stdin_fails_with_one_line(cli, world):
    with open("/dev/zero", "rb") as stdin:
        proc = _limited_run(["apply", "-", "--dry-run"], stdin)
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        2, b"", b"Error: the document on stdin is larger than 67,108,864 bytes\n")


def test_an_overlong_line_is_rejected_unquoted_and_the_rest_imported(cli, world, tmp_path):
    sha = mkpasswd_hash("sha-512")
    secret_tail = "S" * 70_000
    src = tmp_path / "users"
    src.write_text(f"long@d.example:{sha}:{secret_tail}\nok@d.example:{sha}\n")
    result = cli("user", "import", str(src), "--format", "dovecot", "--json")
    assert result.exit_code == 2
    data = json.loads(result.stdout)
    assert (data["created"], data["lines_rejected"]) == (1, 1)
    assert data["rejected"] == [{"line": 1, "login": "", "reason":
                                 f"line of {len(src.read_text().splitlines()[0]):,} characters is longer than 65,536"}]
    assert "SSSS" not in result.stdout + result.stderr and bare(sha) not in result.stdout + result.stderr
    assert [u["login"] for u in json.loads(cli("user", "list", "--json").stdout)] == ["ok@d.example"]
