"""smtpctl settings: the SMTP settings a credential holder configures."""

from __future__ import annotations

import sys
from enum import Enum
from typing import Annotated, Any, Optional

import tomli_w
import typer

from smtpctl.cli.options import JsonOption
from smtpctl.cli.output import message, print_json, render_list
from smtpctl.cli.state import store_of
from smtpctl.cli.table import rich_console
from smtpctl.core.directory.credentials import smtp_settings
from smtpctl.core.model import rules
from smtpctl.core.model.errors import InvalidInput
from smtpctl.core.directory.settings import settings_view


class SettingsFormat(str, Enum):
    table = "table"
    json = "json"
    env = "env"
    toml = "toml"


def render_settings(data: dict[str, Any]) -> None:
    """The settings block for people: server, username, and the ports."""
    console = rich_console()
    console.print(f"Server:   {data['host']}", highlight=False, markup=False)
    console.print(f"Username: {data['username'] or 'the full login, name@domain'}", highlight=False, markup=False)
    console.print("Password: the credential's password (shown once, when it was created or reset)",
                  highlight=False, markup=False)
    rows = [{**p, "port": f"{p['port']}{' (recommended)' if p['port'] == data['recommended_port'] else ''}"}
            for p in data["ports"]]
    render_list(rows, [("port", "Port"), ("security", "Security"), ("note", "Note")], output="table")


def _security_word(port: int) -> str:
    return {25: "starttls", 465: "tls", 587: "starttls", 2525: "starttls"}[port]


def env_lines(data: dict[str, Any], port: int) -> str:
    """``KEY=value`` lines a CI job can ``source`` (values need no quoting)."""
    lines = [f"SMTP_HOST={data['host']}", f"SMTP_PORT={port}", f"SMTP_SECURITY={_security_word(port)}"]
    if data["username"]:
        lines.append(f"SMTP_USERNAME={data['username']}")
    return "\n".join(lines) + "\n"


def settings_command(
    ctx: typer.Context,
    login: Annotated[Optional[str], typer.Argument(help="A credential's login, to fill in the username.",
                                                   metavar="[LOGIN@DOMAIN]")] = None,
    output_format: Annotated[SettingsFormat, typer.Option(
        "--format", help="table, json, env (SMTP_HOST=... lines to source) or toml.")] = SettingsFormat.table,
    port: Annotated[int, typer.Option("--port", help="The port for --format env.")] = rules.RECOMMENDED_PORT,
    json_out: JsonOption = False,
) -> None:
    """Show the SMTP server, ports, security and username to configure."""
    if port not in {p for p, _, _ in rules.SMTP_PORTS}:
        raise InvalidInput(f"--port must be one of {', '.join(str(p) for p, _, _ in rules.SMTP_PORTS)}")
    chosen = SettingsFormat.json if json_out else output_format
    data = smtp_settings(store_of(ctx, read_only=True), login)
    if chosen is SettingsFormat.json:
        print_json(data)
    elif chosen is SettingsFormat.env:
        sys.stdout.write(env_lines(data, port))
    elif chosen is SettingsFormat.toml:
        sys.stdout.write(tomli_w.dumps({k: v for k, v in data.items() if v is not None}))
    else:
        render_settings(data)
        message(host_note(store_of(ctx, read_only=True)))


def host_note(store: Any) -> str:
    """Where the server name comes from (the store setting smtp_host) and how
    to change it: a store never set up shows the default, which is not the
    host a local ``smtpctl serve`` listens on."""
    row = next(r for r in settings_view(store) if r["key"] == "smtp_host")
    source = "the default" if row["source"] == "default" else "set in this store"
    return (f"Note: the server is the store setting smtp_host ({row['value']}, {source}); set the host your users "
            "connect to with: smtpctl store set smtp_host HOST")
