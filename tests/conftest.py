"""Shared fixtures: every test gets its own store, config and data dirs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# SMTPCTL_TEST_BACKEND=postgresql runs the whole suite on PostgreSQL: every
# test's store is then a fresh database (see ``isolated_store``), and the
# tests marked ``sqlite_only`` (about the SQLite file itself) are skipped.
BACKENDS = ("sqlite", "postgresql")
BACKEND = os.environ.get("SMTPCTL_TEST_BACKEND", "").strip() or "sqlite"
ON_POSTGRESQL = BACKEND == "postgresql"


def pytest_configure(config):
    if BACKEND not in BACKENDS:
        raise pytest.UsageError(f"SMTPCTL_TEST_BACKEND must be one of {', '.join(BACKENDS)}, not {BACKEND!r}")


def pytest_collection_modifyitems(config, items):
    if not ON_POSTGRESQL:
        return
    for item in items:
        marker = item.get_closest_marker("sqlite_only")
        if marker is not None:
            why = marker.args[0] if marker.args else "about the SQLite file"
            item.add_marker(pytest.mark.skip(reason=f"sqlite_only: {why}"))


@pytest.fixture(autouse=True)
def isolated_store(tmp_path, monkeypatch, request) -> Iterator[Path | str]:
    """Point the config and the platform dirs at a temp dir, so no test ever
    touches a real store. The store is at the default path under that dir
    (SMTPCTL_DB unset): read-only commands on a store not created yet then
    print empty results, as on a fresh install; a missing path named by
    --db/SMTPCTL_DB is an error (exit 3), tested where it is meant.

    Under SMTPCTL_TEST_BACKEND=postgresql the store is instead a fresh
    PostgreSQL database, cloned from a migrated template (``SMTPCTL_DB`` is
    its DSN, and this fixture yields the DSN). Tests read or check it through
    ``Store.open(isolated_store)`` and ``store_untouched``, which work on both."""
    home = tmp_path / "home"
    home.mkdir()
    db = home / ".local" / "share" / "smtpctl" / "smtpctl.db"
    monkeypatch.delenv("SMTPCTL_DB", raising=False)
    monkeypatch.setenv("SMTPCTL_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("SMTPCTL_ACTOR", "tester")
    monkeypatch.delenv("SMTPCTL_DEBUG", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    # SMTPCTL_CONFIG names a file that does not exist: an explicit missing
    # config is an error, so tests start with an empty one.
    (tmp_path / "config.toml").write_text("")
    if ON_POSTGRESQL and request.node.get_closest_marker("sqlite_only") is None:
        dsn = request.getfixturevalue("_pg_store")
        monkeypatch.setenv("SMTPCTL_DB", dsn)
        yield dsn
        return
    yield db


def _pg_base() -> str:
    dsn = os.environ.get("SMTPCTL_TEST_PG")
    if not dsn:
        if os.environ.get("CI") == "true" or ON_POSTGRESQL:
            pytest.fail("SMTPCTL_TEST_PG is not set: start a cluster with .ci/pg start DIR and export it "
                        "(.ci/run does this itself)")
        pytest.skip("no PostgreSQL for the tests: start one with .ci/pg start DIR and export SMTPCTL_TEST_PG")
    return dsn


def _with_database(dsn: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


# What a test could change in its database besides the rows: the migrations
# applied, the tables, columns, triggers (and whether enabled), grants, other
# objects in the schema, other schemas, the database's own settings. Equal to
# the fresh copy's: emptying the tables makes it a fresh store again.
_SHAPE = """
SELECT md5(string_agg(x, ',' ORDER BY x)) FROM (
  SELECT 'm ' || migration_set || ' ' || name FROM smtpctl_migrations
  UNION ALL SELECT 'c ' || table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' '
                   || coalesce(column_default, '') FROM information_schema.columns WHERE table_schema = current_schema()
  UNION ALL SELECT 'r ' || relname || ' ' || relkind::text || ' ' || coalesce(relacl::text, '') FROM pg_class
            WHERE relnamespace = current_schema()::regnamespace
  UNION ALL SELECT 't ' || tgname || ' ' || tgenabled::text FROM pg_trigger WHERE NOT tgisinternal
  UNION ALL SELECT 'p ' || proname FROM pg_proc WHERE pronamespace = current_schema()::regnamespace
  UNION ALL SELECT 'n ' || nspname FROM pg_namespace
  UNION ALL SELECT 'd ' || coalesce(setconfig::text, '') FROM pg_db_role_setting
            WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
) shape(x)"""


_DELETE_UP_TO = 5000  # rows; a larger table is truncated


class _PgStores:
    """The stores of a PostgreSQL pass: one database migrated once (the
    template), and one copy of it that each test gets back as a fresh store.

    Between tests the copy is reset: every other connection to it is ended,
    and if its shape is still the fresh copy's (``_SHAPE``) its tables are
    emptied and their ids restarted; otherwise (a test changed the schema, a
    connection would not end, the role may not skip triggers) it is dropped
    and copied again. A copy per test (CREATE DATABASE … TEMPLATE, then
    DROP), or an empty database migrated per test, costs two to three times
    the reset (docs/store.md gives the figures). Migrating an
    empty database is still tested (``pg_dsn``, ``store_at``)."""

    def __init__(self, base: str):
        import uuid

        self.base = base
        self.template = f"tpl_{uuid.uuid4().hex[:16]}"
        self.name: str | None = None
        self.shape: str | None = None

    def admin(self):
        import psycopg

        return psycopg.connect(self.base, autocommit=True)

    def start(self) -> None:
        from smtpctl.core.store import Store

        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {self.template}")
        Store.open(_with_database(self.base, self.template), actor="template").close()

    def take(self) -> str:
        """A fresh store for the next test: its DSN."""
        if self.name is None or not self._reset():
            self._copy()
        return _with_database(self.base, self.name)

    def _copy(self) -> None:
        import uuid

        import psycopg

        with self.admin() as conn:
            if self.name is not None:
                conn.execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
            self.name = f"s_{uuid.uuid4().hex[:16]}"
            conn.execute(f"CREATE DATABASE {self.name} TEMPLATE {self.template}")
        with psycopg.connect(_with_database(self.base, self.name)) as conn:
            self.shape = conn.execute(_SHAPE).fetchone()[0]

    def _reset(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(_with_database(self.base, self.name), autocommit=True) as conn:
                ended = conn.execute("SELECT coalesce(bool_and(pg_terminate_backend(pid, 10000)), true) "
                                     "FROM pg_stat_activity WHERE datname = current_database() "
                                     "AND pid <> pg_backend_pid()").fetchone()[0]
                if not ended or conn.execute(_SHAPE).fetchone()[0] != self.shape:
                    return False
                tables = [r[0] for r in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                    "AND tablename <> 'smtpctl_migrations' ORDER BY tablename").fetchall()]
                big = conn.execute("SELECT " + ", ".join(
                    f"(SELECT count(*) > {_DELETE_UP_TO} FROM (SELECT 1 FROM {t} LIMIT {_DELETE_UP_TO + 1}) x)"
                    for t in tables)).fetchone()
                with conn.transaction():
                    # Neither the audit trail's guards nor the foreign keys fire in this transaction
                    # (a superuser's setting; the role .ci/pg makes is one, else a copy per test).
                    conn.execute("SET LOCAL session_replication_role = replica")
                    # DELETE is cheaper than TRUNCATE's new files for the few rows most tests write.
                    for table, many in zip(tables, big):
                        conn.execute(f"TRUNCATE {table}" if many else f"DELETE FROM {table}")
                    conn.execute("SELECT setval(s.seqrelid, s.seqstart, false) FROM pg_sequence s "
                                 "JOIN pg_depend d ON d.objid = s.seqrelid AND d.deptype IN ('a', 'i') "
                                 "JOIN pg_class t ON t.oid = d.refobjid "
                                 "WHERE t.relnamespace = current_schema()::regnamespace "
                                 "AND t.relname <> 'smtpctl_migrations'")
            return True
        except psycopg.Error:
            return False

    def stop(self) -> None:
        with self.admin() as conn:
            for name in (self.name, self.template):
                if name is not None:
                    conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def _pg_stores() -> Iterator[_PgStores]:
    stores = _PgStores(_pg_base())
    try:
        stores.start()
        yield stores
    finally:
        stores.stop()


@pytest.fixture
def _pg_store(_pg_stores) -> str:
    """A fresh store for this test on the PostgreSQL pass (see ``_PgStores``): its DSN."""
    return _pg_stores.take()


@pytest.fixture
def another_store(tmp_path, request) -> str:
    """A second, empty store on the pass's backend (where a test needs a fresh
    one beside ``isolated_store``): a new SQLite file, or on the PostgreSQL
    pass a new database (``pg_dsn``)."""
    if ON_POSTGRESQL:
        return request.getfixturevalue("pg_dsn")
    return str(tmp_path / "another.db")


def store_untouched(where: str | os.PathLike[str]) -> bool:
    """Nothing was written to the test's store: no SQLite file was created at
    ``where``; for a PostgreSQL DSN (the database exists, migrated, from the
    start), every table is still empty, the settings included."""
    from smtpctl.core.store import Store
    from smtpctl.core.store.dsn import is_dsn

    if not is_dsn(where):
        return not Path(where).exists()
    from smtpctl.core.store.copy import is_empty

    with Store.open(where) as store:
        return is_empty(store)


def store_exists(where: str | os.PathLike[str]) -> bool:
    """A store is at ``where`` (the SQLite file exists; a DSN's database always does)."""
    from smtpctl.core.store.dsn import is_dsn

    return is_dsn(where) or Path(where).exists()


@pytest.fixture
def pg_dsn(request) -> str:
    """A fresh, empty PostgreSQL database for this test (dropped after it):
    its DSN. Skips without SMTPCTL_TEST_PG, fails under CI=true."""
    import uuid

    import psycopg

    base = _pg_base()
    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield _with_database(base, name)
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_at(request, tmp_path) -> str | Path:
    """Where a test's store is, once per backend: an SQLite file, or a fresh
    PostgreSQL database (see ``pg_dsn``)."""
    if request.param == "sqlite":
        return tmp_path / "s.db"
    return request.getfixturevalue("pg_dsn")


def smtpctl_binary() -> str:
    """The installed entry point of the interpreter running the tests."""
    candidate = Path(sys.executable).parent / "smtpctl"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("smtpctl")
    if not found:
        pytest.fail("the smtpctl entry point is not installed: run pip install -e '.[test]'")
    return found


@pytest.fixture
def run():
    """Run the installed smtpctl as a real process; returns CompletedProcess."""
    binary = smtpctl_binary()

    def _run(*args: str, input: str | None = None, env: dict[str, str] | None = None,
             check_rc: int | None = None) -> subprocess.CompletedProcess:
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        proc = subprocess.run([binary, *args], input=input, capture_output=True, text=True, env=full_env,
                              timeout=120, stdin=None if input is not None else subprocess.DEVNULL)
        if check_rc is not None:
            assert proc.returncode == check_rc, (proc.returncode, proc.stdout, proc.stderr)
        return proc

    return _run


def on_terminal(args, answers=(), timeout=60.0, env=None):
    """Run smtpctl on a pseudo-terminal, answering each prompt; returns (rc, screen)."""
    import pty
    import select

    master, slave = pty.openpty()
    proc = subprocess.Popen([smtpctl_binary(), *args], stdin=slave, stdout=slave, stderr=slave, close_fds=True,
                            env={**os.environ, **(env or {})})
    os.close(slave)
    screen, pending = b"", list(answers)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                screen += chunk
                if pending and screen.rstrip().endswith(pending[0][0].encode()):
                    # getpass switches echo off with TCSAFLUSH, which drops
                    # anything typed before it: answer as a person would, a
                    # moment after the prompt.
                    time.sleep(0.3)
                    os.write(master, pending.pop(0)[1].encode() + b"\r")
            elif proc.poll() is not None:
                break
        return proc.wait(timeout=10), screen.decode(errors="replace")
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
