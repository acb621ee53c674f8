"""The root command: global options, the command groups, and error mapping.

Every error reaches the user through ``SmtpctlGroup.main``: one ``Error:``
line on stderr and the documented exit code, never a traceback unless
``SMTPCTL_DEBUG=1``.
"""

from __future__ import annotations

import os
import sys
from enum import Enum
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
        if COMPLETE_VAR in os.environ:  # a shell asks for completions: use typer's protocol for it
            from typer._completion_classes import completion_init

            completion_init()
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
                # A bare group name asks for help, as --help does (exit 0). Building
                # the error already rendered it: with rich, get_help() prints the
                # panels itself and returns "" (calling it again printed the help
                # twice); print what is left, as --help's echo() does.
                sys.stdout.write(exc.format_message() + "\n")
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
    add_completion=False,  # our own --show/--install-completion take the shell's name (typer's guess it)
    context_settings={"help_option_names": ["-h", "--help"]},
)


class Shell(str, Enum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"
    powershell = "powershell"
    pwsh = "pwsh"


COMPLETE_VAR = "_SMTPCTL_COMPLETE"


def _show_completion(value: Optional[Shell]) -> None:
    if value is not None:
        from typer._completion_shared import get_completion_script

        sys.stdout.write(get_completion_script(prog_name="smtpctl", complete_var=COMPLETE_VAR,
                                               shell=value.value) + "\n")
        raise typer.Exit()


def _install_completion(value: Optional[Shell]) -> None:
    if value is not None:
        from typer._completion_shared import install

        shell, path = install(shell=value.value, prog_name="smtpctl", complete_var=COMPLETE_VAR)
        sys.stderr.write(f"{shell} completion installed in {path}; it takes effect in a new shell.\n")
        raise typer.Exit()


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"smtpctl {__version__}\n")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    db: Annotated[Optional[str], typer.Option(
        "--db", envvar="SMTPCTL_DB", help="Store file, or a postgresql:// DSN (default: the user data dir's "
        "smtpctl/smtpctl.db).",
        show_default=False, dir_okay=True)] = None,
    config: Annotated[Optional[Path], typer.Option(
        "--config", envvar="SMTPCTL_CONFIG", help="Client config TOML (keys: db, actor).",
        show_default=False)] = None,
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
    show_completion: Annotated[Optional[Shell], typer.Option(
        "--show-completion", metavar="SHELL", callback=_show_completion, is_eager=True, show_default=False,
        help="Print the completion script for SHELL (bash, zsh, fish, powershell, pwsh) and exit.")] = None,
    install_completion: Annotated[Optional[Shell], typer.Option(
        "--install-completion", metavar="SHELL", callback=_install_completion, is_eager=True, show_default=False,
        help="Install completion for SHELL in its start-up file and exit.")] = None,
) -> None:
    """Administer SMTP sending credentials and metered usage."""
    state = AppState(db=db, config_path=config)
    ctx.obj = state
    ctx.call_on_close(state.close)


def _register() -> None:
    from smtpctl.cli import (account, agency, apply, audit, domain, export, imap, pricing, serve, settings, store,
                             usage, user)
    from smtpctl.cli.examples import examples

    app.info.epilog = examples("smtpctl")
    app.add_typer(agency.app, name="agency", epilog=examples("agency"))
    app.add_typer(account.app, name="account", epilog=examples("account"))
    app.add_typer(domain.app, name="domain", epilog=examples("domain"))
    app.add_typer(user.app, name="user", epilog=examples("user"))
    app.command("settings", epilog=examples("settings"))(settings.settings_command)
    app.add_typer(usage.app, name="usage", epilog=examples("usage"))
    app.add_typer(pricing.app, name="pricing", epilog=examples("pricing"))
    app.add_typer(imap.app, name="imap", epilog=examples("imap"))
    app.command("audit", epilog=examples("audit"))(audit.audit_command)
    app.command("apply", epilog=examples("apply"))(apply.apply_command)
    app.command("export", epilog=examples("export"))(export.export_command)
    app.command("serve", epilog=examples("serve"))(serve.serve_command)
    app.add_typer(serve.policy_app, name="policy", epilog=examples("policy"))
    app.add_typer(store.app, name="store", epilog=examples("store"))


_register()


def main() -> None:
    app()
