"""Per-invocation state: the root options, and the store opened on demand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from smtpctl.core.store import Store


class AppState:
    """The root options of one invocation; the config and the store are read
    on first use. (A plain class: creating a dataclass compiles its methods,
    ~1 ms of every command's start-up.)"""

    def __init__(self, db: str | Path | None = None, config_path: Path | None = None) -> None:
        self.db = db
        self.config_path = config_path
        self._config: dict[str, Any] | None = None
        self._store: Store | None = None

    @property
    def config(self) -> dict[str, Any]:
        if self._config is None:
            from smtpctl.core.store.paths import load_config

            self._config = load_config(self.config_path)
        return self._config

    def store(self, *, read_only: bool = False, must_exist: bool = False) -> "Store":
        """The store, opened once per invocation.

        A read-only command never creates one: when the file does not exist
        it gets an empty store in memory if the path is the default (a fresh
        install lists nothing), and ``NotFound`` naming the path if the path
        was given (``--db``, ``SMTPCTL_DB``, the config's ``db``: a typo must
        not look like an empty store), or ``must_exist`` is set.
        """
        if self._store is None:
            from smtpctl.core.store import Store
            from smtpctl.core.store.paths import env_actor, store_location

            path, named_by = store_location(self.db, self.config)
            actor = env_actor(self.config)
            if isinstance(path, str):  # a PostgreSQL DSN: the server holds the store
                self._store = Store.open(path, actor=actor)
            elif read_only and not path.exists() and not path.is_symlink():
                if named_by is not None or must_exist:
                    from smtpctl.core.model.errors import NotFound

                    by = f" (named by {named_by})" if named_by else ""
                    raise NotFound(f"there is no store at {path}{by}; a read-only command does not create one: "
                                   "check the path, or create the store with a command that writes")
                self._store = Store.empty(path, actor=actor)
            else:
                self._store = Store.open(path, actor=actor)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def store_of(ctx: typer.Context, *, read_only: bool = False, must_exist: bool = False) -> "Store":
    """The invocation's store; ``read_only`` for commands that only read (see ``AppState.store``)."""
    state = ctx.find_object(AppState)
    if state is None:  # a command invoked without the root callback (tests)
        state = AppState()
        ctx.obj = state
        ctx.call_on_close(state.close)
    return state.store(read_only=read_only, must_exist=must_exist)
