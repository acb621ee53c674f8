"""The fast path: ``smtpctl account list`` without typer (issue 12).

Importing typer (its vendored click, ``inspect``, ``subprocess``,
``shellingham``, ``difflib``...) costs more than four bare interpreters, and
a whole ``account list --json`` was to take at most six. So the entry point
(``smtpctl.cli.main``) first offers its arguments to ``run``, which claims
them only when they are exactly

    smtpctl [--db DB] [--config FILE] account list [--agency NAME] [--blocked] [--json] [--csv]

(options in any order and repeated, the last value winning, ``--opt VALUE``
or ``--opt=VALUE``, ``SMTPCTL_DB`` and ``SMTPCTL_CONFIG`` read when the
option is not given, as click does), and then runs what the typer command
runs: the root's ``AppState``, the command's body ``account_list`` (the typer
command ``account list`` calls it too), and the same error mapping and exit
codes. Anything else returns ``None`` and typer parses it: help, completion,
a typo, an unknown option, a value that starts with ``-`` or is empty, a
config file click would refuse (one it cannot read). So every message about
the command line itself stays typer's. tests/cli/test_startup.py runs each
option both ways and compares stdout, stderr and the exit code.
"""

from __future__ import annotations

import os
import sys

from smtpctl.core.directory.accounts import list_accounts

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of every start-up)
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from smtpctl.core.store import Store

COLUMNS = [
    ("name", "Account"), ("agency", "Agency"), ("effective_daily_limit", "Daily limit"),
    ("domains", "Domains"), ("blocked", "Blocked"), ("created_at", "Created (UTC)"),
]
BLOCKED_COLUMNS = [
    ("name", "Account"), ("agency", "Agency"), ("blocked_at", "Blocked since (UTC)"), ("block_kind", "By"),
    ("block_reason", "Why"),
]


def account_list(store: Callable[[], Store], *, agency: str | None, blocked: bool, json_out: bool,
                 csv_out: bool) -> None:
    """``smtpctl account list``: ``store`` opens the invocation's store, read-only."""
    from smtpctl.cli.output import fmt, render_list

    output = fmt(json_out, csv_out)
    rows = list_accounts(store(), agency=agency, blocked=blocked)
    render_list(rows, BLOCKED_COLUMNS if blocked else COLUMNS, output=output,
                empty="No blocked accounts." if blocked else "No accounts.",
                drop=("agency", "block_kind") if blocked else None)


# option -> parameter, for the root and for ``account list``
_ROOT_VALUES = {"--db": "db", "--config": "config"}
_LIST_VALUES = {"--agency": "agency"}
_LIST_FLAGS = {"--blocked": "blocked", "--json": "json_out", "--csv": "csv_out"}


def _options(args: Sequence[str], i: int, values: dict[str, str], flags: dict[str, str],
             into: dict[str, Any]) -> int | None:
    """Read the options at ``args[i:]`` into ``into``; the index of the first
    argument that is not one, or ``None`` for anything this path leaves to typer."""
    while i < len(args) and args[i].startswith("-"):
        name, eq, value = args[i].partition("=")
        if name in values:
            if not eq:
                i += 1
                if i == len(args):
                    return None
                value = args[i]
            if not value or value.startswith("-"):
                return None
            into[values[name]] = value
        elif name in flags and not eq:
            into[flags[name]] = True
        else:
            return None
        i += 1
    return i


def parse(args: Sequence[str]) -> dict[str, Any] | None:
    """The parameters of an ``account list`` command line, or ``None`` when
    the arguments are anything else (typer's to parse)."""
    found: dict[str, Any] = {"db": None, "config": None, "agency": None, "blocked": False, "json_out": False,
                             "csv_out": False}
    i = _options(args, 0, _ROOT_VALUES, {}, found)
    if i is None or list(args[i:i + 2]) != ["account", "list"]:
        return None
    if _options(args, i + 2, _LIST_VALUES, _LIST_FLAGS, found) != len(args):
        return None
    for key, var in (("db", "SMTPCTL_DB"), ("config", "SMTPCTL_CONFIG")):
        if found[key] is None:
            found[key] = os.environ.get(var) or None  # an empty variable is unset, as click reads it
    config = found["config"]
    if config is not None:
        try:
            os.stat(config)
        except OSError:
            pass
        else:
            if not os.access(config, os.R_OK):  # click refuses it ("is not readable"): typer says so
                return None
    return found


class _Pacified:
    """A stream whose flush ignores a closed pipe (click's ``PacifyFlushWrapper``,
    which typer puts on stdout and stderr when a pipe closes)."""

    def __init__(self, wrapped: Any) -> None:
        self.wrapped = wrapped

    def flush(self) -> None:
        try:
            self.wrapped.flush()
        except OSError as exc:
            import errno

            if exc.errno != errno.EPIPE:
                raise

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.wrapped, attr)


def run(args: Sequence[str]) -> int | None:
    """Run ``args`` if they are an ``account list`` command line (its exit
    code), else ``None``. What happens on an error is what typer's
    ``_main`` and ``SmtpctlGroup.main`` do with it."""
    params = parse(args)
    if params is None:
        return None
    from pathlib import Path

    from smtpctl.cli import _check_utf8, _error, _failure
    from smtpctl.cli.state import AppState

    try:
        _check_utf8(args)
        state = AppState(db=params["db"], config_path=Path(params["config"]) if params["config"] else None)
        try:  # typer's context: the store is closed before the error is reported
            account_list(lambda: state.store(read_only=True), agency=params["agency"], blocked=params["blocked"],
                         json_out=params["json_out"], csv_out=params["csv_out"])
        finally:
            state.close()
    except KeyboardInterrupt:  # typer's _main: Exit(130), nothing said
        return 130
    except EOFError:  # typer's _main: a new line, then Abort
        sys.stderr.write("\n")
        _error("aborted; nothing was changed")
        return 130
    except OSError as exc:
        import errno

        if exc.errno != errno.EPIPE:
            return _failure(exc)
        sys.stdout, sys.stderr = _Pacified(sys.stdout), _Pacified(sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - SmtpctlError or a bug: _failure says which
        return _failure(exc)
    return 0
