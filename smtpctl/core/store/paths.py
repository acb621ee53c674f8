"""Where the store and the client config live, and reading that config."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from smtpctl.core.model.errors import InvalidInput

APP_NAME = "smtpctl"


def default_store_path() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir(APP_NAME, appauthor=False)) / "smtpctl.db"


def default_config_path() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir(APP_NAME, appauthor=False)) / "config.toml"


MAX_CONFIG_BYTES = 1024 * 1024  # a client config is a few lines; a bigger file is not one


def parse_toml(data: bytes, what: str) -> dict[str, Any]:
    """Decode and parse a TOML document (UTF-8, as TOML requires).

    Raises ``InvalidInput`` naming ``what`` for bytes that are not UTF-8 (with
    the offset of the first bad byte), TOML that does not parse, and nesting
    too deep to parse.
    """
    import tomllib

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{what} is not UTF-8 text (invalid byte at offset {exc.start}); "
                           "TOML must be UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{what} is not valid TOML: {exc}") from None
    except RecursionError:
        raise InvalidInput(f"{what} is not valid TOML: arrays or tables nested too deep") from None


MAX_INPUT_BYTES = 64 * 1024 * 1024  # an apply document or accounts file: far above any real fleet


def read_source(source: str, what: str, limit: int = MAX_INPUT_BYTES) -> bytes:
    """At most ``limit`` bytes of ``source``, a path or ``-`` for stdin.

    The one reader of whole-document inputs (``apply``, ``user import``):
    /dev/zero, an endless pipe or a huge file fails fast with ``InvalidInput``
    instead of growing until the process is killed.
    """
    if source != "-":
        return read_bounded(Path(source), limit, what)
    import sys

    data = sys.stdin.buffer.read(limit + 1)
    if len(data) > limit:
        raise InvalidInput(f"{what} on stdin is larger than {limit:,} bytes")
    return data


def read_bounded(path: Path, limit: int, what: str) -> bytes:
    """At most ``limit`` bytes of ``path``; raises ``InvalidInput`` when it holds
    more (so /dev/zero or a huge file fails fast) or cannot be read."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise InvalidInput(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # a NUL in the path
        raise InvalidInput(f"cannot read {what} {path!r}: {exc}") from None
    if len(data) > limit:
        raise InvalidInput(f"{what} {path} is larger than {limit:,} bytes")
    return data


def load_config(path: Path | None) -> dict[str, Any]:
    """Read the optional client config (TOML). A missing default file is empty.

    Raises ``InvalidInput`` when an explicitly named file is missing, the file
    is not UTF-8 or not TOML, is over 1 MiB, has an unknown key, or a key of
    the wrong type (``db`` and ``actor`` are non-empty strings).
    """
    explicit = path is not None
    path = path or default_config_path()
    if not path.exists():
        if explicit:
            raise InvalidInput(f"config file {path} does not exist")
        return {}
    raw = read_bounded(path, MAX_CONFIG_BYTES, "config file")
    if not raw:  # an empty file is an empty config: no need to load the TOML parser
        return {}
    data = parse_toml(raw, f"config file {path}")
    unknown = set(data) - {"db", "actor"}
    if unknown:
        shown = ", ".join(repr(k)[:40] for k in sorted(unknown))
        raise InvalidInput(f"config file {path}: unknown keys {shown} (known: db, actor)")
    db = data.get("db")
    if db is not None and (not isinstance(db, str) or not db.strip() or "\0" in db):
        raise InvalidInput(f"config file {path}: db must be the path of the store, as a string")
    actor = data.get("actor")
    if actor is not None and (not isinstance(actor, str) or not _valid_actor(actor)):
        raise InvalidInput(f"config file {path}: actor must be a name of 1-100 printable characters")
    return data


def store_location(cli_db: str | Path | None, config: dict[str, Any]) -> tuple[Path | str, str | None]:
    """Where the store is, and who named it: ``--db``/``SMTPCTL_DB``, the
    config's ``db``, or ``None`` for the default path. A PostgreSQL DSN
    (``postgresql://…``) is returned as the string it is."""
    from smtpctl.core.store.dsn import is_dsn

    if cli_db is not None:
        return (str(cli_db) if is_dsn(str(cli_db)) else Path(cli_db).expanduser()), "--db/SMTPCTL_DB"
    if config.get("db"):
        db = str(config["db"])
        return (db if is_dsn(db) else Path(db).expanduser()), "the config's db"
    return default_store_path(), None



def _valid_actor(actor: str) -> bool:
    return bool(actor.strip()) and len(actor) <= 100 and actor.isprintable() and not any(
        "\ud800" <= c <= "\udfff" for c in actor)


def env_actor(config: dict[str, Any]) -> str | None:
    """Who the audit trail names: ``SMTPCTL_ACTOR``, else the config's ``actor``.

    Raises ``InvalidInput`` when ``SMTPCTL_ACTOR`` is not 1-100 printable
    characters of valid UTF-8 (it goes into every audit row)."""
    actor = os.environ.get("SMTPCTL_ACTOR")
    if actor:
        if not _valid_actor(actor):
            raise InvalidInput("SMTPCTL_ACTOR must be a name of 1-100 printable characters (UTF-8)")
        return actor
    return config.get("actor") or None
