"""Man pages generated from the same help as ``--help``: one page per
command (``smtpctl-account-add.1``) and one for ``smtpctl`` itself.

    python -m smtpctl.cli.manpages man/

writes them; the wheel installs ``man/`` as ``share/man/man1``
(pyproject.toml), and a test keeps the committed pages equal to what this
writes, so a changed option or example changes its page.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from smtpctl.cli.examples import example_lines


def _roff(text: str) -> str:
    """Text as roff: backslashes and dashes escaped, no line read as a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in text.splitlines())


def _paragraphs(text: str) -> list[str]:
    return [" ".join(p.split()) for p in text.strip().split("\n\n") if p.strip()]


def _synopsis(path: str, command: Any, ctx: Any) -> str:
    words = [path]
    for param in command.params:
        if getattr(param, "param_type_name", "") == "argument":
            words.append(param.make_metavar(ctx) if param.metavar is None else param.metavar)
    if any(getattr(p, "param_type_name", "") == "option" for p in command.params):
        words.append("[OPTIONS]")
    if getattr(command, "commands", None):
        words.append("COMMAND")
    return " ".join(words)


def page(path: str, command: Any) -> str:
    """The man page of ``command``, invoked as ``path`` (``smtpctl account add``)."""
    try:  # typer 0.28 vendors click as typer._click (the click package is no dependency of smtpctl)
        from typer._click import Context
    except ImportError:  # an older typer depends on the click package
        from click import Context

    ctx = Context(command, info_name=path)
    name = path.replace(" ", "-")
    help_text = command.help or ""
    summary = _paragraphs(help_text)[0] if help_text.strip() else ""
    out = [f'.TH {name.upper()} 1 "" "smtpctl" "smtpctl manual"', ".SH NAME", f"{_roff(name)} \\- {_roff(summary)}",
           ".SH SYNOPSIS", f".B {_roff(_synopsis(path, command, ctx))}", ".SH DESCRIPTION"]
    for paragraph in _paragraphs(help_text):
        out += [_roff(paragraph), ".PP"]
    out.pop()
    subs = getattr(command, "commands", None)
    if subs:
        out.append(".SH COMMANDS")
        for sub_name in subs:
            sub = subs[sub_name]
            if sub.hidden:
                continue
            out += [".TP", f".B {_roff(sub_name)}", _roff(sub.get_short_help_str(limit=300))]
    options = [p for p in command.params if not getattr(p, "hidden", False)]
    if options:
        out.append(".SH OPTIONS")
        for param in options:
            if getattr(param, "param_type_name", "") == "argument":
                label = param.metavar or param.name.upper()
            else:
                label = ", ".join(param.opts)
                if not param.is_flag and param.metavar:
                    label += f" {param.metavar}"
            out += [".TP", f".B {_roff(label)}", _roff(" ".join((getattr(param, 'help', None) or '').split()))]
    lines = example_lines(" ".join(path.split()[1:]) or "smtpctl")
    if lines:
        out.append(".SH EXAMPLES")
        for line in lines:
            out += [".PP", ".nf", _roff(line), ".fi"]
    see = "smtpctl(1), docs/commands.md" if path != "smtpctl" else "docs/commands.md, docs/exit-codes.md"
    out += [".SH SEE ALSO", _roff(see)]
    return "\n".join(out) + "\n"


def pages() -> dict[str, str]:
    """Every page by file name: smtpctl.1 and one per command and group."""
    import typer.main

    from smtpctl.cli.typer_app import app

    root = typer.main.get_command(app)
    found = {"smtpctl.1": page("smtpctl", root)}
    for name in root.commands:
        command = root.commands[name]
        found[f"smtpctl-{name}.1"] = page(f"smtpctl {name}", command)
        for sub_name in getattr(command, "commands", {}) or {}:
            sub = command.commands[sub_name]
            if not sub.hidden:
                found[f"smtpctl-{name}-{sub_name}.1"] = page(f"smtpctl {name} {sub_name}", sub)
            for leaf_name in getattr(sub, "commands", {}) or {}:  # a sub-group's commands (auth throttle list)
                leaf = sub.commands[leaf_name]
                if not leaf.hidden:
                    found[f"smtpctl-{name}-{sub_name}-{leaf_name}.1"] = page(f"smtpctl {name} {sub_name} {leaf_name}",
                                                                             leaf)
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m smtpctl.cli.manpages DIR\n")
        return 2
    folder = Path(argv[0])
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("smtpctl*.1"):
        old.unlink()
    for file_name, text in pages().items():
        (folder / file_name).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
