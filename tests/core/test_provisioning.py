import json
import tempfile
from pathlib import Path

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smtpctl.core.directory.accounts import add_account
from smtpctl.core.directory.agencies import add_agency
from smtpctl.core.directory.credentials import create_credential, verify_credential
from smtpctl.core.directory.domains import add_domain
from smtpctl.core.metering.enforcement import block_account
from smtpctl.core.model.errors import AlreadyExists, Blocked, InvalidInput, LimitReached, NotFound
from smtpctl.core.provisioning import apply as provisioning
from smtpctl.core.provisioning import export
from smtpctl.core.store import Store

PW = "a good long password"

BASE = """
version = 1
[[agencies]]
name = "acme"
[[accounts]]
name = "shop"
agency = "acme"
daily_limit = 2000
[[domains]]
name = "d.example"
account = "shop"
[[domains]]
name = "shared.example"
agency = "acme"
[[credentials]]
login = "app@d.example"
generate = true
[[credentials]]
login = "ci@d.example"
password_env = "CI_PW"
"""


@pytest.fixture
def store(store_at):
    with Store.open(store_at, actor="ops") as s:
        yield s


def content(store):
    """Every row of every table but the audit's timestamps: the store's content."""
    return {t: store.query(f'SELECT * FROM "{t}" ORDER BY 1') for t in store.tables()}


def doc(text=BASE, env=None):
    return provisioning.parse_document(text, environ=env if env is not None else {"CI_PW": PW})


def test_apply_creates_everything_then_nothing(store):
    plan = provisioning.apply_document(store, doc())
    assert plan.summary() == {"create": 6, "update": 0, "unchanged": 0, "delete": 0, "blocked": 0}
    assert set(plan.generated) == {"app@d.example"}
    assert verify_credential(store, "app@d.example", plan.generated["app@d.example"])
    assert verify_credential(store, "ci@d.example", PW)
    before = content(store)
    again = provisioning.apply_document(store, doc())
    assert again.summary() == {"create": 0, "update": 0, "unchanged": 6, "delete": 0, "blocked": 0}
    assert again.generated == {} and again.hashes == {}
    assert content(store) == before  # not even an audit row


def test_changed_password_source_is_an_update(store):
    provisioning.apply_document(store, doc())
    plan = provisioning.apply_document(store, doc(env={"CI_PW": "a brand new password"}))
    assert [(c.action, c.name) for c in plan.changes if c.action != "unchanged"] == [("update", "ci@d.example")]
    assert verify_credential(store, "ci@d.example", "a brand new password")


def test_dry_run_changes_nothing(store):
    before = content(store)
    plan = provisioning.apply_document(store, doc(), dry_run=True)
    assert plan.summary()["create"] == 6 and plan.generated == {}
    assert content(store) == before


@pytest.mark.parametrize("text, error, message", [
    ('[[credentials]]\nlogin = "a@d.example"\npassword = "hunter2hunter2"', InvalidInput,
     "credentials[0] a@d.example: a literal password is refused"),
    ('[[agencies]]\nname = "a"\ncolour = "red"', InvalidInput, "agencies[0]: unknown keys colour"),
    ('[[agencies]]\nname = "a"\n[[agencies]]\nname = "A"', InvalidInput, "agencies[1] A: listed twice"),
    ('[[credentials]]\nlogin = "a@d.example"\npassword_env = "NOPE"', InvalidInput,
     "credentials[0] a@d.example: password_env names 'NOPE', which is not set"),
    ('[[credentials]]\nlogin = "a@d.example"\ngenerate = false', InvalidInput, "give exactly one of generate"),
    ('[[domains]]\nname = "bad_name.example"\nagency = "a"', InvalidInput, "domains[0] bad_name.example: invalid"),
    ("version = 2", InvalidInput, "unsupported document version 2"),
    ("this is = not toml =", InvalidInput, "not valid TOML"),
    ("[[users]]\nlogin = 'a'", InvalidInput, "unknown top-level keys: users"),
])
def test_bad_documents(text, error, message):
    with pytest.raises(error) as err:
        provisioning.parse_document(text, environ={})
    assert message in str(err.value)
    assert "hunter2" not in str(err.value)


def test_password_file_relative_to_the_document(tmp_path):
    (tmp_path / "pw").write_text(PW + "\n")
    parsed = provisioning.parse_document('[[credentials]]\nlogin = "a@d.example"\npassword_file = "pw"',
                                         base_dir=tmp_path, environ={})
    assert parsed.credentials["a@d.example"].password == PW


@pytest.mark.parametrize("extra, error, message", [
    ('[[credentials]]\nlogin = "x@shared.example"\ngenerate = true', InvalidInput,
     "credentials[2] x@shared.example: shared.example is an agency-assigned domain"),
    ('[[credentials]]\nlogin = "x@nope.example"\ngenerate = true', NotFound,
     "credentials[2] x@nope.example: domain nope.example is neither in the file nor in the store"),
    ('[[accounts]]\nname = "other"\nagency = "ghost"', NotFound, "accounts[1] other: agency 'ghost'"),
    ("".join(f'[[credentials]]\nlogin = "u{i}@d.example"\ngenerate = true\n' for i in range(4)), LimitReached,
     "credentials[5] u3@d.example: d.example would hold 6 SMTP credentials; the most a domain may hold is 5"),
])
def test_a_file_whose_last_object_breaks_a_rule_writes_nothing(store, extra, error, message):
    provisioning.apply_document(store, doc())
    add_agency(store, "other-agency")
    before = content(store)
    with pytest.raises(error) as err:
        provisioning.apply_document(store, doc(BASE + "\n[[agencies]]\nname = \"new-one\"\n" + extra))
    assert message in str(err.value)
    assert content(store) == before


def test_failure_on_an_empty_store_leaves_it_empty(store):
    before = content(store)
    bad = BASE + "".join(f'[[credentials]]\nlogin = "u{i}@d.example"\ngenerate = true\n' for i in range(4))
    with pytest.raises(LimitReached):
        provisioning.apply_document(store, doc(bad))
    assert content(store) == before


def test_conflicting_owner_and_blocked_account(store):
    provisioning.apply_document(store, doc())
    add_agency(store, "b")
    moved = BASE.replace('[[accounts]]\nname = "shop"\nagency = "acme"', '[[agencies]]\nname = "b"\n[[accounts]]\nname = "shop"\nagency = "b"')
    with pytest.raises(AlreadyExists, match="does not move accounts between agencies"):
        provisioning.apply_document(store, doc(moved))
    block_account(store, "shop", "review")
    with pytest.raises(Blocked, match="SMTP Credential creation is blocked. Please contact support… "
                                      "\\(credentials\\[2\\] new@d.example: account shop is blocked \\(review\\)\\)"):
        provisioning.apply_document(store, doc(BASE + '[[credentials]]\nlogin = "new@d.example"\ngenerate = true\n'))


def test_prune_deletes_what_the_file_does_not_list(store):
    provisioning.apply_document(store, doc())
    create_credential(store, "stray@d.example", PW)
    add_domain(store, "old.example", agency="acme")
    kept = provisioning.apply_document(store, doc())
    assert kept.summary()["delete"] == 0 and store.credential("stray@d.example") is not None
    pruned = provisioning.apply_document(store, doc(), prune=True)
    assert [(c.kind, c.name) for c in pruned.changes if c.action == "delete"] == [
        ("credential", "stray@d.example"), ("domain", "old.example")]
    assert store.credential("stray@d.example") is None and store.domain("old.example") is None


def test_prune_makes_room_under_the_cap(store):
    provisioning.apply_document(store, doc())
    for i in range(3):
        create_credential(store, f"old{i}@d.example", PW)
    more = BASE + "".join(f'[[credentials]]\nlogin = "n{i}@d.example"\ngenerate = true\n' for i in range(3))
    with pytest.raises(LimitReached):
        provisioning.apply_document(store, doc(more))
    plan = provisioning.apply_document(store, doc(more), prune=True)
    assert plan.summary() == {"create": 3, "update": 0, "unchanged": 6, "delete": 3, "blocked": 0}


def test_secrets_never_reach_the_audit_trail(store):
    plan = provisioning.apply_document(store, doc())
    dump = json.dumps(store.query("SELECT * FROM audit"))
    assert PW not in dump and plan.generated["app@d.example"] not in dump
    assert all(json.loads(r["details"]).get("via") == "apply"
               for r in store.query("SELECT details FROM audit"))


def test_before_commit_failure_keeps_nothing(store):
    before = content(store)

    def boom(plan):
        raise OSError("disk full")

    with pytest.raises(OSError):
        provisioning.apply_document(store, doc(), before_commit=boom)
    assert content(store) == before


# -- export ---------------------------------------------------------------------------


def test_export_is_what_apply_reads_and_carries_no_secret(store):
    provisioning.apply_document(store, doc())
    data = export.export_document(store)
    assert data == {
        "version": 1, "agencies": [{"name": "acme"}],
        "accounts": [{"name": "shop", "agency": "acme", "daily_limit": 2000}],
        "domains": [{"name": "d.example", "account": "shop"}, {"name": "shared.example", "agency": "acme"}],
        "credentials": [{"login": "app@d.example", "generate": True}, {"login": "ci@d.example", "generate": True}],
    }
    assert "$argon2" not in tomli_w.dumps(data)
    again = provisioning.apply_document(store, provisioning.parse_document(tomli_w.dumps(data), environ={}))
    assert again.summary()["create"] == again.summary()["update"] == 0


def test_dovecot_passwd_lines(store):
    from passlib.hash import bcrypt, sha512_crypt

    provisioning.apply_document(store, doc())
    create_credential(store, "legacy1@d.example", PW)
    create_credential(store, "legacy2@d.example", PW)
    with store.write():
        store.execute("UPDATE credentials SET password_hash = ? WHERE login = 'legacy1@d.example'",
                      [bcrypt.using(rounds=5).hash(PW)])
        store.execute("UPDATE credentials SET password_hash = ? WHERE login = 'legacy2@d.example'",
                      [sha512_crypt.hash(PW)])
    lines = export.dovecot_passwd(store).splitlines()
    schemes = {line.split(":", 1)[0]: line.split(":", 1)[1].split("}")[0] + "}" for line in lines}
    assert schemes == {"app@d.example": "{ARGON2ID}", "ci@d.example": "{ARGON2ID}",
                       "legacy1@d.example": "{BLF-CRYPT}", "legacy2@d.example": "{SHA512-CRYPT}"}


def test_write_atomically_is_0600(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    target = folder / "passwd"
    export.write_atomically(target, "a:b\n")
    assert target.read_text() == "a:b\n" and oct(target.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in folder.iterdir()] == ["passwd"]  # no temp file left behind


# -- the round trip, for any valid store -------------------------------------------------

names = st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True)


@st.composite
def stores(draw):
    agencies = draw(st.lists(names, min_size=1, max_size=3, unique=True))
    accounts = draw(st.lists(st.tuples(names.map(lambda n: "acct-" + n), st.sampled_from(agencies),
                                       st.one_of(st.none(), st.integers(1, 10_000))),
                             max_size=4, unique_by=lambda t: t[0]))
    owners = [("account", a[0]) for a in accounts] + [("agency", g) for g in agencies]
    domains = draw(st.lists(st.tuples(names.map(lambda n: n + ".example"), st.sampled_from(owners)),
                            max_size=5, unique_by=lambda t: t[0]))
    dedicated = [d for d, (kind, _) in domains if kind == "account"]
    credentials = []
    if dedicated:
        credentials = draw(st.lists(st.tuples(names, st.sampled_from(dedicated)), max_size=6,
                                    unique_by=lambda t: t))
    return agencies, accounts, domains, credentials


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stores())
def test_any_store_exports_to_a_file_that_rebuilds_it(world):
    agencies, accounts, domains, credentials = world
    with tempfile.TemporaryDirectory() as tmp:
        with Store.open(Path(tmp) / "a.db") as source:
            for g in agencies:
                add_agency(source, g)
            for name, agency, limit in accounts:
                add_account(source, name, agency, daily_limit=limit)
            for name, (kind, owner) in domains:
                add_domain(source, name, **{kind: owner})
            made = 0
            for local, domain in credentials:
                if len(source.credentials(domain=domain)) < 5:
                    with source.write():
                        source.insert_credential(source.domain(domain).id, local, f"{local}@{domain}", "$argon2id$x")
                    made += 1
            text = tomli_w.dumps(export.export_document(source))
            expected = export.export_document(source)
        with Store.open(Path(tmp) / "b.db") as target:
            plan = provisioning.apply_document(target, provisioning.parse_document(text, environ={}))
            assert len(plan.generated) == made
            assert export.export_document(target) == expected
            assert provisioning.apply_document(
                target, provisioning.parse_document(text, environ={})).summary()["create"] == 0


def test_a_second_plan_with_the_same_cache_verifies_nothing_again(store, monkeypatch):
    provisioning.apply_document(store, doc())
    calls = []
    real = provisioning.passwords.verify_password
    monkeypatch.setattr(provisioning.passwords, "verify_password", lambda *a: calls.append(a[0]) or real(*a))
    cache = provisioning.VerifyCache()
    provisioning.make_plan(store, doc(), verify=cache)
    provisioning.apply_document(store, doc(), verify=cache)
    assert calls == [PW]  # ci@d.example's source, verified once for both plans
