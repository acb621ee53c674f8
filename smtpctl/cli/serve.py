"""smtpctl serve: the embedded SMTP submission server."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from smtpctl.cli.options import Count
from smtpctl.cli.output import message
from smtpctl.cli.state import AppState, store_of
from smtpctl.core.model.clients import parse_networks
from smtpctl.core.model.errors import InvalidInput
from smtpctl.core.store.paths import default_store_path
from smtpctl.servers import guard, runtime, tls
from smtpctl.servers.body import DEFAULT_SPOOL_ABOVE, Spool, prepare_spool
from smtpctl.servers.delivery import prepare_maildir
from smtpctl.servers.submission.config import DEFAULT_SMTPS, DEFAULT_SUBMISSION, ServeConfig
from smtpctl.servers.submission.server import bind_listeners, serve


def serve_command(
    ctx: typer.Context,
    submission: Annotated[Optional[list[str]], typer.Option(
        "--submission", help="HOST:PORT with STARTTLS required before AUTH (repeatable; default 127.0.0.1:2525 "
                             "and 127.0.0.1:587; give 127.0.0.1:25 to serve port 25).")] = None,
    smtps: Annotated[Optional[list[str]], typer.Option(
        "--smtps", help="HOST:PORT with implicit TLS (repeatable; default 127.0.0.1:465).")] = None,
    tls_cert: Annotated[Optional[Path], typer.Option("--tls-cert", help="PEM certificate (chain).")] = None,
    tls_key: Annotated[Optional[Path], typer.Option("--tls-key", help="PEM private key.")] = None,
    relay: Annotated[Optional[str], typer.Option("--relay", help="Forward mail to HOST:PORT (credentials from "
                                                 "SMTPCTL_RELAY_USERNAME / SMTPCTL_RELAY_PASSWORD).")] = None,
    relay_starttls: Annotated[bool, typer.Option("--relay-starttls", help="Use STARTTLS to the relay.")] = False,
    maildir: Annotated[Optional[Path], typer.Option("--maildir", help="Deliver here when there is no --relay "
                                                    "(default: a Maildir beside the store).")] = None,
    hostname: Annotated[str, typer.Option("--hostname", help="Name in the greeting and Received headers.")] = "localhost",
    auth_delay: Annotated[float, typer.Option("--auth-delay", min=0, max=60,
                                              help="Seconds a failed AUTH costs.")] = 1.0,
    auth_cache_size: Annotated[int, typer.Option(
        "--auth-cache-size", click_type=Count(0, 10_000_000, "--auth-cache-size"), metavar="N",
        help="Logins whose last successful verify is remembered (as a keyed digest bound to the stored hash, "
             "never the password), so a repeat login skips argon2; 0 turns the cache off.")] = 10_000,
    auth_cache_ttl: Annotated[float, typer.Option(
        "--auth-cache-ttl", min=1, max=86400, help="Seconds a remembered verify stays good.")] = 300.0,
    max_auth_failures: Annotated[int, typer.Option(
        "--max-auth-failures", click_type=Count(1, 1_000_000, "--max-auth-failures"), metavar="N",
        help="AUTH guesses one client (an IPv4 address or an IPv6 /64) may make in 5 minutes, counted when they "
             "start; then 454.")] = 5,
    max_auth_failures_per_login: Annotated[int, typer.Option(
        "--max-auth-failures-per-login", click_type=Count(1, 1_000_000, "--max-auth-failures-per-login"), metavar="N",
        help="Failed AUTHs on one login, from all clients together, in 5 minutes; then 454 for that login (a "
             "client that authenticated as it within a day is exempt).")] = 10,
    trusted_network: Annotated[Optional[list[str]], typer.Option(
        "--trusted-network", metavar="CIDR",
        help="A network whose clients are exempt from --max-auth-failures (e.g. an office NAT or an app "
             "fleet behind one address); never from --max-auth-failures-per-login (repeatable).")] = None,
    auth_failure_window: Annotated[float, typer.Option(
        "--auth-failure-window", min=1, max=86400,
        help="Seconds a failed AUTH counts against both caps (default 300: the 5 minutes above).")] = 300.0,
    max_connections: Annotated[Optional[int], typer.Option(
        "--max-connections", click_type=Count(1, 1_000_000, "--max-connections"), metavar="N",
        help="Concurrent connections in all (default 1000, or fewer when the open files limit cannot hold them); "
             "past it 421.")] = None,
    max_connections_per_client: Annotated[int, typer.Option(
        "--max-connections-per-client", click_type=Count(1, 1_000_000, "--max-connections-per-client"), metavar="N",
        help="Concurrent connections from one client (an IPv4 address or an IPv6 /64); past it 421.")] = 50,
    timeout: Annotated[float, typer.Option(
        "--timeout", min=1, max=86400,
        help="Seconds an authenticated client may take per command or data line before it is "
             "disconnected.")] = 300.0,
    pre_auth_timeout: Annotated[float, typer.Option(
        "--pre-auth-timeout", min=1, max=86400,
        help="The same before AUTH (and for the TLS handshake on --smtps, at most 60).")] = 60.0,
    spool_above: Annotated[int, typer.Option(
        "--spool-above", click_type=Count(0, 25 * 1024 * 1024, "--spool-above"), metavar="BYTES",
        help="A message body larger than this is kept on disk in --spool-dir while it is received and delivered, "
             "not in memory (0: every body).")] = DEFAULT_SPOOL_ABOVE,
    spool_dir: Annotated[Optional[Path], typer.Option(
        "--spool-dir", help="Where those bodies go, as files with no name that vanish when closed (default: a "
                            "spool folder beside the store).")] = None,
    metrics_address: Annotated[Optional[str], typer.Option(
        "--metrics", help="Serve Prometheus metrics at http://HOST:PORT/metrics (docs/servers.md, Metrics).")] = None,
    check: Annotated[bool, typer.Option("--check", help="Validate the configuration and exit.")] = False,
) -> None:
    """Run an SMTP submission server that authenticates and meters against the store."""
    store = store_of(ctx)  # opens and migrates: a bad store fails here, before listening
    state = ctx.find_object(AppState)
    listeners = [runtime.parse_address(a, "--submission") for a in (submission or DEFAULT_SUBMISSION)]
    implicit = [runtime.parse_address(a, "--smtps") for a in (smtps or DEFAULT_SMTPS)]
    relay_address = runtime.parse_address(relay, "--relay") if relay else None
    scrape_address = runtime.parse_address(metrics_address, "--metrics") if metrics_address else None
    for option, seconds in (("--auth-delay", auth_delay), ("--timeout", timeout),
                            ("--pre-auth-timeout", pre_auth_timeout), ("--auth-cache-ttl", auth_cache_ttl),
                            ("--auth-failure-window", auth_failure_window)):
        if math.isnan(seconds):  # a range check lets NaN through
            raise InvalidInput(f"{option} takes a number of seconds, not {seconds}")
    trusted_networks = parse_networks(trusted_network or ())
    if (tls_cert is None) != (tls_key is None):
        raise InvalidInput("give both --tls-cert and --tls-key, or neither (a self-signed pair is made)")
    if store.engine == "sqlite":
        data_dir = store.path.parent
    else:  # a PostgreSQL store: the files serve keeps go where the default store would be
        data_dir = default_store_path().parent
    made = False
    if tls_cert is None:
        tls_cert, tls_key, made = tls.self_signed(data_dir / "tls", hostname)
    context = tls.server_context(tls_cert, tls_key)
    spool = Spool(spool_above, spool_dir or data_dir / "spool")
    try:
        prepare_spool(spool)
    except OSError as exc:
        raise InvalidInput(f"cannot use the spool folder {spool.directory}: {exc.strerror}") from None
    box = maildir or data_dir / "maildir"
    if relay_address is None:
        try:
            prepare_maildir(box)
        except OSError as exc:
            raise InvalidInput(f"cannot use the Maildir {box}: {exc.strerror}") from None
    if made:
        runtime.log_event("tls_selfsigned", cert=tls_cert, note="generated a self-signed certificate on first start")
    config = ServeConfig(
        store_path=store.target, actor=store.actor, submission=listeners, smtps=implicit, tls=context, maildir=box,
        relay=relay_address, relay_starttls=relay_starttls,
        relay_username=os.environ.get("SMTPCTL_RELAY_USERNAME") or None,
        relay_password=os.environ.get("SMTPCTL_RELAY_PASSWORD") or None,
        hostname=hostname, auth_delay=auth_delay, max_auth_failures=max_auth_failures,
        auth_cache_size=auth_cache_size, auth_cache_ttl=auth_cache_ttl,
        max_auth_failures_per_login=max_auth_failures_per_login, failure_window=auth_failure_window,
        trusted_networks=trusted_networks, spool=spool,
        max_connections_per_client=max_connections_per_client, timeout=timeout, pre_auth_timeout=pre_auth_timeout,
    )
    config.max_connections = guard.checked_max_connections(max_connections, config.fds_per_connection)
    bound = bind_listeners(config)  # all or nothing, before serving: a taken port fails here (exit 9)
    try:
        scrape = runtime.listen_sockets([scrape_address])[0] if scrape_address else []
    except Exception:
        for sock in (s for group in bound.values() for s in group):
            sock.close()
        raise
    if check:
        for sock in [*(s for group in bound.values() for s in group), *scrape]:
            sock.close()
        message(f"Configuration OK: submission {', '.join(f'{h}:{p}' for h, p in listeners) or 'none'}; "
                f"smtps {', '.join(f'{h}:{p}' for h, p in implicit) or 'none'}; TLS {tls_cert}; "
                f"delivery {'relay ' + relay if relay else 'maildir ' + str(box)}; "
                f"connections at most {config.max_connections} ({max_connections_per_client} per client); "
                f"AUTH failures at most {max_auth_failures} per client and {max_auth_failures_per_login} per "
                f"login in {_window(auth_failure_window)}"
                + (f" (no per-client cap for {', '.join(map(str, trusted_networks))})" if trusted_networks else "")
                + f"; timeouts {pre_auth_timeout:g} s before AUTH, {timeout:g} s after; "
                f"AUTH cache {auth_cache_size} logins for {auth_cache_ttl:g} s; "
                f"bodies over {spool_above} bytes spooled to {spool.directory}"
                + (f"; metrics on {metrics_address}." if metrics_address else "."))
        return
    config.bound, config.metrics_bound = bound, scrape
    state.close()  # the server opens its own connection on its own thread
    runtime.run_until_stopped(lambda stop: serve(config, stop))


def _window(seconds: float) -> str:
    return f"{seconds / 60:g} minutes" if seconds % 60 == 0 else f"{seconds:g} s"
