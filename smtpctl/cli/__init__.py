"""The command line: the command table, the entry point and error mapping.

Every error reaches the user through one place, ``smtpctl.cli.typer_app``'s
``SmtpctlGroup.main`` (or the fast path's twin of it, ``smtpctl.cli.fastpath``):
one ``Error:`` line on stderr and the documented exit code, never a traceback
unless ``SMTPCTL_DEBUG=1``.

This module imports no typer (importing typer costs more than four bare
interpreters): ``main`` first offers the arguments to the fast path, which
runs the hottest read command (``account list``) through the same function
as its typer command, and builds the typer application only for everything
else. ``app`` and the rest of the typer root are attributes of this module
all the same (built on first use, from ``smtpctl.cli.typer_app``).
"""

from __future__ import annotations

import os
import sys
from typing import Any

# The command tree, in the order --help lists it (commands, then groups, as
# typer orders what is registered on one app). Each entry is built only when
# it runs: ``smtpctl account list`` imports smtpctl.cli.account and nothing of
# the other groups. The one-line help is what the root --help shows, so that
# listing imports no group either (tests/cli/test_startup.py keeps each line
# equal to the first paragraph of the real help).
COMMANDS: dict[str, tuple[str, str, str]] = {
    # name: (module in smtpctl.cli, attribute, one-line help)
    "settings": ("settings", "settings_command", "Show the SMTP server, ports, security and username to configure."),
    "audit": ("audit", "audit_command", "Show the audit trail, newest first."),
    "apply": ("apply", "apply_command", "Create and update objects so the store matches FILE (idempotent)."),
    "export": ("export", "export_command",
               "Export the store as TOML or JSON (no secrets), a Dovecot passwd-file, or a Postfix sender-login "
               "table."),
    "serve": ("serve", "serve_command",
              "Run an SMTP submission server that authenticates and meters against the store."),
}
GROUPS: dict[str, tuple[str, str, str]] = {
    "agency": ("agency", "app", "Agencies: they own sub-accounts and agency-assigned domains."),
    "account": ("account", "app", "Sub-accounts: they own dedicated domains and SMTP credentials."),
    "domain": ("domain", "app", "Sending domains: dedicated (an account's) or agency-assigned (shared)."),
    "user": ("user", "app", "SMTP credentials: create, list, show, reset, delete, verify."),
    "usage": ("usage", "app", "Usage: record and import messages, check today's count, report usage and cost."),
    "pricing": ("pricing", "app", "Price estimates at the service's rate and at comparison rates."),
    "imap": ("imap", "app", "IMAP settings of common mailbox providers (this service hosts no IMAP/POP)."),
    "policy": ("serve", "policy_app", "Postfix SMTP access policy delegation, using the store live."),
    "store": ("store", "app", "Service settings and care of the store file."),
}

COMPLETE_VAR = "_SMTPCTL_COMPLETE"


def _debug() -> bool:
    return os.environ.get("SMTPCTL_DEBUG", "") not in ("", "0")


def _error(text: str) -> None:
    # One line: scripts read the first line of stderr.
    sys.stderr.write("Error: " + " ".join(str(text).split()) + "\n")


def _check_utf8(args: Any) -> None:
    """Refuse an argument that is not UTF-8 (Python hands its bytes on as lone
    surrogates, which no name, address or SQL parameter can hold)."""
    from smtpctl.core.model.errors import InvalidInput

    for position, arg in enumerate(args, start=1):
        if isinstance(arg, str) and any("\ud800" <= c <= "\udfff" for c in arg):
            raise InvalidInput(f"argument {position} is not valid UTF-8 text")


def _failure(exc: BaseException) -> int:
    """The exit code of an error that ended a command (``SmtpctlError``, a bug,
    an interrupt), after its one line on stderr; re-raised with SMTPCTL_DEBUG."""
    from smtpctl.core.model.errors import ExitCode, SmtpctlError

    if isinstance(exc, KeyboardInterrupt):
        _error("interrupted")
        return 130
    if isinstance(exc, BrokenPipeError):
        return 0
    if _debug():
        raise exc
    if isinstance(exc, SmtpctlError):
        from smtpctl.cli.output import word

        _error(word(exc))
        return int(exc.exit_code)
    # a bug: say so in one line, no locals, no traceback
    _error(f"internal error ({type(exc).__name__}: {exc}); rerun with SMTPCTL_DEBUG=1 for a traceback")
    return int(ExitCode.INTERNAL)


def main() -> None:
    """The ``smtpctl`` entry point."""
    if COMPLETE_VAR not in os.environ:  # a shell asking for completions gets typer's protocol
        from smtpctl.cli.fastpath import run

        code = run(sys.argv[1:])
        if code is not None:
            sys.exit(code)
    typer_main()


def typer_main() -> None:
    """Run the arguments through the typer application (what ``main`` does
    for every command the fast path does not claim)."""
    from smtpctl.cli.typer_app import app

    app()


_TYPER_ROOT = ("app", "SmtpctlGroup", "LazyCommands", "build_command", "root", "Shell")


def __getattr__(name: str) -> Any:
    # The typer root, built on first use: ``from smtpctl.cli import app``.
    if name in _TYPER_ROOT:
        from smtpctl.cli import typer_app

        return getattr(typer_app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
