"""The root of the command line: the entry point ``main``, the root command
and its global options, the table of commands and groups, and the one place
errors become exit codes.

Every error reaches the user through ``SmtpctlGroup.main``: one ``Error:``
line on stderr and the documented exit code, never a traceback unless
``SMTPCTL_DEBUG=1``. The command tree is click's documented lazy group: each
command or group is built (its module imported) when it runs, so ``smtpctl
account list`` imports smtpctl.cli.account and no other group.
"""

# No ``from __future__ import annotations`` here: typer reads the root
# callback's parameters on every run, and as strings it compiles and evaluates
# each annotation again (44 of them): 2.3 -> 1.0 ms of CPU a run, in-process.
import gc
import importlib
import os
import sys
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer._completion_classes import completion_init
from typer._completion_shared import get_completion_script, install
from typer.core import TyperCommand, TyperGroup
from typer.main import get_command_from_info, get_command_name, get_group_from_info

from smtpctl import __version__
from smtpctl.cli.completion import polish
from smtpctl.cli.examples import examples
from smtpctl.cli.output import word
from smtpctl.cli.state import AppState, warn_if_password_on_argv
from smtpctl.core.model.errors import ExitCode, InvalidInput, SmtpctlError

try:  # recent typer (0.28 here) vendors click as typer._click, and raises its exceptions
    from typer._click.core import ParameterSource
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - an older typer (pyproject allows >= 0.20) raises the click package's
    from click.core import ParameterSource
    from click.exceptions import ClickException
from typer import Abort

# The command tree, in the order --help lists it (commands, then groups, as
# typer orders what is registered on one app). Each entry is built only when
# it runs. The one-line help is what the root --help shows, so that listing
# imports no group either (tests/cli/test_startup.py keeps each line equal to
# the first paragraph of the real help).
COMMANDS: dict[str, tuple[str, str, str]] = {
    # name: (module in smtpctl.cli, attribute, one-line help)
    "settings": ("settings", "settings_command", "Show the SMTP server, ports, security and username to configure."),
    "audit": ("audit", "audit_command", "Show the audit trail, newest first."),
    "apply": ("apply", "apply_command", "Create and update objects so the store matches FILE (idempotent)."),
    "export": ("export", "export_command",
               "Export the store as TOML or JSON (no secrets), a Dovecot passwd-file, or a Postfix sender-login "
               "table."),
    "why": ("why", "why_command",
            "Say whether a credential or an account can send now, and every reason it cannot, each with its fix."),
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
    "policy": ("policy", "app", "Postfix SMTP access policy delegation, using the store live."),
    "store": ("store", "app", "Service settings and care of the store file."),
    "billing": ("billing", "app", "Billing: prices in force, prepaid credits, and closed monthly statements."),
    "auth": ("auth", "app", "AUTH of serve: what its password-guess throttle holds, and clearing it."),
    "notify": ("notify", "app",
               "Webhook notices: where they go, what was delivered, and the worker that delivers them."),
}

COMPLETE_VAR = "_SMTPCTL_COMPLETE"


def main() -> None:
    """The ``smtpctl`` entry point (and ``python -m smtpctl``)."""
    try:
        app()
    finally:
        # The process ends now. Frozen, what it made is not walked once more by
        # the interpreter's last collections: ~8 ms of CPU on every command
        # (`python -c "import typer"` 56 ms, with gc.freeze() at its end 49 ms).
        # Everything still runs and closes as before: atexit, the store (closed
        # with the click context), stdout's flush; only garbage in reference
        # cycles is left to the operating system.
        gc.freeze()


def _error(text: str) -> None:
    # One line: scripts read the first line of stderr.
    sys.stderr.write("Error: " + " ".join(str(text).split()) + "\n")


def _check_utf8(args: Sequence[Any]) -> None:
    """Refuse an argument that is not UTF-8 (Python hands its bytes on as lone
    surrogates, which no name, address or SQL parameter can hold)."""
    for position, arg in enumerate(args, start=1):
        if isinstance(arg, str) and any("\ud800" <= c <= "\udfff" for c in arg):
            raise InvalidInput(f"argument {position} is not valid UTF-8 text")


def _failure(exc: BaseException) -> int:
    """The exit code of an error that ended a command (``SmtpctlError``, a bug,
    an interrupt), after its one line on stderr; re-raised with SMTPCTL_DEBUG."""
    if isinstance(exc, KeyboardInterrupt):
        _error("interrupted")
        return 130
    if isinstance(exc, BrokenPipeError):
        return 0
    if os.environ.get("SMTPCTL_DEBUG", "") not in ("", "0"):
        raise exc
    if isinstance(exc, SmtpctlError):
        _error(word(exc))
        return int(exc.exit_code)
    # a bug: say so in one line, no locals, no traceback
    _error(f"internal error ({type(exc).__name__}: {exc}); rerun with SMTPCTL_DEBUG=1 for a traceback")
    return int(ExitCode.INTERNAL)


class LazyCommands(MutableMapping):
    """A group's ``commands``: every name is known at once, each command is
    built (its module imported, its parameters read) on first access, as
    click's documented ``LazyGroup`` does."""

    def __init__(self, names: list[str], build: Callable[[str], Any]) -> None:
        self._names = list(names)
        self._build = build
        self.built: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self.built:
            if name not in self._names:
                raise KeyError(name)
            self.built[name] = self._build(name)
        return self.built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        if name not in self._names:
            self._names.append(name)
        self.built[name] = command

    def __delitem__(self, name: str) -> None:
        self._names.remove(name)
        self.built.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._names))

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._names


class SmtpctlGroup(TyperGroup):
    """The root group; its ``main`` is the one place errors become exit codes.

    Its commands are built lazily; the root's help and shell completion list
    them from the one-line help in ``COMMANDS``/``GROUPS`` instead of
    building them."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        lazy = LazyCommands([*COMMANDS, *GROUPS], build_command)
        for name, command in self.commands.items():
            lazy[name] = command
        self.commands = lazy
        self._listing = 0

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if self._listing and cmd_name not in self.commands.built and cmd_name in self.commands:
            return _summary(cmd_name)
        return self.commands.get(cmd_name)

    def _summaries(self, method: Any, *args: Any) -> Any:
        self._listing += 1
        try:
            return method(*args)
        finally:
            self._listing -= 1

    def format_help(self, ctx: Any, formatter: Any) -> None:
        return self._summaries(super().format_help, ctx, formatter)

    def shell_complete(self, ctx: Any, incomplete: str) -> Any:
        return self._summaries(super().shell_complete, ctx, incomplete)

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if COMPLETE_VAR in os.environ:  # a shell asks for completions: use typer's protocol for it
            completion_init()
        try:
            _check_utf8(sys.argv[1:] if args is None else args)
            rv = super().main(args=args, prog_name=prog_name or "smtpctl", complete_var=complete_var,
                              standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else 0
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
        except (Exception, KeyboardInterrupt) as exc:  # SmtpctlError, an interrupt, a bug
            code = _failure(exc)
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


def _show_completion(value: Optional[Shell]) -> None:
    if value is not None:
        sys.stdout.write(get_completion_script(prog_name="smtpctl", complete_var=COMPLETE_VAR,
                                               shell=value.value) + "\n")
        raise typer.Exit()


def _install_completion(value: Optional[Shell]) -> None:
    if value is not None:
        if value is Shell.zsh:
            shell, path = "zsh", _install_zsh()
        else:
            shell, path = install(shell=value.value, prog_name="smtpctl", complete_var=COMPLETE_VAR)
        sys.stderr.write(f"{shell} completion installed in {path}; it takes effect in a new shell.\n")
        raise typer.Exit()


def _install_zsh() -> Path:
    """typer's zsh install, without the ``zstyle ':completion:*' menu select``
    it adds to .zshrc: how a person's menus look is theirs to choose. Writes
    ~/.zfunc/_smtpctl and, once, the fpath/compinit line that loads it."""
    zshrc = Path.home() / ".zshrc"
    content = zshrc.read_text() if zshrc.is_file() else ""
    line = "fpath+=~/.zfunc; autoload -Uz compinit; compinit"
    if line not in content:
        zshrc.write_text(f"{content.rstrip()}\n{line}\n" if content.strip() else f"{line}\n")
    script = Path.home() / ".zfunc" / "_smtpctl"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(get_completion_script(prog_name="smtpctl", complete_var=COMPLETE_VAR, shell="zsh"))
    return script


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"smtpctl {__version__}\n")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    db: Annotated[Optional[str], typer.Option(
        "--db", envvar="SMTPCTL_DB", metavar="PATH|DSN", help="Store file, or a postgresql:// DSN (default: the user data dir's "
        "smtpctl/smtpctl.db).",
        show_default=False, dir_okay=True)] = None,
    config: Annotated[Optional[Path], typer.Option(
        "--config", envvar="SMTPCTL_CONFIG", metavar="PATH", help="Client config TOML (keys: db, actor).",
        show_default=False)] = None,
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
    show_completion: Annotated[Optional[Shell], typer.Option(
        "--show-completion", metavar="SHELL", callback=_show_completion, is_eager=True, show_default=False,
        help="Print the completion script for SHELL (bash, zsh, fish, powershell, pwsh) and exit.")] = None,
    install_completion: Annotated[Optional[Shell], typer.Option(
        "--install-completion", metavar="SHELL", callback=_install_completion, is_eager=True, show_default=False,
        help="Install completion for SHELL in its start-up file and exit.")] = None,
    no_pager: Annotated[bool, typer.Option(
        "--no-pager", help="Print long tables directly, not through the pager (SMTPCTL_PAGER, PAGER, less).")] = False,
) -> None:
    """Administer SMTP sending credentials and metered usage."""
    if no_pager:
        os.environ["SMTPCTL_NO_PAGER"] = "1"  # read where a table is drawn (smtpctl.cli.pager)
    if db and ctx.get_parameter_source("db") is ParameterSource.COMMANDLINE:
        warn_if_password_on_argv(db, "the --db DSN")
    state = AppState(db=db, config_path=config)
    ctx.obj = state
    ctx.call_on_close(state.close)


def build_command(name: str) -> Any:
    """The click command for one top-level name, built as ``add_typer`` /
    ``command`` on the root app would build it: its module is imported now.
    A group's own commands are built lazily too, so ``account list`` reads
    the parameters of ``list`` alone."""
    module, attribute, _ = COMMANDS.get(name) or GROUPS[name]
    target = getattr(importlib.import_module(f"smtpctl.cli.{module}"), attribute)
    scratch = typer.Typer(name="smtpctl", rich_markup_mode=app.rich_markup_mode)
    if name in COMMANDS:
        scratch.command(name, epilog=examples(name))(target)
        return polish(get_command_from_info(scratch.registered_commands[0],
                                            pretty_exceptions_short=app.pretty_exceptions_short,
                                            rich_markup_mode=app.rich_markup_mode), name)
    scratch.add_typer(target, name=name, epilog=examples(name))
    infos = {info.name or get_command_name(info.callback.__name__): info for info in target.registered_commands}
    registered, target.registered_commands = target.registered_commands, []
    try:  # the group itself (its callback, help, sub-groups) as typer builds it, without its commands
        group = get_group_from_info(scratch.registered_groups[0], pretty_exceptions_short=app.pretty_exceptions_short,
                                    rich_markup_mode=app.rich_markup_mode, suggest_commands=app.suggest_commands)
    finally:
        target.registered_commands = registered
    # typer lists a group's commands before its sub-groups
    lazy = LazyCommands([*infos, *group.commands], lambda sub: polish(get_command_from_info(
        infos[sub], pretty_exceptions_short=app.pretty_exceptions_short, rich_markup_mode=app.rich_markup_mode),
        f"{name} {sub}"))
    for sub, command in group.commands.items():
        lazy[sub] = command
        command.epilog = command.epilog or examples(f"{name} {sub}")  # a sub-group (auth throttle)
        for leaf, leaf_command in (getattr(command, "commands", None) or {}).items():  # a sub-group's commands
            polish(leaf_command, f"{name} {sub} {leaf}")
    group.commands = lazy
    return group


app.info.epilog = examples("smtpctl")


def _summary(name: str) -> Any:
    """A stand-in that lists ``name`` in the root's help without building it."""
    return TyperCommand(name=name, help=(COMMANDS.get(name) or GROUPS[name])[2], callback=None)
