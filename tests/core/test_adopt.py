"""Adopting password hashes made by Dovecot and mkpasswd: parse, import, rehash at verify."""

import json
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smtpctl.core.directory.accounts import add_account
from smtpctl.core.directory.agencies import add_agency
from smtpctl.core.directory.audit import audit_entries
from smtpctl.core.directory.credentials import create_credential, reset_credential, verify_credential
from smtpctl.core.directory.domains import add_domain
from smtpctl.core.metering.enforcement import block_account
from smtpctl.core.model import passwords
from smtpctl.core.model.errors import AuthFailed, InvalidInput
from smtpctl.core.provisioning import adopt
from smtpctl.core.provisioning import apply as provisioning
from smtpctl.core.store import Store
from tests.real_hashes import MAKERS, PW, REFUSED_MAKERS, doveadm_hash, mkpasswd_hash


@pytest.fixture
def store(store_at):
    with Store.open(store_at) as s:
        add_agency(s, "acme")
        add_account(s, "shop", "acme")
        add_domain(s, "d.example", account="shop")
        add_domain(s, "shared.example", agency="acme")
        yield s


def audit(store, action):
    return [(r["object_name"], r["details"]) for r in reversed(audit_entries(store, action=action, limit=0))]


# -- adopt_hash ----------------------------------------------------------------


@pytest.mark.parametrize("label, make, scheme", MAKERS, ids=[m[0] for m in MAKERS])
def test_real_hashes_are_adopted_with_and_without_prefix_and_rehash_at_verify(label, make, scheme):
    made = make()
    bare = made.split("}", 1)[1] if made.startswith("{") else made
    assert passwords.adopt_hash(made) == bare
    assert passwords.adopt_hash(bare) == bare
    assert passwords.scheme_of(bare) == scheme
    assert passwords.verify_password("wrong " + PW, bare) == (False, None)
    ok, new_hash = passwords.verify_password(PW, bare)
    assert ok and new_hash.startswith("$argon2id$v=19$m=32768,t=2,p=1$")
    assert passwords.verify_password(PW, new_hash) == (True, None)


@pytest.mark.parametrize("label, make", REFUSED_MAKERS, ids=[m[0] for m in REFUSED_MAKERS])
def test_hashes_of_other_schemes_are_refused_without_echo(label, make):
    made = make()
    with pytest.raises(InvalidInput) as err:
        passwords.adopt_hash(made)
    text = str(err.value)
    assert "not accepted" in text or "not a password hash smtpctl adopts" in text
    body = made.split("}", 1)[-1]
    assert body not in text and PW not in text


@pytest.mark.parametrize("text, reason", [
    ("{PLAIN}" + PW, "the {PLAIN} scheme is not accepted"),
    ("{MD5}x", "the {MD5} scheme is not accepted"),
    ("{SHA512-CRYPT", "malformed {SCHEME} prefix"),
    ("", "not a password hash smtpctl adopts"),
    (PW, "not a password hash smtpctl adopts"),
    ("$6$saltsalt$tooshort", "a malformed sha512-crypt hash"),
    ("$argon2d$v=19$m=65536,t=3,p=1$JbQU24SRdNMEfTcgM4vALA$brN6M/obxrDyvk45fgeNAqC2TI4fjTW18yeIM/sGlNY",
     "argon2d hashes are not accepted"),
    ("$2x$05$X6vbOzH8jDEe7laESFfK..YKzQXSWq3IjNJeShQadhsHRPTu8of02", "a malformed bcrypt hash"),
    ("{SHA512-CRYPT}$2y$05$X6vbOzH8jDEe7laESFfK..YKzQXSWq3IjNJeShQadhsHRPTu8of02",
     "the {SHA512-CRYPT} prefix does not match the hash, which is bcrypt"),
    ("{ARGON2ID}$5$0Z6nG5zHfze3Tl8J$.P4R8ZLo792I8w2JGpoGfnzlTl8J3Xs8fzUIQboeVc9",
     "the {ARGON2ID} prefix does not match the hash, which is sha256-crypt"),
])
def test_bad_hashes_are_refused_by_name(text, reason):
    with pytest.raises(InvalidInput, match=reason.replace("{", r"\{").replace("$", r"\$")):
        passwords.adopt_hash(text)


def test_dovecot_prefixes_are_case_insensitive_and_export_names_every_scheme():
    made = mkpasswd_hash("sha-256")
    assert passwords.adopt_hash("{sha256-crypt}" + made) == made
    assert passwords.dovecot_scheme(made) == "SHA256-CRYPT"
    assert passwords.dovecot_scheme(doveadm_hash("ARGON2I").split("}", 1)[1]) == "ARGON2I"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=80) | st.from_regex(r"\{[A-Z0-9-]{0,40}\}?\$[0-9a-z]{1,8}\$.{0,60}", fullmatch=True))
def test_adopt_hash_fuzz_refuses_or_returns_a_known_scheme(text):
    try:
        adopted = passwords.adopt_hash(text)
    except InvalidInput as exc:
        # The message names a scheme at most; it never quotes what it was given.
        assert len(text.strip()) < 40 or text.strip() not in exc.message
        return
    assert passwords.scheme_of(adopted) in passwords.DOVECOT_SCHEMES


# -- reading files ---------------------------------------------------------------


def test_read_dovecot_passwd_file_skips_comments_and_names_bad_lines():
    sha = doveadm_hash("SHA512-CRYPT")
    text = (f"# users moved from mail1\n\n"
            f"Alice@D.example:{sha}:1000:1000::/home/alice::userdb_quota_rule=*:storage=1G\n"
            f"bob@d.example:{sha}\n"
            f"nohash@d.example\n"
            f"empty@d.example::1000:1000\n"
            f"plain@d.example:{{PLAIN}}{PW}\n"
            f"alice@d.example:{sha}\n"
            f"bad name@d.example:{sha}\n"
            f"{sha}:alice@d.example\n")
    entries, bad = adopt.read_accounts(text, "dovecot")
    assert [(e.line, e.login, e.password_hash) for e in entries] == [
        (3, "alice@d.example", sha.split("}", 1)[1]), (4, "bob@d.example", sha.split("}", 1)[1])]
    assert [(b.line, b.login, b.reason.split(";")[0]) for b in bad] == [
        (5, "", "expected LOGIN:HASH[:uid:gid:...]"),
        (6, "empty@d.example", "no password hash"),
        (7, "plain@d.example", "the {PLAIN} scheme is not accepted"),
        (8, "alice@d.example", "listed twice (first on line 3)"),
        (9, "bad name@d.example", "invalid login 'bad name@d.example': the name may hold letters, digits, _ + - "
                                  "and single dots (not at the start or end)"),
        (10, "", "the first field is not a login (expected LOGIN:HASH[:uid:gid:...])"),
    ]
    assert PW not in repr(bad) and sha not in repr(bad) and sha.split("}", 1)[1] not in repr(entries)


def test_read_docker_mailserver_accounts():
    sha = mkpasswd_hash("sha-512")
    text = f"a@d.example|{{SHA512-CRYPT}}{sha}\r\nb@d.example|{sha}|extra\nc@d.example:{sha}\n"
    entries, bad = adopt.read_accounts(text, "dms")
    assert [(e.line, e.login, e.scheme) for e in entries] == [(1, "a@d.example", "sha512-crypt")]
    assert [(b.line, b.reason) for b in bad] == [(2, "expected LOGIN|HASH"), (3, "expected LOGIN|HASH")]
    with pytest.raises(InvalidInput, match="unknown format 'mailu'"):
        adopt.read_accounts(text, "mailu")


# -- importing -------------------------------------------------------------------


def test_import_creates_rejects_and_is_unchanged_on_rerun_even_after_rehash(store):
    sha, blf = doveadm_hash("SHA512-CRYPT"), doveadm_hash("BLF-CRYPT")
    text = (f"a@d.example:{sha}\nb@d.example:{blf}\nx@nowhere.example:{sha}\ny@shared.example:{sha}\n")
    first = adopt.import_accounts(store, text, "dovecot")
    assert first.as_dict() == {
        "format": "dovecot", "dry_run": False, "created": 2, "updated": 0, "unchanged": 0, "lines_rejected": 2,
        "logins": [{"line": 1, "login": "a@d.example", "status": "created", "hash_scheme": "sha512-crypt"},
                   {"line": 2, "login": "b@d.example", "status": "created", "hash_scheme": "bcrypt"}],
        "rejected": [
            {"line": 3, "login": "x@nowhere.example",
             "reason": "domain nowhere.example does not exist (smtpctl domain add nowhere.example --account ACCOUNT)"},
            {"line": 4, "login": "y@shared.example",
             "reason": "shared.example is an agency-assigned domain; SMTP credentials live on a sub-account's "
                       "dedicated domain"}]}
    assert store.credential("a@d.example").password_hash == sha.split("}", 1)[1]
    # The first successful verify replaces the adopted hash; the audit names the old scheme.
    assert verify_credential(store, "a@d.example", PW).scheme == "argon2id"
    assert audit(store, "credential.rehash") == [("a@d.example", {"from": "sha512-crypt", "to": "argon2id"})]
    again = adopt.import_accounts(store, text, "dovecot").as_dict()
    assert (again["created"], again["unchanged"], again["lines_rejected"]) == (0, 2, 2)
    assert store.credential("a@d.example").scheme == "argon2id"  # not put back to SHA512-CRYPT
    created = audit(store, "credential.create")
    assert [login for login, _ in created] == ["a@d.example", "b@d.example"]
    details = created[0][1]
    assert details == {"adopted": True, "adopted_fingerprint": passwords.fingerprint(sha.split("}", 1)[1]),
                       "domain": "d.example", "generated": False, "hash_scheme": "sha512-crypt", "via": "import"}
    dump = json.dumps(audit_entries(store, limit=0))
    assert sha.split("}", 1)[1] not in dump and blf.split("}", 1)[1] not in dump


def test_a_hash_too_costly_to_verify_is_a_rejected_line_and_the_good_lines_import(store):
    # issue 23: "$6$rounds=999999999$" and bcrypt cost 31 would stall every AUTH that reads them
    sha = doveadm_hash("SHA512-CRYPT")
    hostile = "$6$rounds=999999999$abcdefghijklmnop$" + "a" * 86
    text = f"a@d.example:{sha}\nb@d.example:{{SHA512-CRYPT}}{hostile}\nc@d.example:$2b$31${'a' * 53}\n"
    summary = adopt.import_accounts(store, text, "dovecot").as_dict()
    assert (summary["created"], summary["lines_rejected"]) == (1, 2)
    assert [(r["line"], r["reason"]) for r in summary["rejected"]] == [
        (2, "the sha512-crypt hash costs more to verify than smtpctl accepts (rounds=999,999,999, at most "
            "1,000,000): every login would pay it, and a stranger could stall AUTH with it; give this login a new "
            "password instead"),
        (3, "the bcrypt hash costs more to verify than smtpctl accepts (cost 31, at most 14): every login would pay "
            "it, and a stranger could stall AUTH with it; give this login a new password instead")]
    assert store.credential("b@d.example") is None and store.credential("c@d.example") is None


def test_another_hash_is_rejected_unless_update(store):
    adopt.import_accounts(store, f"a@d.example:{doveadm_hash('SHA512-CRYPT')}\n", "dovecot")
    other = doveadm_hash("SHA512-CRYPT", "Another-Password-99")
    refused = adopt.import_accounts(store, f"a@d.example:{other}\n", "dovecot").as_dict()
    assert refused["rejected"] == [{"line": 1, "login": "a@d.example",
                                    "reason": "exists with another password (--update replaces it)"}]
    assert verify_credential(store, "a@d.example", PW)  # untouched (and now rehashed)
    updated = adopt.import_accounts(store, f"a@d.example:{other}\n", "dovecot", update=True).as_dict()
    assert (updated["updated"], updated["lines_rejected"]) == (1, 0)
    with pytest.raises(AuthFailed):
        verify_credential(store, "a@d.example", PW)
    assert verify_credential(store, "a@d.example", "Another-Password-99").scheme == "argon2id"
    assert audit(store, "credential.reset")[-1][1]["via"] == "import"
    # A reset by smtpctl itself makes the old file's hash "another password" again.
    reset_credential(store, "a@d.example", "Third-Password-123")
    assert adopt.import_accounts(store, f"a@d.example:{other}\n", "dovecot").as_dict()["lines_rejected"] == 1


def test_cap_and_blocked_account_are_rejected_lines_in_file_order(store):
    create_credential(store, "own@d.example", PW)
    sha = mkpasswd_hash("sha-512")
    text = "".join(f"u{i}@d.example|{sha}\n" for i in range(6))
    result = adopt.import_accounts(store, text, "dms").as_dict()
    assert [r["login"] for r in result["logins"]] == ["u0@d.example", "u1@d.example", "u2@d.example", "u3@d.example"]
    assert result["rejected"] == [
        {"line": n, "login": f"u{n - 1}@d.example",
         "reason": "d.example is full: it holds 5 SMTP credentials, the most a domain may hold (5)"} for n in (5, 6)]
    assert len(store.credentials(domain="d.example")) == 5
    add_account(store, "held", "acme")
    add_domain(store, "held.example", account="held")
    block_account(store, "held", "compliance review")
    blocked = adopt.import_accounts(store, f"n@held.example|{sha}\n", "dms").as_dict()
    assert blocked["rejected"] == [{"line": 1, "login": "n@held.example", "reason": "account held: SMTP Credential "
                                    "creation is blocked. Please contact support…"}]


def test_dry_run_writes_nothing(store):
    before = store.counts()
    result = adopt.import_accounts(store, f"a@d.example:{doveadm_hash('BLF-CRYPT')}\n", "dovecot", dry_run=True)
    assert (result.dry_run, result.as_dict()["created"]) == (True, 1)
    assert store.counts() == before and store.credential("a@d.example") is None


def test_parallel_imports_respect_the_cap(tmp_path):
    path = tmp_path / "race.db"
    with Store.open(path) as s:
        add_agency(s, "acme")
        add_account(s, "shop", "acme")
        add_domain(s, "d.example", account="shop")
    sha = mkpasswd_hash("sha-256")
    results = []

    def worker(prefix):
        with Store.open(path) as s:
            text = "".join(f"{prefix}{i}@d.example:{sha}\n" for i in range(4))
            results.append(adopt.import_accounts(s, text, "dovecot").as_dict())

    threads = [threading.Thread(target=worker, args=(p,)) for p in "abc"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with Store.open(path) as s:
        assert len(s.credentials(domain="d.example")) == 5
    assert sum(r["created"] for r in results) == 5
    assert sum(r["lines_rejected"] for r in results) == 7


# -- apply's password_hash ---------------------------------------------------------


def doc_with(hash_text, tmp_path):
    return provisioning.parse_document(
        '[[credentials]]\nlogin = "app@d.example"\npassword_hash = "' + hash_text + '"\n', base_dir=tmp_path)


def test_apply_password_hash_create_unchanged_update(store, tmp_path):
    blf = doveadm_hash("BLF-CRYPT")
    plan = provisioning.apply_document(store, doc_with(blf, tmp_path))
    assert [c.as_dict() for c in plan.changes] == [
        {"action": "create", "type": "credential", "name": "app@d.example", "details": {"password": "hash:bcrypt"}}]
    assert store.credential("app@d.example").password_hash == blf.split("}", 1)[1]
    assert provisioning.make_plan(store, doc_with(blf, tmp_path)).summary()["unchanged"] == 1
    verify_credential(store, "app@d.example", PW)  # rehashed to argon2id
    again = provisioning.apply_document(store, doc_with(blf, tmp_path))
    assert [c.action for c in again.changes] == ["unchanged"]
    assert store.credential("app@d.example").scheme == "argon2id"
    other = mkpasswd_hash("sha-256", "Another-Password-99")
    changed = provisioning.apply_document(store, doc_with(other, tmp_path))
    assert [c.as_dict() for c in changed.changes] == [
        {"action": "update", "type": "credential", "name": "app@d.example",
         "details": {"password": "hash:sha256-crypt (changed)"}}]
    assert store.credential("app@d.example").password_hash == other
    resets = audit(store, "credential.reset")
    assert resets == [("app@d.example", {"adopted": True, "adopted_fingerprint": passwords.fingerprint(other),
                                         "generated": False, "hash_scheme": "sha256-crypt", "via": "apply"})]
    assert verify_credential(store, "app@d.example", "Another-Password-99").scheme == "argon2id"


@pytest.mark.parametrize("value, reason", [
    ("{PLAIN}hunter2hunter2", "the {PLAIN} scheme is not accepted"),
    ("{MD5}5f4dcc3b5aa765d61d8327deb882cf99", "the {MD5} scheme is not accepted"),
    ("abQ5LcM4yMvrE", "not a password hash smtpctl adopts"),
])
def test_apply_refuses_unknown_schemes_naming_the_credential(value, reason, tmp_path):
    with pytest.raises(InvalidInput) as err:
        doc_with(value, tmp_path)
    assert err.value.message.startswith(f"credentials[0] app@d.example: {reason}")
    assert value.split("}")[-1] not in err.value.message


LINE = st.one_of(
    st.text(max_size=60),
    st.builds(lambda u, sep, h, rest: f"{u}{sep}{h}{rest}",
              st.sampled_from(["a@d.example", "B@D.EXAMPLE", "x@shared.example", "n@nowhere.example", "", "{X}"]),
              st.sampled_from([":", "|"]),
              st.sampled_from(["{PLAIN}pw", "$6$x$y", "", "$2y$05$" + "a" * 53,
                               "$5$0Z6nG5zHfze3Tl8J$.P4R8ZLo792I8w2JGpoGfnzlTl8J3Xs8fzUIQboeVc9"]),
              st.text(alphabet=":|# \t\r", max_size=4)),
)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(LINE, max_size=8), st.sampled_from(adopt.FORMATS), st.booleans())
def test_import_fuzz_every_line_is_accounted_for_and_caps_hold(store, lines, fmt, dry_run):
    text = "\n".join(lines)
    result = adopt.import_accounts(store, text, fmt, dry_run=dry_run)
    counted = [r.line for r in result.lines]
    assert counted == sorted(set(counted))
    assert all(r.status in ("created", "updated", "unchanged", "rejected") for r in result.lines)
    assert all(r.reason for r in result.rejected)
    assert len(store.credentials(domain="d.example")) <= 5
    assert store.credentials(domain="shared.example") == []
