"""Per-invocation state: the root options, and the store opened on demand."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from smtpctl.cli.output import message, warning
from smtpctl.core.model.errors import NotFound

if TYPE_CHECKING:
    from smtpctl.core.store import Store


def warn_if_password_on_argv(location: str | None, what: str) -> None:
    """Warn (once, on stderr) when a PostgreSQL DSN given on the command line
    holds a password: argv is visible to every local user in ``ps``. The
    command still runs; docs/store.md gives the ways without one."""
    from smtpctl.core.store.dsn import dsn_passwords, is_dsn

    if location and is_dsn(location) and dsn_passwords(location):
        warning(f"{what} holds a password, which every local user can read in ps; give it in PGPASSWORD, "
                "~/.pgpass or a service file instead (docs/store.md)")


@dataclass
class AppState:
    """The root options of one invocation; the config and the store are read
    on first use."""

    db: str | Path | None = None
    config_path: Path | None = None
    _config: dict[str, Any] | None = field(default=None, init=False, repr=False)
    _store: Store | None = field(default=None, init=False, repr=False)

    @property
    def config(self) -> dict[str, Any]:
        if self._config is None:
            from smtpctl.core.store.paths import load_config  # deferred with the store: see store()

            self._config = load_config(self.config_path)
        return self._config

    def store(self, *, read_only: bool = False, must_exist: bool = False, empty_ok: bool = False,
              note: bool = True) -> Store:
        """The store, opened once per invocation.

        A read-only command never creates one. When the file does not exist:
        at the default path it gets an empty store in memory (a fresh install
        lists nothing); at a path that was given (``--db``, ``SMTPCTL_DB``,
        the config's ``db``: a typo must not look like an empty store), or
        with ``must_exist``, ``NotFound`` naming the path. ``empty_ok`` is for
        a command that needs no stored object (``pricing estimate``, ``apply
        --dry-run``): at a given path it too gets an empty store, with the
        default settings, and one ``Note:`` line on stderr says so (unless
        ``note`` is false: a command that plans first and writes after).
        """
        if self._store is None:
            # Imported here, not at the top: --version and --help open no
            # store, and loading the store's modules takes 17 ms (measured
            # after typer; `python -c "import typer"` is 58 ms in all).
            from smtpctl.core.store import Store
            from smtpctl.core.store.paths import env_actor, store_location

            path, named_by = store_location(self.db, self.config)
            actor = env_actor(self.config)
            if isinstance(path, str):  # a PostgreSQL DSN: the server holds the store
                self._store = Store.open(path, actor=actor)
            elif read_only and not path.exists() and not path.is_symlink():
                if must_exist or (named_by is not None and not empty_ok):
                    by = f" (named by {named_by})" if named_by else ""
                    raise NotFound(f"there is no store at {path}{by}; a read-only command does not create one: "
                                   "check the path, or create the store with a command that writes")
                if named_by is not None and note:
                    message(f"Note: there is no store at {path} (named by {named_by}); running against an empty "
                            "store with the default settings (none is created).")
                self._store = Store.empty(path, actor=actor)
            else:
                self._store = Store.open(path, actor=actor)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def store_of(ctx: typer.Context, *, read_only: bool = False, must_exist: bool = False,
             empty_ok: bool = False, note: bool = True) -> Store:
    """The invocation's store; ``read_only`` for commands that only read (see ``AppState.store``)."""
    state = ctx.find_object(AppState)
    if state is None:  # a command invoked without the root callback (tests)
        state = AppState()
        ctx.obj = state
        ctx.call_on_close(state.close)
    return state.store(read_only=read_only, must_exist=must_exist, empty_ok=empty_ok, note=note)


def writable_store_of(ctx: typer.Context) -> Store:
    """The invocation's store for writing, after ``store_of(ctx, read_only=True,
    empty_ok=True)`` planned against it: where that was an empty store in
    memory (no store yet), the real one is created now, so a command refused
    while planning leaves no empty store file behind."""
    store = store_of(ctx, read_only=True, empty_ok=True, note=False)
    if store.on_disk:
        return store
    state = ctx.find_object(AppState)
    assert state is not None  # store_of made one
    state.close()
    return state.store()
