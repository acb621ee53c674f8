import hashlib
import sqlite3
import stat

import pytest

from smtpctl.core.directory.agencies import add_agency
from smtpctl.core.model.errors import StoreError
from smtpctl.core.store import Store, known_migrations
from smtpctl.core.store.care import backup_store


def file_digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_first_open_creates_file_0600_in_folder_0700(tmp_path):
    path = tmp_path / "new" / "store.db"
    Store.open(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


EXPECTED_TABLES = {
    "settings": ["key", "value", "updated_at"],
    "agencies": ["id", "name", "created_at", "monthly_limit"],
    "accounts": ["id", "agency_id", "name", "daily_limit", "blocked_at", "block_kind", "block_reason",
                 "created_at", "updated_at", "hourly_limit", "monthly_limit"],
    "domains": ["id", "name", "account_id", "agency_id", "created_at"],
    "credentials": ["id", "domain_id", "name", "login", "password_hash", "created_at", "updated_at",
                    "hourly_limit", "daily_limit"],
    "usage_events": ["id", "source_id", "at", "day", "direction", "agency_id", "account_id", "domain", "login",
                     "to_count", "cc_count", "bcc_count", "emails", "recorded_at"],
    "usage_daily": ["day", "agency_id", "account_id", "domain", "login", "direction", "messages", "emails"],
    "usage_hourly": ["account_id", "hour", "login", "emails"],
    "audit": ["id", "at", "actor", "action", "object_type", "object_name", "account", "details"],
    "auth_attempts": ["id", "client", "login", "state", "at"],
    "auth_trusted": ["login", "client", "expires"],
    "prices": ["id", "kind", "agency_id", "from_day", "price_per_1000", "set_at"],
    "agency_billing": ["agency_id", "mode", "warn_below"],
    "credits": ["id", "agency_id", "amount", "note", "ref", "at", "day", "actor"],
    "statements": ["id", "number", "agency_id", "month", "closed_at", "document"],
    "billed": ["statement_id", "agency_id", "account_id", "day", "direction", "messages", "emails"],
    "months_closed": ["month", "closed_at"],
    "usage_pruned": ["id", "before_day", "pruned_at"],
    "revoked_credentials": ["login", "password_hash", "reason", "day", "revoked_at", "expires"],
    "notices": ["id", "msg_id", "kind", "data", "created_at", "once_key"],
    "notify_endpoints": ["id", "url", "events", "secret", "created_at"],
    "notice_deliveries": ["notice_id", "endpoint_id", "status", "attempts", "next_attempt_at", "lease_until",
                          "lease_token", "last_http_status", "last_error", "updated_at"],
}


def test_blank_store_migrates_to_expected_schema(tmp_path):
    with Store.open(tmp_path / "s.db") as store:
        for table, columns in EXPECTED_TABLES.items():
            assert store.columns(table) == columns, table
        assert set(store.tables()) == {*EXPECTED_TABLES, "_sqlite_migrations"}
        assert store.schema_version() == known_migrations()
        assert store.scalar("PRAGMA journal_mode") == "wal"
        assert store.scalar("PRAGMA foreign_keys") == 1
        assert {"audit_no_update", "audit_no_delete"} <= store.triggers()
        assert {f"{t}_no_{verb}" for t in ("credits", "statements", "billed") for verb in ("update", "delete")} \
            <= store.triggers()
        assert store.integrity_ok()


def test_migrations_table_is_the_one_sqlite_utils_keeps(tmp_path):
    """Stores written by earlier smtpctl recorded their steps with sqlite-utils'
    Migrations: the table must stay the same so old and new read each other."""
    from sqlite_utils import Database
    from sqlite_utils.migrations import Migrations

    with sqlite3.connect(tmp_path / "theirs.db") as conn:
        Migrations("smtpctl").ensure_migrations_table(Database(conn))
        theirs = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    Store.open(tmp_path / "ours.db").close()
    with sqlite3.connect(tmp_path / "ours.db") as conn:
        ours = conn.execute("SELECT type, name, sql FROM sqlite_master WHERE name LIKE '%sqlite_migrations%' "
                            "ORDER BY name").fetchall()

    def normal(rows):
        return [(t, n, " ".join(sql.replace("IF NOT EXISTS ", "").split())) for t, n, sql in rows]

    assert normal(ours) == normal(theirs)


def test_migrating_twice_changes_nothing(tmp_path):
    path = tmp_path / "s.db"
    Store.open(path).close()
    with sqlite3.connect(path) as conn:
        before = conn.execute("SELECT * FROM _sqlite_migrations").fetchall()
        schema = conn.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall()
    Store.open(path).close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT * FROM _sqlite_migrations").fetchall() == before
        assert conn.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall() == schema


def test_store_from_a_newer_smtpctl_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "s.db"
    Store.open(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
                     "VALUES ('smtpctl', '9999_from_the_future', 'x')")
    digest = file_digest(path)
    with pytest.raises(StoreError, match="newer smtpctl"):
        Store.open(path)
    assert file_digest(path) == digest


def test_corrupt_file_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "s.db"
    path.write_bytes(b"this is not sqlite" * 100)
    digest = file_digest(path)
    with pytest.raises(StoreError, match="not a readable smtpctl store"):
        Store.open(path)
    assert file_digest(path) == digest


def test_foreign_sqlite_file_is_refused(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE photos (id INTEGER)")
    with pytest.raises(StoreError, match="not an smtpctl store"):
        Store.open(path)


def test_directory_is_refused(tmp_path):
    with pytest.raises(StoreError, match="is a folder"):
        Store.open(tmp_path)


def test_audit_trail_refuses_update_and_delete(store_at):
    with Store.open(store_at, actor="alice") as store:
        add_agency(store, "acme")
        row = store.query("SELECT actor, action, object_type, object_name FROM audit")
        assert row == [{"actor": "alice", "action": "agency.create", "object_type": "agency", "object_name": "acme"}]
        for statement in ("UPDATE audit SET actor = 'mallory'", "DELETE FROM audit"):
            with pytest.raises(StoreError, match="append-only"):
                with store.write():
                    store.execute(statement)
        assert store.scalar("SELECT count(*) FROM audit") == 1


def test_write_rolls_back_everything_on_error(store_at):
    with Store.open(store_at) as store:
        with pytest.raises(RuntimeError):
            with store.write():
                store.insert_agency("acme")
                store.audit("agency.create", "agency", "acme")
                raise RuntimeError("boom")
        assert store.agencies() == []
        assert store.scalar("SELECT count(*) FROM audit") == 0


def test_locked_store_is_a_store_error(tmp_path):
    path = tmp_path / "s.db"
    Store.open(path).close()
    holder = sqlite3.connect(path)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with Store.open(path, busy_timeout=0.1) as store:
            with pytest.raises(StoreError, match="locked"):
                add_agency(store, "acme")
    finally:
        holder.rollback()
        holder.close()


def test_backup_is_a_working_store(tmp_path):
    with Store.open(tmp_path / "s.db") as store:
        add_agency(store, "acme")
        result = backup_store(store, tmp_path / "copy.db")
    assert result["path"] == str(tmp_path / "copy.db")
    assert stat.S_IMODE((tmp_path / "copy.db").stat().st_mode) == 0o600
    with Store.open(tmp_path / "copy.db") as copy:
        assert [a.name for a in copy.agencies()] == ["acme"]


def test_migration_names_match_the_migrations():
    from smtpctl.core.store import MIGRATION_NAMES, MIGRATIONS

    assert [m.name for m in MIGRATIONS] == known_migrations() == list(MIGRATION_NAMES)
    assert all(m.sqlite.strip() and m.postgresql.strip() for m in MIGRATIONS)



# -- PostgreSQL ------------------------------------------------------------------------


def test_postgresql_store_migrates_to_the_same_schema(pg_dsn):
    with Store.open(pg_dsn) as store:
        assert store.engine == "postgresql"
        for table, columns in EXPECTED_TABLES.items():
            assert store.columns(table) == columns, table
        assert set(store.tables()) == {*EXPECTED_TABLES, "smtpctl_migrations"}
        assert store.schema_version() == known_migrations()
        assert {"audit_no_update", "audit_no_delete", "audit_no_truncate"} <= store.triggers()
        assert store.integrity_ok()
        add_agency(store, "Acme")
        from smtpctl.core.model.errors import AlreadyExists

        with pytest.raises(AlreadyExists, match="already exists"):
            add_agency(store, "ACME")  # names are one case-insensitively, as on SQLite
        assert store.agency("acme").name == "Acme"
    with Store.open(pg_dsn) as again:  # migrating twice changes nothing
        assert again.schema_version() == known_migrations()
        assert again.scalar("SELECT count(*) FROM smtpctl_migrations") == len(known_migrations())


def test_postgresql_database_of_another_application_is_refused(pg_dsn):
    import psycopg

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE photos (id INTEGER)")
    with pytest.raises(StoreError, match="not an smtpctl store"):
        Store.open(pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0] == 1


def test_postgresql_store_from_a_newer_smtpctl_is_refused(pg_dsn):
    Store.open(pg_dsn).close()
    import psycopg

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO smtpctl_migrations (migration_set, name, applied_at) "
                     "VALUES ('smtpctl', '9999_from_the_future', 'x')")
    with pytest.raises(StoreError, match="newer smtpctl"):
        Store.open(pg_dsn)


def test_postgresql_writers_wait_for_the_one_write_lock_then_give_up(pg_dsn):
    holder = Store.open(pg_dsn)
    try:
        with holder.write():
            with Store.open(pg_dsn, busy_timeout=0.2) as store:
                with pytest.raises(StoreError, match="locked by another writer"):
                    add_agency(store, "acme")
                assert store.agencies() == []  # reads take no lock
        with Store.open(pg_dsn, busy_timeout=0.2) as store:
            add_agency(store, "acme")
            assert [a.name for a in store.agencies()] == ["acme"]
    finally:
        holder.close()


def test_postgresql_unreachable_is_one_store_error(tmp_path):
    with pytest.raises(StoreError) as err:
        Store.open(f"postgresql://nobody:secret@/nothing?host={tmp_path}&connect_timeout=2")
    text = str(err.value)
    assert text.startswith("cannot reach the PostgreSQL store postgresql://nobody@/nothing") and "secret" not in text
    assert "\n" not in text


def test_postgresql_clock_is_the_servers(pg_dsn):
    from datetime import timedelta

    from smtpctl.core.model.clock import utc_now

    with Store.open(pg_dsn) as store:
        with store.write():
            now = store.now()
        assert now.utcoffset() == timedelta(0)
        assert abs(now - utc_now()) < timedelta(seconds=5)


def test_sqlite_users_never_load_psycopg(tmp_path):
    import subprocess
    import sys

    code = ("import sys; from smtpctl.core.store import Store; from smtpctl.core.directory.agencies import add_agency; "
            f"s = Store.open({str(tmp_path / 's.db')!r}); add_agency(s, 'acme'); s.close(); "
            "print(sorted(m for m in sys.modules if m.startswith(('psycopg', 'sqlite_utils'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_settings_read_once_per_write_follow_every_change_in_it(store_at):
    """Inside one write transaction the settings are read once (a group commit's batch does not read them
    per message); a change made in the transaction, or undone by a savepoint, is seen at once."""
    from smtpctl.core.directory.settings import effective_settings

    with Store.open(store_at) as store:
        with store.write():
            assert effective_settings(store)["timezone"] == "UTC"
            store.put_setting("timezone", "Europe/Berlin")
            assert effective_settings(store)["timezone"] == "Europe/Berlin"
            with pytest.raises(RuntimeError):
                with store.savepoint():
                    store.put_setting("timezone", "Asia/Tokyo")
                    assert effective_settings(store)["timezone"] == "Asia/Tokyo"
                    raise RuntimeError("undo this step")
            assert effective_settings(store)["timezone"] == "Europe/Berlin"
            store.delete_setting("timezone")
            assert effective_settings(store)["timezone"] == "UTC"
        store.put_setting("timezone", "Europe/Paris")  # outside write(): no memo to go stale
        assert effective_settings(store)["timezone"] == "Europe/Paris"
