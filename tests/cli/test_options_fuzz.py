"""Fuzz every option that takes a value (hypothesis, through typer's CliRunner
on a temp store). The one property: never exit 1, never a traceback, one
``Error:`` line when it fails, a refused change leaves the store as it was,
and the store passes ``PRAGMA integrity_check``. After a setting is accepted,
the commands that read it still work (a stored value never breaks a later
command).

Bounded: few examples per surface, no deadline, so the file runs in well
under a minute.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from smtpctl.core.model.rules import SETTINGS
from smtpctl.core.store import Store
from tests.conftest import store_exists

PW = "a good long password"
# SMTPCTL_FUZZ_EXAMPLES=500 (and SMTPCTL_FUZZ_RANDOM=1 for new seeds) for a longer hunt by hand.
EXAMPLES = int(os.environ.get("SMTPCTL_FUZZ_EXAMPLES", "40"))
RANDOM = os.environ.get("SMTPCTL_FUZZ_RANDOM", "") not in ("", "0")


def fuzz(scale: float = 1.0):
    return settings(max_examples=max(1, int(EXAMPLES * scale)), deadline=None, derandomize=not RANDOM,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


FUZZ = fuzz()


@pytest.fixture
def store(cli, isolated_store, tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)  # any relative path a fuzzed input names lands here
    for args in (["agency", "add", "acme"], ["account", "add", "shop", "--agency", "acme"],
                 ["domain", "add", "mail.shop.example", "--account", "shop"],
                 ["domain", "add", "shared.example", "--agency", "acme"]):
        assert cli(*args).exit_code == 0, args
    assert cli("user", "create", "app@mail.shop.example", "--password-stdin", input=PW + "\n").exit_code == 0
    return isolated_store


def snapshot(db: Path) -> list:
    if not store_exists(db):
        return []
    with Store.open(db) as store:
        return [store.query(f"SELECT * FROM {t} ORDER BY 1")
                for t in ("settings", "agencies", "accounts", "domains", "credentials", "usage_events", "audit")]


def check(result, db: Path, before: list | None = None) -> None:
    """The property every command keeps, whatever its input."""
    out = f"{result.exit_code}\nstdout: {result.stdout[-2000:]}\nstderr: {result.stderr[-2000:]}"
    assert result.exit_code != 1, out
    assert "Traceback" not in result.stdout + result.stderr, out
    if result.exception is not None:
        assert isinstance(result.exception, SystemExit), repr(result.exception)
    if result.exit_code not in (0, 5):
        lines = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
        assert len(lines) == 1, out
        if before is not None:
            assert snapshot(db) == before, "a refused command changed the store"
    if store_exists(db):
        with Store.open(db) as store:
            assert store.integrity_ok()


# -- value strategies -------------------------------------------------------------------------------

NASTY = ["1e400", "-1e400", "1E+2", "NaN", "nan", "sNaN", "Infinity", "-inf", "-0", "0", "-1", "1e-7", "0.0000001",
         "$0.675", "$", "1_000", "1,500", "١٥٠٠", "0x10", "99999999999999999999999", "9" * 5000, "", " ", "%", "_",
         "\\", "'", '"', "\x00", "\n", "2026-13-40", "0001-01-01", "9999-12-31", "UTC", "Europe", "../etc",
         "a" * 300, "—", "💌", "\u202e", "\ufeff1", "\udcff", "1\udc80"]
numberish = st.one_of(
    st.sampled_from(NASTY),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.floats().map(repr),
    st.from_regex(r"\A[-+$ ]?[0-9_,.]{0,25}([eE][-+]?[0-9]{1,4})?\Z"),
)
text = st.one_of(st.text(max_size=60), st.sampled_from(NASTY))
value = st.one_of(numberish, text)
offsets = st.timedeltas(min_value=-timedelta(hours=23, minutes=59), max_value=timedelta(hours=23, minutes=59))
iso_times = st.builds(
    lambda moment, offset, z: moment.replace(tzinfo=timezone(offset)).isoformat() if not z
    else moment.isoformat() + "Z",
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 12, 31)), offsets, st.booleans())
times = st.one_of(iso_times, st.dates().map(str), text)


def opt(name: str, strategy):
    return st.one_of(st.just([]), strategy.map(lambda v: [f"{name}={v}"]))


# -- store set KEY VALUE, for every key ---------------------------------------------------------------

READERS = (["usage", "report", "--json"], ["usage", "status", "--json"], ["pricing", "estimate", "--emails", "1000"],
           ["store", "show", "--json"], ["settings", "--json"], ["audit", "--since", "2026-01-01", "--json"],
           ["account", "list", "--json"])


@FUZZ
@given(key=st.sampled_from(sorted(SETTINGS)), raw=value)
def test_store_set_every_key(cli, store, key, raw):
    before = snapshot(store)
    result = cli("store", "set", key, "--", raw)
    check(result, store, before)
    if result.exit_code == 0:
        for args in READERS:
            later = cli(*args)
            check(later, store)
            assert later.exit_code == 0, (args, later.stderr)
    elif result.exit_code != 2:
        pytest.fail(f"store set exited {result.exit_code}: {result.stderr}")


# -- pricing estimate ---------------------------------------------------------------------------------

@FUZZ
@given(volume=st.one_of(
           st.tuples(st.just("--emails"), numberish).map(list),
           st.tuples(st.just("--per-day"), numberish, st.just("--days"), numberish).map(list),
           st.tuples(st.just("--messages"), numberish, st.just("--recipients"), numberish).map(list)),
       rate=opt("--rate", numberish), compare=opt("--compare", st.tuples(text, numberish).map("=".join)),
       json_out=st.sampled_from([[], ["--json"]]))
def test_pricing_estimate(cli, store, volume, rate, compare, json_out):
    args = [volume[0] + "=" + volume[1], *[f"{a}={b}" for a, b in zip(volume[2::2], volume[3::2])]]
    result = cli("pricing", "estimate", *args, *rate, *compare, *json_out)
    check(result, store)
    assert result.exit_code in (0, 2), result.stderr


# -- audit --------------------------------------------------------------------------------------------

@FUZZ
@given(limit=opt("--limit", numberish), since=opt("--since", times), until=opt("--until", times),
       action=opt("--action", text), actor=opt("--actor", text), account=opt("--account", text))
def test_audit_filters(cli, store, limit, since, until, action, actor, account):
    result = cli("audit", "--json", *limit, *since, *until, *action, *actor, *account)
    check(result, store)
    assert result.exit_code in (0, 2, 3), result.stderr


# -- usage record ---------------------------------------------------------------------------------------

addresses = st.one_of(st.emails().map(str), text)


@FUZZ
@given(user=st.one_of(st.sampled_from(["app@mail.shop.example", "ghost@mail.shop.example", "x@shared.example",
                                       "x@unknown.example"]), text),
       recipients=opt("--recipients", st.one_of(st.integers(min_value=-5, max_value=2000).map(str), numberish)),
       to=st.lists(addresses, max_size=3), at=opt("--at", times), source_id=opt("--id", text))
def test_usage_record(cli, store, user, recipients, to, at, source_id):
    tos = [f"--to={a}" for a in to]
    before = snapshot(store)
    result = cli("usage", "record", f"--user={user}", *recipients, *tos, *at, *source_id, "--json")
    check(result, store, before)
    assert result.exit_code in (0, 2, 3), result.stderr
    if result.exit_code == 0:  # the totals move by exactly what was reported
        import json

        data = json.loads(result.stdout)
        events, emails = events_and_emails(store)
        recorded = data["status"] == "recorded"
        assert events == events_and_emails_of(before)[0] + recorded
        assert emails == events_and_emails_of(before)[1] + (data["event"]["emails"] if recorded else 0)


def events_and_emails(db: Path) -> tuple[int, int]:
    with Store.open(db) as store:
        totals = store.usage_totals()
    return totals["events"], totals["event_emails"]


def events_and_emails_of(snap: list) -> tuple[int, int]:
    events = snap[5]  # usage_events rows, in snapshot() order
    return len(events), sum(row["emails"] for row in events)


# -- accounts -------------------------------------------------------------------------------------------

@FUZZ
@given(limit=st.one_of(value, st.just("default")))
def test_account_set_limit(cli, store, limit):
    before = snapshot(store)
    result = cli("account", "set-limit", "shop", "--", limit)
    check(result, store, before)
    assert result.exit_code in (0, 2), result.stderr
    if result.exit_code == 0:
        assert cli("usage", "status", "shop", "--json").exit_code == 0


@FUZZ
@given(name=text, limit=opt("--daily-limit", numberish))
def test_account_add(cli, store, name, limit):
    before = snapshot(store)
    result = cli("account", "add", "--agency=acme", *limit, "--", name)
    check(result, store, before)
    assert result.exit_code in (0, 2, 4), result.stderr


# -- secrets on stdin ------------------------------------------------------------------------------------

@fuzz(0.75)
@given(data=st.one_of(st.binary(max_size=1200), st.text(max_size=200).map(lambda t: t.encode("utf-8", "replace"))))
def test_password_stdin_bytes(cli, store, data):
    before = snapshot(store)
    result = cli("user", "reset", "app@mail.shop.example", "--password-stdin", input=data)
    check(result, store, before)
    assert result.exit_code in (0, 2), result.stderr


# -- apply with fuzzed TOML documents ---------------------------------------------------------------------

toml_scalars = st.one_of(st.integers(min_value=-(2**63), max_value=2**63 - 1), st.floats(), st.booleans(), text,
                         st.datetimes(max_value=datetime(9999, 1, 1)), st.dates())


def _nest(inner):
    return st.one_of(st.lists(inner, max_size=3), st.dictionaries(text, inner, max_size=3))


toml_values = st.recursive(toml_scalars, _nest, max_leaves=6)
KEYS = {"agencies": ["name"], "accounts": ["name", "agency", "daily_limit"],
        "domains": ["name", "account", "agency"],
        "credentials": ["login", "generate", "password_env", "password_file", "password", "password_hash"]}
GOOD = {"name": st.sampled_from(["acme", "shop", "new", "mail.shop.example", "mail.new.example", "shared.example"]),
        "agency": st.sampled_from(["acme", "ghost"]), "account": st.sampled_from(["shop", "new", "ghost"]),
        "daily_limit": numberish.map(lambda v: int(v) if v.lstrip("-").isdigit() and len(v) < 19 else v),
        "login": st.sampled_from(["app@mail.shop.example", "new@mail.shop.example", "x@shared.example"]),
        "generate": st.just(True), "password_env": st.just("HOME"), "password_file": st.sampled_from(
            ["/dev/zero", "/dev/null", "pw.txt", "/nonexistent"])}


def entry(section: str):
    keys = KEYS[section]
    return st.dictionaries(st.one_of(st.sampled_from(keys), text),
                           st.one_of(*(GOOD[k] for k in keys if k in GOOD), toml_values), max_size=4)


documents = st.fixed_dictionaries(
    {}, optional={"version": st.one_of(st.just(1), toml_scalars),
                  **{s: st.lists(entry(s), max_size=3) for s in KEYS}})


@fuzz(1.5)
@given(doc=documents, dry_run=st.booleans())
def test_apply_fuzzed_documents(cli, store, tmp_path, doc, dry_run):
    import tomli_w

    try:
        body = tomli_w.dumps(doc)
    except (TypeError, ValueError):
        assume(False)
        return
    (tmp_path / "pw.txt").write_text(PW + "\n")
    path = tmp_path / "fleet.toml"
    path.write_bytes(body.encode("utf-8", "surrogatepass"))  # a lone surrogate makes invalid UTF-8: also input
    secrets = tmp_path / "secrets.toml"
    secrets.unlink(missing_ok=True)
    before = snapshot(store)
    result = cli("apply", str(path), "--yes", f"--secrets-out={secrets}", *(["--dry-run"] if dry_run else []))
    check(result, store, before)
    assert result.exit_code in (0, 2, 3, 4, 5, 6), result.stderr


@FUZZ
@given(data=st.one_of(st.binary(max_size=300), st.text(max_size=200).map(str.encode)))
def test_apply_fuzzed_bytes(cli, store, tmp_path, data):
    path = tmp_path / "raw.toml"
    path.write_bytes(data)
    before = snapshot(store)
    result = cli("apply", str(path), "--dry-run")
    check(result, store, before)
    assert result.exit_code in (0, 2, 3), result.stderr


# -- --config with fuzzed bytes and documents ----------------------------------------------------------------

# The config's db is only ever a path under the test's temp dir ({tmp}), or not a string:
# a write command creates the store it names, and these tests run as whoever runs them.
config_db = st.one_of(st.sampled_from(["{tmp}/c.db", "{tmp}/sub/dir/c.db", "{tmp}", "{tmp}/", "", " ", "relative.db",
                                       "{tmp}/x\u0000y"]), toml_scalars.filter(lambda v: not isinstance(v, str)))
configs = st.one_of(
    st.binary(max_size=300),
    st.fixed_dictionaries({}, optional={"db": config_db, "actor": toml_values, "colour": toml_values}).map(
        lambda d: _toml_or_empty(d)),
)


def _toml_or_empty(d: dict) -> bytes:
    import tomli_w

    try:
        return tomli_w.dumps(d).encode()
    except (TypeError, ValueError):
        return b""


@FUZZ
@given(data=configs, write=st.booleans())
def test_config_fuzzed(cli, store, tmp_path, data, write):
    config = tmp_path / "fuzzed-config.toml"
    config.write_bytes(data.replace(b"{tmp}", str(tmp_path).encode()))
    before = snapshot(store)
    args = ["agency", "add", "fuzzed", "--exist-ok"] if write else ["agency", "list", "--json"]
    result = cli("--config", str(config), *args)
    check(result, store, before)
    assert result.exit_code in (0, 2, 3, 7), result.stderr


# -- auth throttle list / clear ----------------------------------------------------------------------

addresses = st.one_of(text, st.ip_addresses().map(str), st.from_regex(r"\A[0-9a-f:.%/]{1,45}\Z"))


@FUZZ
@given(client=opt("--client", addresses), login=opt("--login", text),
       caps=opt("--max-auth-failures", numberish), window=opt("--auth-failure-window", numberish),
       clear=st.booleans())
def test_auth_throttle_list_and_clear(cli, store, client, login, caps, window, clear):
    before = snapshot(store)
    args = ["auth", "throttle", "clear", "--yes"] if clear else ["auth", "throttle", "list"]
    result = cli(*args, *client, *login, *caps, *window, "--json")
    check(result, store, before)
    assert result.exit_code in (0, 2), (result.exit_code, result.stderr)
    if result.exit_code == 0 and clear:
        assert snapshot(store)[-1][-1]["action"] == "auth.throttle_clear"  # one audit entry, and nothing else
        assert snapshot(store)[:-1] == before[:-1]
