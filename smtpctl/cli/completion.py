"""What the shell completes, and how each parameter is named in --help.

Names come from the store (agencies, accounts, domains, logins), read
only when the shell asks; choices (``--by``, ``--format``, ``--window``)
from their lists. ``polish`` is applied to every command as it is built
(``typer_app.build_command``): upper-case metavars (``NAME``, ``PATH``),
the completions, and the command's examples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from smtpctl.cli.examples import examples

BY_CHOICES = ("day", "agency", "account", "domain", "user", "direction")


def _names(kind: str, ctx: Any) -> list[str]:
    """Every stored ``kind`` name; nothing (not an error) when the store cannot be read."""
    from smtpctl.cli.state import AppState

    root = ctx.find_root() if ctx is not None else None
    params = root.params if root is not None else {}
    config = params.get("config")  # while completing, click hands the raw text on
    state = AppState(db=params.get("db"), config_path=Path(config) if config else None)
    try:
        store = state.store(read_only=True)
        if kind == "agency":
            from smtpctl.core.directory.agencies import list_agencies

            return [row["name"] for row in list_agencies(store)]
        if kind == "account":
            from smtpctl.core.directory.accounts import list_accounts

            return [row["name"] for row in list_accounts(store)]
        if kind == "domain":
            from smtpctl.core.directory.domains import list_domains

            return [row["name"] for row in list_domains(store)]
        from smtpctl.core.directory.credentials import list_credentials

        return [credential.login for credential in list_credentials(store)]
    except Exception:  # a shell's completion must never print a traceback
        return []
    finally:
        state.close()


def _completer(kind: str) -> Any:
    def complete(ctx: Any, param: Any, incomplete: str) -> list[str]:
        return [name for name in _names(kind, ctx) if name.lower().startswith(incomplete.lower())]
    return complete


def _choices(values: tuple[str, ...]) -> Any:
    def complete(ctx: Any, param: Any, incomplete: str) -> list[str]:
        return [value for value in values if value.startswith(incomplete)]
    return complete


# Which stored names a parameter takes: by option, then by the group and the argument's name.
_OPTION_KINDS = {"--agency": "agency", "--account": "account", "--domain": "domain", "--user": "login"}
_ARGUMENT_KINDS = {
    ("agency", "name"): "agency", ("agency", "old"): "agency",
    ("account", "name"): "account", ("account", "old"): "account",
    ("domain", "domain"): "domain",
    ("user", "login"): "login", ("user", "logins"): "login", ("settings", "login"): "login",
    ("usage", "account"): "account", ("billing", "agency"): "agency",
}
_OPTION_CHOICES = {"--by": BY_CHOICES, "--window": ("hour", "day", "month")}
_METAVARS = {"login": "LOGIN@DOMAIN", "logins": "LOGIN@DOMAIN..."}


def _metavar(param: Any) -> str:
    name = (param.name or "value")
    if getattr(param, "param_type_name", "") == "option":
        longest = max(param.opts, key=len).lstrip("-")
        name = longest
    return _METAVARS.get(name, name.upper().replace("-", "_"))


def polish(command: Any, path: str) -> Any:
    """``command`` (built for ``path``, e.g. ``account add``) with upper-case
    metavars, completions from the store and the lists of choices, and its
    examples as its epilog."""
    group = path.split()[0]
    for param in command.params:
        is_option = getattr(param, "param_type_name", "") == "option"
        if is_option and (param.is_flag or param.hidden or "--help" in param.opts):
            continue
        if param.metavar is None:
            param.metavar = _metavar(param)
        if not is_option:  # the usage line: NAME, [ACCOUNT], as man pages write them (typer writes {NAME})
            shown = param.metavar if param.required or param.metavar.startswith("[") else f"[{param.metavar}]"
            param.make_metavar = lambda ctx=None, usage=False, shown=shown: shown
        if getattr(param, "_custom_shell_complete", None) is not None:
            continue
        if is_option:
            opt = max(param.opts, key=len)
            kind = _OPTION_KINDS.get(opt)
            choices = _OPTION_CHOICES.get(opt)
        else:
            kind, choices = _ARGUMENT_KINDS.get((group, param.name)), None
        if kind is not None:
            param._custom_shell_complete = _completer(kind)
        elif choices is not None:
            param._custom_shell_complete = _choices(choices)
    if command.epilog is None:
        command.epilog = examples(path)
    return command
