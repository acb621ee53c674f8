"""smtpctl policy: the Postfix SMTP access policy delegation service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from smtpctl.cli.output import message
from smtpctl.cli.state import AppState, store_of
from smtpctl.core.model.errors import InvalidInput
from smtpctl.servers import runtime
from smtpctl.servers.policy import socket as policy

app = typer.Typer(help="Postfix SMTP access policy delegation, using the store live.", no_args_is_help=True)


@app.command("serve")
def policy_serve(
    ctx: typer.Context,
    listen: Annotated[str, typer.Option("--listen", help="HOST:PORT, or unix:PATH (e.g. "
                                        "unix:/var/spool/postfix/private/smtpctl-policy).")] = "127.0.0.1:10040",
    socket_mode: Annotated[Optional[str], typer.Option(
        "--socket-mode", help="With unix:PATH: the socket's permission bits, octal (default 0660).")] = None,
    socket_group: Annotated[Optional[str], typer.Option(
        "--socket-group", help="With unix:PATH: give the socket to this group (name or gid), e.g. postfix.")] = None,
    metrics_address: Annotated[Optional[str], typer.Option(
        "--metrics", help="Serve Prometheus metrics at http://HOST:PORT/metrics (docs/servers.md, Metrics).")] = None,
    check: Annotated[bool, typer.Option("--check", help="Validate the configuration and exit.")] = False,
) -> None:
    """Answer Postfix policy requests in every state: refuse revoked credentials, foreign senders and too many recipients; meter and cap the daily limit at END-OF-MESSAGE."""
    unix = None
    if listen.startswith("unix:"):
        socket_path = listen[len("unix:"):]
        if not socket_path:
            raise InvalidInput("--listen unix:PATH needs a path")
        unix = policy.UnixListen(
            Path(socket_path), policy.parse_socket_mode(socket_mode) if socket_mode is not None else policy.DEFAULT_SOCKET_MODE,
            policy.parse_socket_group(socket_group) if socket_group is not None else None)
    else:
        if socket_mode is not None or socket_group is not None:
            raise InvalidInput("--socket-mode and --socket-group need --listen unix:PATH")
        runtime.parse_address(listen, "--listen")
    scrape_address = runtime.parse_address(metrics_address, "--metrics") if metrics_address else None
    store = store_of(ctx)
    sockets = None
    if unix is not None:
        policy.check_unix(unix.path)
    else:  # bound before serving: a port in use is one Error line and exit 9, --check included
        [sockets] = runtime.listen_sockets([runtime.parse_address(listen, "--listen")])
    try:
        scrape = runtime.listen_sockets([scrape_address])[0] if scrape_address else []
    except Exception:
        for sock in sockets or ():
            sock.close()
        raise
    if check:
        for sock in [*(sockets or ()), *scrape]:
            sock.close()
        where = f"unix:{unix.path} (mode {unix.mode:04o}" + (f", gid {unix.gid})" if unix.gid is not None else ")") \
            if unix is not None else listen
        message(f"Configuration OK: policy service on {where}"
                + (f"; metrics on {metrics_address}." if metrics_address else "."))
        return
    path, actor = store.target, store.actor
    ctx.find_object(AppState).close()
    runtime.run_until_stopped(lambda stop: policy.serve_policy(path, actor, listen, stop, unix, sockets, scrape))
