"""Where the store and the client config live, and reading that config."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from smtpctl.core.errors import InvalidInput

APP_NAME = "smtpctl"


def default_store_path() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir(APP_NAME, appauthor=False)) / "smtpctl.db"


def default_config_path() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir(APP_NAME, appauthor=False)) / "config.toml"


def load_config(path: Path | None) -> dict[str, Any]:
    """Read the optional client config (TOML). A missing default file is empty.

    Raises ``InvalidInput`` when an explicitly named file is missing or the
    TOML does not parse.
    """
    explicit = path is not None
    path = path or default_config_path()
    if not path.exists():
        if explicit:
            raise InvalidInput(f"config file {path} does not exist")
        return {}
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise InvalidInput(f"cannot read config file {path}: {exc}") from None
    if not raw:  # an empty file is an empty config: no need to load the TOML parser
        return {}
    import tomllib

    try:
        data = tomllib.loads(raw.decode())
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"cannot read config file {path}: {exc}") from None
    unknown = set(data) - {"db", "actor"}
    if unknown:
        raise InvalidInput(f"config file {path}: unknown keys {', '.join(sorted(unknown))} (known: db, actor)")
    return data


def resolve_store_path(cli_db: Path | None, config: dict[str, Any]) -> Path:
    """``--db`` / ``SMTPCTL_DB`` first, then the config's ``db``, then the default."""
    if cli_db is not None:
        return Path(cli_db).expanduser()
    if config.get("db"):
        return Path(str(config["db"])).expanduser()
    return default_store_path()


def env_actor(config: dict[str, Any]) -> str | None:
    return os.environ.get("SMTPCTL_ACTOR") or config.get("actor") or None
