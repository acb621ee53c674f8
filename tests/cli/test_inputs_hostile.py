"""Hostile and careless input, one table per surface (issue 10): numbers and
money, secrets, read-only commands and the store path, the config file, the
audit filters, and usage record for a login with no credential.

Each row: the arguments, the exit code, and the exact error a script reads.
A refused input leaves the store as it was.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from decimal import Decimal
from pathlib import Path

import pytest

from smtpctl.core.store import Store
from tests.conftest import smtpctl_binary, store_untouched

PW = "a good long password"


def world(cli):
    for args in (["agency", "add", "acme"], ["account", "add", "shop", "--agency", "acme"],
                 ["domain", "add", "mail.shop.example", "--account", "shop"]):
        assert cli(*args).exit_code == 0, args
    assert cli("user", "create", "app@mail.shop.example", "--password-stdin", input=PW + "\n").exit_code == 0


def settings_rows(db: Path) -> list[tuple]:
    with Store.open(db) as store:
        return sorted(store.settings().items())


# -- numbers and money: store set ---------------------------------------------------------------

PRICE_RANGE = "price must be between 0 and 1000 USD per 1,000 emails, not"


@pytest.mark.parametrize("key, value, error", [
    ("price_per_1000", "1e400", f"{PRICE_RANGE} '1e400'"),
    ("price_per_1000", "NaN", f"{PRICE_RANGE} 'NaN'"),
    ("price_per_1000", "sNaN", f"{PRICE_RANGE} 'sNaN'"),
    ("price_per_1000", "Infinity", f"{PRICE_RANGE} 'Infinity'"),
    ("price_per_1000", "-inf", f"{PRICE_RANGE} '-inf'"),
    ("price_per_1000", "-0.5", f"{PRICE_RANGE} '-0.5'"),
    ("price_per_1000", "1000.000001", f"{PRICE_RANGE} '1000.000001'"),
    ("price_per_1000", "0.0000001", "price has more than 6 decimal places: '0.0000001'"),
    ("price_per_1000", "1e-7", "price has more than 6 decimal places: '1e-7'"),
    ("price_per_1000", "cheap", "price must be a decimal number such as 0.675, not 'cheap'"),
    ("price_per_1000", "9" * 100, "price must be a decimal number such as 0.675, not '" + "9" * 35 + "...'"),
    ("compare_price_per_1000", "1e400", f"{PRICE_RANGE} '1e400'"),
    ("default_daily_limit", "1e3", "daily limit must be a whole number from 1 to 100,000,000, not '1e3'"),
    ("default_daily_limit", "NaN", "daily limit must be a whole number from 1 to 100,000,000, not 'NaN'"),
    ("default_daily_limit", "1.5", "daily limit must be a whole number from 1 to 100,000,000, not '1.5'"),
    ("default_daily_limit", "0", "daily limit must be between 1 and 100,000,000, not 0"),
    ("default_daily_limit", "-5", "daily limit must be between 1 and 100,000,000, not -5"),
    ("default_daily_limit", "9" * 30, "daily limit must be between 1 and 100,000,000, not " + "9" * 30),
    ("default_daily_limit", "9" * 5000, "daily limit must be a whole number from 1 to 100,000,000, not '"
     + "9" * 35 + "...'"),
    ("default_daily_limit", "١٥٠٠", "daily limit must be a whole number from 1 to 100,000,000, not '١٥٠٠'"),
    ("credentials_per_domain", "1e400", "credentials per domain must be a whole number from 1 to 1,000, not '1e400'"),
    ("credentials_per_domain", "1001", "credentials per domain must be between 1 and 1,000, not 1001"),
    ("timezone", "Europe", "unknown time zone 'Europe' (use an IANA name such as UTC or Europe/Berlin)"),
    ("timezone", "../../etc/passwd", "unknown time zone '../../etc/passwd' (use an IANA name such as UTC or "
     "Europe/Berlin)"),
    ("timezone", "Mars/Olympus", "unknown time zone 'Mars/Olympus' (use an IANA name such as UTC or Europe/Berlin)"),
    ("compare_name", "a\x00b", "a name must be 1-40 printable characters"),
])
def test_store_set_refuses_out_of_range_values(cli, isolated_store, key, value, error):
    assert cli("store", "set", "timezone", "UTC").exit_code == 0
    before = settings_rows(isolated_store)
    result = cli("store", "set", key, "--", value)
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", f"Error: {error}\n")
    assert settings_rows(isolated_store) == before


@pytest.mark.parametrize("value, stored", [
    ("$0.675", "0.675"), ("1E+2", "100"), ("1e-3", "0.001"), ("-0", "0"), ("1000", "1000"), ("0.0001", "0.0001"),
])
def test_store_set_price_is_the_price_from_today_as_a_plain_value(cli, isolated_store, value, stored):
    result = cli("store", "set", "--json", "price_per_1000", "--", value)
    assert result.exit_code == 0, result.stderr
    prices = json.loads(cli("billing", "prices", "--json").stdout)
    assert prices[-1]["price_per_1000"] == json.loads(result.stdout)["value"]
    assert Decimal(prices[-1]["price_per_1000"]) == Decimal(stored)
    for args in (["usage", "report", "--json"], ["pricing", "estimate", "--emails", "1000000000000", "--json"],
                 ["usage", "status", "--json"], ["store", "show", "--json"]):
        later = cli(*args)
        assert (later.exit_code, later.stderr) == (0, ""), args


def test_a_price_with_more_than_4_decimals_is_refused_and_changes_nothing(cli, isolated_store):
    result = cli("store", "set", "price_per_1000", "0.00001")
    assert (result.exit_code, result.stderr) == (
        2, "Error: a price per 1,000 emails has at most 4 decimals, not '0.00001'\n")
    assert json.loads(cli("billing", "prices", "--json").stdout) == [
        {"kind": "service", "agency": None, "from": None, "price_per_1000": "0.675"}]


@pytest.mark.parametrize("key, value, stored", [
    ("compare_price_per_1000", "0.80", "0.80"),
    ("default_daily_limit", "1,500", "1500"),
    ("default_daily_limit", "100_000_000", "100000000"),
    ("credentials_per_domain", " 7 ", "7"),
])
def test_store_set_accepts_and_stores_plain_values(cli, isolated_store, key, value, stored):
    result = cli("store", "set", key, "--", value)
    assert result.exit_code == 0, result.stderr
    assert dict(settings_rows(isolated_store))[key] == stored
    # What was stored can never break a later command.
    for args in (["usage", "report", "--json"], ["pricing", "estimate", "--emails", "1000000000000", "--json"],
                 ["usage", "status", "--json"], ["store", "show", "--json"]):
        later = cli(*args)
        assert (later.exit_code, later.stderr) == (0, ""), args


# -- numbers and money: pricing estimate ----------------------------------------------------------

@pytest.mark.parametrize("args, error", [
    (["--emails", "1e23"], "--emails must be a whole number, not '1e23'"),
    (["--emails", "100000000000000000000000"],
     "--emails must be between 0 and 1,000,000,000,000, not 100000000000000000000000"),
    (["--emails", "-1"], "--emails must be between 0 and 1,000,000,000,000, not -1"),
    (["--emails", "10", "--rate", "1e400"], f"{PRICE_RANGE} '1e400'"),
    (["--emails", "10", "--rate", "NaN"], f"{PRICE_RANGE} 'NaN'"),
    (["--emails", "10", "--rate", "-0.1"], f"{PRICE_RANGE} '-0.1'"),
    (["--emails", "10", "--rate", "0.1234567"], "price has more than 6 decimal places: '0.1234567'"),
    (["--emails", "10", "--compare", "SES=1e400"], f"{PRICE_RANGE} '1e400'"),
    (["--per-day", "1000000000000", "--days", "2"],
     "the total number of emails must be between 0 and 1,000,000,000,000, not 2000000000000"),
    (["--per-day", "10", "--days", "0"], "--days must be between 1 and 3,660, not 0"),
    (["--per-day", "10", "--days", "99999999999999999999"],
     "--days must be between 1 and 3,660, not 99999999999999999999"),
    (["--messages", "1000000000000", "--recipients", "2"],
     "the total number of emails must be between 0 and 1,000,000,000,000, not 2000000000000"),
    (["--messages", "10", "--recipients", "100001"], "--recipients must be between 1 and 100,000, not 100001"),
])
def test_pricing_estimate_refuses_out_of_range(cli, args, error):
    result = cli("pricing", "estimate", *args)
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", f"Error: {error}\n")


def test_pricing_estimate_at_the_bounds_is_exact(cli):
    result = cli("pricing", "estimate", "--emails", "1000000000000", "--rate", "999.999999", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["cost"], data["cost_rounded"]) == ("999999999000.00", "999999999000.00")


# -- a store written by an older smtpctl with a value the rules now refuse -------------------------

def test_a_stored_bad_value_is_exit_7_naming_the_fix_and_can_be_replaced(cli, isolated_store):
    world(cli)
    with Store.open(isolated_store) as store, store.write():
        store.execute("INSERT INTO settings (key, value, updated_at) VALUES ('default_daily_limit', '-1', 'x')")
    error = ("Error: the store holds an invalid value for setting default_daily_limit: '-1' (daily limit must be "
             "between 1 and 100,000,000, not -1); set a valid one with: smtpctl store set default_daily_limit "
             "VALUE\n")
    for args in (["usage", "status"], ["account", "list"]):
        result = cli(*args)
        assert (result.exit_code, result.stdout, result.stderr) == (7, "", error), args
    # Commands that do not need the limit still work.
    assert cli("usage", "report", "--json").exit_code == 0
    shown = cli("store", "show", "--json")
    assert shown.exit_code == 0
    assert json.loads(shown.stdout)["default_daily_limit"] == "-1"
    assert shown.stderr == ("Warning: setting default_daily_limit holds an invalid value '-1'; commands that need it "
                            "exit 7 until it is set again: smtpctl store set default_daily_limit VALUE\n")
    fixed = cli("store", "set", "default_daily_limit", "1500")
    assert (fixed.exit_code, fixed.stderr) == (0, "Setting default_daily_limit = 1500 (updated).\n")
    assert cli("usage", "status").exit_code == 0
    audit = json.loads(cli("audit", "--action", "setting.set", "--json").stdout)
    assert audit[0]["details"] == {"old": "-1", "new": "1500"}


def test_a_stored_bad_price_is_exit_7_naming_its_day_and_the_fix(cli, isolated_store):
    world(cli)
    with Store.open(isolated_store) as store, store.write():
        store.execute("INSERT INTO prices (kind, agency_id, from_day, price_per_1000, set_at) "
                      "VALUES ('service', 0, '0001-01-01', '1e400', 'x')")
    error = ("Error: the store holds an invalid price per 1,000 emails from 0001-01-01: '1e400' (price must be "
             "between 0 and 1000 USD per 1,000 emails, not '1e400'); set a valid one with: smtpctl billing set-price "
             "PRICE --from 0001-01-01\n")
    for args in (["usage", "report"], ["pricing", "estimate", "--emails", "10"]):
        result = cli(*args)
        assert (result.exit_code, result.stdout, result.stderr) == (7, "", error), args
    assert cli("usage", "status", "--json").exit_code == 0  # it needs no price
    shown = cli("store", "show", "--json")
    assert (shown.exit_code, json.loads(shown.stdout)["price_per_1000"]) == (0, "1e400")
    assert shown.stderr == ("Warning: setting price_per_1000 holds an invalid value '1e400'; commands that need it "
                            "exit 7 until it is set again: smtpctl billing set-price PRICE --from 0001-01-01\n")
    assert cli("billing", "set-price", "0.675", "--from", "0001-01-01").exit_code == 0
    assert cli("usage", "report").exit_code == 0


# -- numbers: apply and account ------------------------------------------------------------------

@pytest.mark.parametrize("limit, error", [
    ("inf", "accounts[0] shop: daily_limit must be a whole number"),
    ("nan", "accounts[0] shop: daily_limit must be a whole number"),
    ("1e400", "accounts[0] shop: daily_limit must be a whole number"),
    ("1500.0", "accounts[0] shop: daily_limit must be a whole number"),
    ('"1500"', "accounts[0] shop: daily_limit must be a whole number"),
    ("true", "accounts[0] shop: daily_limit must be a whole number"),
    ("0", "accounts[0] shop: daily limit must be between 1 and 100,000,000, not 0"),
    ("-1", "accounts[0] shop: daily limit must be between 1 and 100,000,000, not -1"),
    ("9223372036854775807", "accounts[0] shop: daily limit must be between 1 and 100,000,000, not "
     "9223372036854775807"),
])
def test_apply_uses_the_same_limit_rule(cli, tmp_path, isolated_store, limit, error):
    doc = tmp_path / "fleet.toml"
    doc.write_text(f'[[agencies]]\nname = "acme"\n[[accounts]]\nname = "shop"\nagency = "acme"\n'
                   f"daily_limit = {limit}\n")
    for extra in ([], ["--dry-run"]):
        result = cli("apply", str(doc), *extra)
        assert (result.exit_code, result.stdout, result.stderr) == (2, "", f"Error: {error}\n")
    assert store_untouched(isolated_store)


@pytest.mark.parametrize("args, error", [
    (["account", "set-limit", "shop", "1e400"], "daily limit must be a whole number from 1 to 100,000,000, not '1e400'"),
    (["account", "set-limit", "shop", "NaN"], "daily limit must be a whole number from 1 to 100,000,000, not 'NaN'"),
    (["account", "set-limit", "shop", "100000001"], "daily limit must be between 1 and 100,000,000, not 100000001"),
    (["account", "add", "other", "--agency", "acme", "--daily-limit", "99999999999999999999999"],
     "daily limit must be between 1 and 100,000,000, not 99999999999999999999999"),
])
def test_account_limits_are_bounded(cli, isolated_store, args, error):
    world(cli)
    result = cli(*args)
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", f"Error: {error}\n")


# -- secrets are read with a bound ---------------------------------------------------------------

@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_password_file_on_an_endless_device_fails_at_once(cli, device):
    world(cli)
    started = time.monotonic()
    result = cli("user", "create", "new@mail.shop.example", "--password-file", device)
    assert time.monotonic() - started < 5
    assert (result.exit_code, result.stdout, result.stderr) == (
        2, "", f"Error: --password-file {device} holds more than 1,024 bytes; a password is one short line\n")


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_password_stdin_from_an_endless_device_fails_at_once(cli, device):
    """A real process, with the device as its stdin: it must read a bounded amount and stop."""
    world(cli)
    with open(device, "rb") as stdin:
        proc = subprocess.run([smtpctl_binary(), "user", "create", "new@mail.shop.example", "--password-stdin"],
                              stdin=stdin, capture_output=True, timeout=20)
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        2, b"", b"Error: the password input holds more than 1,024 bytes; a password is one short line\n")


@pytest.mark.parametrize("data, error", [
    (b"abc\xffdefghijklmn\n", "the password input is not UTF-8 text (invalid byte at offset 3)"),
    (b"\xed\xa0\x80 surrogate in utf-8\n", "the password input is not UTF-8 text (invalid byte at offset 0)"),
    (b"x" * 1025, "the password input holds more than 1,024 bytes; a password is one short line"),
    (b"first line is fine\nsecond\n", "the password input has more than one line; give exactly one line"),
])
def test_password_stdin_bytes(cli, data, error):
    world(cli)
    for args in (["user", "create", "new@mail.shop.example"], ["user", "reset", "app@mail.shop.example"],
                 ["user", "verify", "app@mail.shop.example"]):
        result = cli(*args, "--password-stdin", input=data)
        assert (result.exit_code, result.stdout, result.stderr) == (2, "", f"Error: {error}\n"), args


def test_password_file_invalid_utf8_and_a_folder(cli, tmp_path):
    world(cli)
    bad = tmp_path / "pw"
    bad.write_bytes(b"\xc3\x28 not utf-8 at all\n")
    result = cli("user", "create", "new@mail.shop.example", "--password-file", str(bad))
    assert (result.exit_code, result.stderr) == (
        2, f"Error: --password-file {bad} is not UTF-8 text (invalid byte at offset 0)\n")
    result = cli("user", "create", "new@mail.shop.example", "--password-file", str(tmp_path))
    assert (result.exit_code, result.stderr) == (2, f"Error: cannot read --password-file {tmp_path}: Is a directory\n")


def test_a_password_of_the_longest_length_still_fits(cli):
    world(cli)
    longest = "é" * 128  # 256 bytes of UTF-8, well under the bound
    result = cli("user", "create", "new@mail.shop.example", "--password-stdin", input=(longest + "\n").encode())
    assert result.exit_code == 0, result.stderr
    assert cli("user", "verify", "new@mail.shop.example", "--password-stdin",
               input=(longest + "\n").encode()).exit_code == 0


@pytest.mark.parametrize("entry, error", [
    ('password_file = "/dev/zero"', "password_file /dev/zero holds more than 1,024 bytes; a password is one short line"),
    ('password_file = "/dev/urandom"', "password_file /dev/urandom holds more than 1,024 bytes; a password is one "
     "short line"),
    ('password_file = "BAD"', "password_file {dir}/BAD is not UTF-8 text (invalid byte at offset 2)"),
    ('password_file = "a\\u0000b"', "cannot read password_file {dir}/a\x00b: the path contains a NUL character"),
    ('password_env = "SMTPCTL_TEST_BAD_PW"', "password_env SMTPCTL_TEST_BAD_PW is not UTF-8 text"),
])
def test_apply_reads_secrets_with_the_same_bound(cli, tmp_path, monkeypatch, entry, error):
    world(cli)
    (tmp_path / "BAD").write_bytes(b"ab\xff long enough password\n")
    monkeypatch.setenv("SMTPCTL_TEST_BAD_PW", "long enough password \udcff")
    doc = tmp_path / "fleet.toml"
    doc.write_text(f'[[credentials]]\nlogin = "new@mail.shop.example"\n{entry}\n')
    started = time.monotonic()
    result = cli("apply", str(doc), "--dry-run")
    assert time.monotonic() - started < 5
    expected = "Error: credentials[0] new@mail.shop.example: " + error.format(dir=tmp_path) + "\n"
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", expected)


# -- read-only commands never create a store ------------------------------------------------------

READ_ONLY = [
    (["agency", "list"], 0), (["agency", "show", "acme"], 3),
    (["account", "list"], 0), (["account", "show", "shop"], 3),
    (["domain", "list"], 0), (["domain", "show", "mail.shop.example"], 3),
    (["user", "list"], 0), (["user", "show", "app@mail.shop.example"], 3),
    (["user", "verify", "app@mail.shop.example", "--password-stdin"], 3),
    (["settings"], 0), (["settings", "app@mail.shop.example"], 3),
    (["usage", "status"], 0), (["usage", "status", "shop"], 3), (["usage", "report"], 0),
    (["audit"], 0), (["export"], 0), (["export", "--format", "json"], 0),
    (["store", "show"], 0), (["store", "info"], 0),
]
# Read-only commands that need no stored object: where a named store does not
# exist they too run against an empty one (CLI.md, Invocation).
NO_STORED_OBJECT = [
    (["pricing", "estimate", "--emails", "10"], 0),
    (["apply", "{doc}", "--dry-run"], 0),
]


def _args(args: list[str], tmp_path: Path) -> list[str]:
    doc = tmp_path / "fleet.toml"
    doc.write_text('[[agencies]]\nname = "acme"\n')
    return [a.format(doc=doc) for a in args]


@pytest.mark.sqlite_only("the default path under the XDG data dir, and no file created there")
@pytest.mark.parametrize("args, code", READ_ONLY + NO_STORED_OBJECT,
                         ids=[" ".join(a[:2]) + (f" {a[2]}" if len(a) > 2 else "") for a, _ in READ_ONLY + NO_STORED_OBJECT])
def test_read_only_at_the_default_path_prints_empty_results_and_creates_nothing(cli, isolated_store, tmp_path,
                                                                                  args, code):
    result = cli(*_args(args, tmp_path), input=PW + "\n")
    assert result.exit_code == code, result.stderr
    assert "Traceback" not in result.stderr
    assert not isolated_store.parent.exists()


@pytest.mark.sqlite_only("the default path under the XDG data dir, and no file created there")
def test_read_only_empty_results_at_the_default_path(cli, isolated_store):
    assert (cli("agency", "list", "--json").stdout, cli("user", "list", "--json").stdout) == ("[]\n", "[]\n")
    info = json.loads(cli("store", "info", "--json").stdout)
    assert info == {"path": str(isolated_store), "schema_version": 0, "schema_step": None,
                    "counts": dict.fromkeys(("agencies", "accounts", "domains", "credentials", "usage_events",
                                             "audit"), 0), "size_bytes": 0}
    backup = cli("store", "backup", str(isolated_store.parent.parent / "b.db"))
    assert (backup.exit_code, backup.stderr) == (
        3, f"Error: there is no store at {isolated_store}; a read-only command does not create one: check the path, "
           "or create the store with a command that writes\n")
    assert not isolated_store.parent.exists()


@pytest.mark.sqlite_only("a store file named by --db, SMTPCTL_DB or the config that does not exist")
@pytest.mark.parametrize("how", ["--db", "SMTPCTL_DB", "config"])
@pytest.mark.parametrize("args, _code", READ_ONLY + [(["store", "backup", "{doc}.bak"], 0)],
                         ids=[" ".join(a[:2]) + (f" {a[2]}" if len(a) > 2 else "") for a, _ in READ_ONLY]
                         + ["store backup"])
def test_read_only_at_a_named_path_that_does_not_exist_is_exit_3(cli, tmp_path, monkeypatch, how, args, _code):
    typo = tmp_path / "typo" / "smtpctl.db"
    prefix: list[str] = []
    named = "--db/SMTPCTL_DB"
    if how == "--db":
        prefix = ["--db", str(typo)]
    elif how == "SMTPCTL_DB":
        monkeypatch.setenv("SMTPCTL_DB", str(typo))
    else:
        config = tmp_path / "config.toml"
        config.write_text(f'db = "{typo}"\n')
        named = "the config's db"
    result = cli(*prefix, *_args(args, tmp_path), input=PW + "\n")
    assert (result.exit_code, result.stdout, result.stderr) == (
        3, "", f"Error: there is no store at {typo} (named by {named}); a read-only command does not create one: "
               "check the path, or create the store with a command that writes\n")
    assert not typo.parent.exists()


def _named_missing(tmp_path: Path, monkeypatch, how: str) -> tuple[list[str], Path, str]:
    """A store path that does not exist, named by ``how``: the root options to
    pass, the path, and how the message names who named it."""
    typo = tmp_path / "typo" / "smtpctl.db"
    if how == "--db":
        return ["--db", str(typo)], typo, "--db/SMTPCTL_DB"
    if how == "SMTPCTL_DB":
        monkeypatch.setenv("SMTPCTL_DB", str(typo))
        return [], typo, "--db/SMTPCTL_DB"
    (tmp_path / "config.toml").write_text(f'db = "{typo}"\n')
    return [], typo, "the config's db"


@pytest.mark.sqlite_only("a store file named by --db, SMTPCTL_DB or the config that does not exist")
@pytest.mark.parametrize("how", ["--db", "SMTPCTL_DB", "config"])
def test_pricing_estimate_at_a_named_path_that_does_not_exist_uses_the_defaults(cli, tmp_path, monkeypatch, how):
    prefix, typo, named = _named_missing(tmp_path, monkeypatch, how)
    result = cli(*prefix, "pricing", "estimate", "--emails", "1000", "--json")
    assert (result.exit_code, result.stderr) == (
        0, f"Note: there is no store at {typo} (named by {named}); running against an empty store with the default "
           "settings (none is created).\n")
    data = json.loads(result.stdout)
    assert (data["emails"], data["rate_per_1000"], data["cost"]) == (1000, "0.675", "0.675")
    assert [c["name"] for c in data["comparisons"]] == ["Mailgun"]
    assert not typo.parent.exists()


@pytest.mark.sqlite_only("a store file named by --db, SMTPCTL_DB or the config that does not exist")
@pytest.mark.parametrize("how", ["--db", "SMTPCTL_DB", "config"])
def test_apply_dry_run_at_a_named_path_that_does_not_exist_plans_against_an_empty_store(cli, tmp_path, monkeypatch,
                                                                                         how):
    prefix, typo, named = _named_missing(tmp_path, monkeypatch, how)
    note = (f"Note: there is no store at {typo} (named by {named}); running against an empty store with the default "
            "settings (none is created).\n")
    result = cli(*prefix, *_args(["apply", "{doc}", "--dry-run", "--json"], tmp_path))
    assert (result.exit_code, result.stderr) == (0, note)
    data = json.loads(result.stdout)
    assert (data["dry_run"], data["changes"]) == (True, [{"action": "create", "type": "agency", "name": "acme",
                                                          "details": {}}])
    result = cli(*prefix, *_args(["apply", "{doc}", "--dry-run"], tmp_path))
    assert (result.exit_code, result.stderr) == (
        0, note + "Plan: 1 to create, 0 to update, 0 unchanged, 0 to delete.\n")
    assert not typo.parent.exists()
    # a dry run that would fail still fails as the real run would, with nothing created
    (tmp_path / "blocked.toml").write_text('[[accounts]]\nname = "shop"\nagency = "nobody"\n')
    result = cli(*prefix, "apply", str(tmp_path / "blocked.toml"), "--dry-run")
    assert result.exit_code != 0 and result.stderr.startswith(note + "Error: ")
    assert not typo.parent.exists()


@pytest.mark.sqlite_only("a store file named by --db that does not exist")
def test_commands_that_need_no_store_run_as_a_process_and_create_nothing(run, tmp_path):
    typo = tmp_path / "typo" / "smtpctl.db"
    proc = run("--db", str(typo), "pricing", "estimate", "--per-day", "100", "--json")
    assert (proc.returncode, json.loads(proc.stdout)["emails"], proc.stderr.count("\n")) == (0, 3000, 1)
    assert proc.stderr.startswith(f"Note: there is no store at {typo} (named by --db/SMTPCTL_DB); ")
    proc = run("--db", str(typo), *_args(["apply", "{doc}", "--dry-run", "--json"], tmp_path))
    assert (proc.returncode, json.loads(proc.stdout)["summary"]["create"], proc.stderr.count("\n")) == (0, 1, 1)
    assert not typo.parent.exists()
    proc = run("--db", str(typo), *_args(["apply", "{doc}"], tmp_path))  # the real run creates the store
    assert (proc.returncode, typo.exists()) == (0, True)


@pytest.mark.parametrize("args", [["agency", "add", "acme"], ["store", "set", "timezone", "UTC"],
                                  ["apply", "{doc}"]])
def test_write_commands_still_create_the_store(cli, tmp_path, args):
    db = tmp_path / "new" / "smtpctl.db"
    result = cli("--db", str(db), *_args(args, tmp_path))
    assert result.exit_code == 0, result.stderr
    assert db.exists() and (db.stat().st_mode & 0o777) == 0o600
    assert cli("--db", str(db), "store", "info").exit_code == 0


# -- the client config ---------------------------------------------------------------------------

@pytest.mark.parametrize("content, error", [
    (b'db = "/tmp/x\xff.db"\n', "config file {path} is not UTF-8 text (invalid byte at offset 12); TOML must be UTF-8"),
    (b"\xef\xbb\xbf\xff", "config file {path} is not UTF-8 text (invalid byte at offset 3); TOML must be UTF-8"),
    (b"db = [\n", "config file {path} is not valid TOML: Invalid value (at end of document)"),
    (b"a = " + b"[" * 5000 + b"]" * 5000, "config file {path} is not valid TOML: arrays or tables nested too deep"),
    (b"db = 5\n", "config file {path}: db must be the path of the store, as a string"),
    (b'db = ""\n', "config file {path}: db must be the path of the store, as a string"),
    (b'db = "a\\u0000b"\n', "config file {path}: db must be the path of the store, as a string"),
    (b"actor = true\n", "config file {path}: actor must be a name of 1-100 printable characters"),
    (b'actor = "a\\nb"\n', "config file {path}: actor must be a name of 1-100 printable characters"),
    (b'colour = "blue"\n', "config file {path}: unknown keys 'colour' (known: db, actor)"),
    (b"x" * (1024 * 1024 + 1), "config file {path} is larger than 1,048,576 bytes"),
])
def test_a_bad_config_is_one_error_line_exit_2(cli, tmp_path, isolated_store, content, error):
    path = tmp_path / "config.toml"
    path.write_bytes(content)
    for args in (["agency", "list"], ["agency", "add", "acme"]):
        result = cli(*args)
        assert (result.exit_code, result.stdout, result.stderr) == (2, "", f"Error: {error.format(path=path)}\n")
    assert store_untouched(isolated_store)


@pytest.mark.parametrize("config", ["/dev/zero", "{tmp}"])
def test_a_config_that_is_a_device_or_a_folder(cli, tmp_path, monkeypatch, config):
    config = config.format(tmp=tmp_path)
    result = cli("--config", config, "agency", "list")
    error = (f"config file {config} is larger than 1,048,576 bytes" if config == "/dev/zero"
             else f"cannot read config file {config}: Is a directory")
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", f"Error: {error}\n")


def test_invalid_utf8_arguments_are_exit_2(tmp_path):
    env = {**os.environ}
    proc = subprocess.run([smtpctl_binary().encode(), b"audit", b"--action", b"\xff"], capture_output=True, env=env)
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, b"", b"Error: argument 3 is not valid UTF-8 text\n")


# -- audit filters ----------------------------------------------------------------------------------

def test_audit_action_matches_literally(cli):
    world(cli)
    actions = lambda *a: [e["action"] for e in json.loads(cli("audit", "--json", *a).stdout)]  # noqa: E731
    assert actions("--action", "agency") == ["agency.create"]
    assert actions("--action", "credential") == ["credential.create"]
    for pattern in ("%", "_", "%%", "agenc_", "agen%", "\\", "\\%", "a\\", "_gency", "credential%"):
        assert actions("--action", pattern) == [], pattern
        assert actions("--action", pattern + ".create") == [], pattern
    assert len(actions()) == 4


@pytest.mark.parametrize("args, error", [
    (["--limit", "99999999999999999999999"], "--limit must be between 0 and 1,000,000, not 99999999999999999999999"),
    (["--limit", "1000001"], "--limit must be between 0 and 1,000,000, not 1000001"),
    (["--limit", "-1"], "--limit must be between 0 and 1,000,000, not -1"),
    (["--limit", "1e3"], "--limit must be a whole number, not '1e3'"),
    (["--since", "0001-01-01T00:00:00+14:00"], "date or time '0001-01-01T00:00:00+14:00' is out of range"),
    (["--until", "9999-12-31T23:59:59-12:00"], "date or time '9999-12-31T23:59:59-12:00' is out of range"),
    (["--since", "the day before"], "invalid date or time 'the day before': use 2026-11-26, today, yesterday, "
     "7d (7 days ago) or 2026-11-26T10:00:00Z"),
    (["--since", "2026-02-30"], "invalid date or time '2026-02-30': use 2026-11-26, today, yesterday, 7d (7 days "
     "ago) or 2026-11-26T10:00:00Z"),
])
def test_audit_refusals(cli, args, error):
    world(cli)
    result = cli("audit", *args)
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", f"Error: {error}\n")


def test_audit_dates_at_the_ends_of_the_calendar(cli):
    world(cli)
    everything = cli("audit", "--json", "--limit", "0").stdout
    for args in (["--since", "0001-01-01"], ["--until", "9999-12-31"], ["--since", "0001-01-01T00:00:00Z"],
                 ["--until", "9999-12-31T23:59:59Z"], ["--limit", "1000000"]):
        result = cli("audit", "--json", *args)
        assert (result.exit_code, result.stdout) == (0, everything), args
    assert cli("audit", "--json", "--since", "9999-12-31").stdout == "[]\n"


# -- usage record for a login with no credential ------------------------------------------------------

def test_usage_record_for_a_login_with_no_credential_warns_and_bills(cli):
    world(cli)
    result = cli("usage", "record", "--user", "ghost@mail.shop.example", "--to", "a@x.test", "--to", "A@x.test",
                 "--at", "2026-11-01T10:00:00Z")
    assert (result.exit_code, result.stdout) == (0, "")
    assert result.stderr == (
        "Recorded 1 outbound message (1 email) for ghost@mail.shop.example on 2026-11-01.\n"
        "Warning: there is no SMTP credential ghost@mail.shop.example (never created, or deleted or revoked); the "
        "message was recorded and billed to account shop, which owns mail.shop.example\n")
    report = json.loads(cli("usage", "report", "--since", "2026-11-01", "--until", "2026-11-01", "--by", "user",
                            "--json").stdout)
    assert [(r["user"], r["emails"]) for r in report["rows"]] == [("ghost@mail.shop.example", 1)]
    known = cli("usage", "record", "--user", "app@mail.shop.example", "--recipients", "1")
    assert (known.exit_code, "Warning" in known.stderr) == (0, False)


@pytest.mark.parametrize("at", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00"])
def test_usage_record_at_out_of_range_is_exit_2(cli, at):
    world(cli)
    result = cli("usage", "record", "--user", "app@mail.shop.example", "--recipients", "1", "--at", at)
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1


@pytest.mark.parametrize("actor", ["a\tb", "x" * 101, "a\nb"])
def test_a_bad_smtpctl_actor_is_exit_2(cli, monkeypatch, isolated_store, actor):
    monkeypatch.setenv("SMTPCTL_ACTOR", actor)
    result = cli("agency", "add", "acme")
    assert (result.exit_code, result.stdout, result.stderr) == (
        2, "", "Error: SMTPCTL_ACTOR must be a name of 1-100 printable characters (UTF-8)\n")
    assert store_untouched(isolated_store)


def test_smtpctl_actor_with_bytes_that_are_not_utf8(tmp_path):
    env = {**os.environ, "SMTPCTL_DB": str(tmp_path / "s.db")}
    env_bytes = {k.encode(): v.encode() for k, v in env.items()}
    env_bytes[b"SMTPCTL_ACTOR"] = b"ops-\xff"
    proc = subprocess.run([smtpctl_binary(), "agency", "add", "acme"], capture_output=True, env=env_bytes)
    assert (proc.returncode, proc.stderr) == (
        2, b"Error: SMTPCTL_ACTOR must be a name of 1-100 printable characters (UTF-8)\n")
