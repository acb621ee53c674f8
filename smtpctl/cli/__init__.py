"""The root command: global options, the command groups, and error mapping.

Every error reaches the user through ``SmtpctlGroup.main``: one ``Error:``
line on stderr and the documented exit code, never a traceback unless
``SMTPCTL_DEBUG=1``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from smtpctl import __version__
from smtpctl.cli.state import AppState
from smtpctl.core.errors import ExitCode, SmtpctlError

try:  # typer >= 0.29 vendors click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer
    from click.exceptions import ClickException
from typer import Abort


def _debug() -> bool:
    return os.environ.get("SMTPCTL_DEBUG", "") not in ("", "0")


def _error(text: str) -> None:
    # One line: scripts read the first line of stderr.
    sys.stderr.write("Error: " + " ".join(str(text).split()) + "\n")


def _check_utf8(args: Any) -> None:
    """Refuse an argument that is not UTF-8 (Python hands its bytes on as lone
    surrogates, which no name, address or SQL parameter can hold)."""
    from smtpctl.core.errors import InvalidInput

    for position, arg in enumerate(args, start=1):
        if isinstance(arg, str) and any("\ud800" <= c <= "\udfff" for c in arg):
            raise InvalidInput(f"argument {position} is not valid UTF-8 text")


class SmtpctlGroup(TyperGroup):
    """The root group; its ``main`` is the one place errors become exit codes."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            _check_utf8(sys.argv[1:] if args is None else args)
            rv = super().main(args=args, prog_name=prog_name or "smtpctl", complete_var=complete_var,
                              standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else 0
        except SmtpctlError as exc:
            if _debug():
                raise
            _error(exc.message)
            code = int(exc.exit_code)
        except ClickException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":
                # A bare group name asks for help: print it, as --help does.
                sys.stdout.write(exc.ctx.get_help() + "\n")  # type: ignore[attr-defined]
                code = ExitCode.OK
            else:
                _error(exc.format_message())
                code = ExitCode.INVALID if exc.exit_code == 2 else exc.exit_code
        except Abort:
            _error("aborted; nothing was changed")
            code = 130
        except KeyboardInterrupt:
            _error("interrupted")
            code = 130
        except BrokenPipeError:
            code = 0
        except Exception as exc:  # a bug: say so in one line, no locals, no traceback
            if _debug():
                raise
            _error(f"internal error ({type(exc).__name__}: {exc}); rerun with SMTPCTL_DEBUG=1 for a traceback")
            code = ExitCode.INTERNAL
        if standalone_mode:
            sys.exit(int(code))
        return int(code)


app = typer.Typer(
    cls=SmtpctlGroup,
    name="smtpctl",
    help="Administer SMTP sending credentials and metered usage for agencies and their sub-accounts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"smtpctl {__version__}\n")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    db: Annotated[Optional[Path], typer.Option(
        "--db", envvar="SMTPCTL_DB", help="Store file (default: the user data dir's smtpctl/smtpctl.db).",
        show_default=False, dir_okay=True)] = None,
    config: Annotated[Optional[Path], typer.Option(
        "--config", envvar="SMTPCTL_CONFIG", help="Client config TOML (keys: db, actor).",
        show_default=False)] = None,
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """Administer SMTP sending credentials and metered usage."""
    state = AppState(db=db, config_path=config)
    ctx.obj = state
    ctx.call_on_close(state.close)


def _register() -> None:
    from smtpctl.cli import (account, agency, apply, audit, domain, export, imap, pricing, serve, settings, store,
                             usage, user)

    app.add_typer(agency.app, name="agency")
    app.add_typer(account.app, name="account")
    app.add_typer(domain.app, name="domain")
    app.add_typer(user.app, name="user")
    app.command("settings")(settings.settings_command)
    app.add_typer(usage.app, name="usage")
    app.add_typer(pricing.app, name="pricing")
    app.add_typer(imap.app, name="imap")
    app.command("audit")(audit.audit_command)
    app.command("apply")(apply.apply_command)
    app.command("export")(export.export_command)
    app.command("serve")(serve.serve_command)
    app.add_typer(serve.policy_app, name="policy")
    app.add_typer(store.app, name="store")


_register()


def main() -> None:
    app()
