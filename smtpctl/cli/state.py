"""Per-invocation state: the root options, and the store opened on demand."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from smtpctl.core.store import Store


@dataclass
class AppState:
    db: Path | None = None
    config_path: Path | None = None
    _config: dict[str, Any] | None = None
    _store: "Store | None" = field(default=None, repr=False)

    @property
    def config(self) -> dict[str, Any]:
        if self._config is None:
            from smtpctl.core.paths import load_config

            self._config = load_config(self.config_path)
        return self._config

    def store(self) -> "Store":
        if self._store is None:
            from smtpctl.core.paths import env_actor, resolve_store_path
            from smtpctl.core.store import Store

            path = resolve_store_path(self.db, self.config)
            self._store = Store.open(path, actor=env_actor(self.config))
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def store_of(ctx: typer.Context) -> "Store":
    state = ctx.find_object(AppState)
    if state is None:  # a command invoked without the root callback (tests)
        state = AppState()
        ctx.obj = state
        ctx.call_on_close(state.close)
    return state.store()
