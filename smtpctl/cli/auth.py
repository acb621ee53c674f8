"""smtpctl auth: what serve's AUTH throttle holds, and lifting it for the innocent."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from smtpctl.cli.options import Count, CsvOption, JsonOption, YesOption
from smtpctl.cli.output import confirm_destructive, fmt, message, print_json, render_list
from smtpctl.cli.state import store_of
from smtpctl.core.reporting.throttle import clear_throttle, throttle_filters, throttled
from smtpctl.core.store import throttle as throttle_store

app = typer.Typer(help="AUTH of serve: what its password-guess throttle holds, and clearing it.",
                  no_args_is_help=True)
throttle_app = typer.Typer(help="serve's AUTH throttle: failed guesses per client and per login.",
                           no_args_is_help=True)
app.add_typer(throttle_app, name="throttle")

ClientOption = Annotated[Optional[str], typer.Option(
    "--client", metavar="IP", help="A client's address (an IPv6 client is counted as its /64).")]
LoginOption = Annotated[Optional[str], typer.Option("--login", metavar="LOGIN", help="A login (name@domain).")]
PerClientOption = Annotated[int, typer.Option(
    "--max-auth-failures", click_type=Count(1, 1_000_000, "--max-auth-failures"), metavar="N",
    help="The per-client cap serve runs with (its --max-auth-failures).")]
PerLoginOption = Annotated[int, typer.Option(
    "--max-auth-failures-per-login", click_type=Count(1, 1_000_000, "--max-auth-failures-per-login"), metavar="N",
    help="The per-login cap serve runs with (its --max-auth-failures-per-login).")]
WindowOption = Annotated[float, typer.Option(
    "--auth-failure-window", min=1, max=86400, metavar="SECONDS",
    help="Seconds a failed AUTH counts, as serve runs with (its --auth-failure-window).")]

COLUMNS = [
    ("scope", "Scope"), ("key", "Client or login"), ("failures", "Failures"), ("pending", "Verifying"),
    ("limit", "Cap"), ("blocking", "Refused now"), ("unblocks_at", "Refused until (UTC)"),
    ("clears_at", "Clear at (UTC)"),
]


def _limits(per_client: int, per_login: int, window: float) -> throttle_store.Limits:
    return throttle_store.Limits(per_client, per_login, window)


@throttle_app.command("list")
def list_(
    ctx: typer.Context,
    client: ClientOption = None,
    login: LoginOption = None,
    max_auth_failures: PerClientOption = throttle_store.DEFAULT_MAX_AUTH_FAILURES,
    max_auth_failures_per_login: PerLoginOption = throttle_store.DEFAULT_MAX_AUTH_FAILURES_PER_LOGIN,
    auth_failure_window: WindowOption = throttle_store.DEFAULT_FAILURE_WINDOW,
    json_out: JsonOption = False,
    csv_out: CsvOption = False,
) -> None:
    """List who serve's AUTH throttle counts now: failed guesses per client and per login, and whether
    AUTH is refused (454) and until when."""
    output = fmt(json_out, csv_out)
    rows = throttled(store_of(ctx, read_only=True), client=client, login=login,
                     limits=_limits(max_auth_failures, max_auth_failures_per_login, auth_failure_window))
    render_list([row.as_dict() for row in rows], COLUMNS, output=output, empty="Nothing is throttled.")


@throttle_app.command("clear")
def clear(
    ctx: typer.Context,
    client: ClientOption = None,
    login: LoginOption = None,
    max_auth_failures: PerClientOption = throttle_store.DEFAULT_MAX_AUTH_FAILURES,
    max_auth_failures_per_login: PerLoginOption = throttle_store.DEFAULT_MAX_AUTH_FAILURES_PER_LOGIN,
    auth_failure_window: WindowOption = throttle_store.DEFAULT_FAILURE_WINDOW,
    yes: YesOption = False,
    json_out: JsonOption = False,
) -> None:
    """Forget a client's or a login's failed guesses (or both), so serve lets it try again at once, on every
    node; audited."""
    key, name = throttle_filters(client, login, required=True)
    whose = " and ".join(w for w in (f"client {key}" if key else "", f"login {name}" if name else "") if w)
    confirm_destructive(f"Clear the AUTH throttle's guesses of {whose}?", yes)
    result = clear_throttle(store_of(ctx), client=key, login=name,
                            limits=_limits(max_auth_failures, max_auth_failures_per_login, auth_failure_window))
    if json_out:
        print_json(result.as_dict())
        return
    refused = [f"{e.scope} {e.key}" for e in result.before if e.blocking]
    message(f"Cleared {result.removed} guess{'es' if result.removed != 1 else ''} of {whose}"
            + (f"; no longer refused: {', '.join(refused)}." if refused else "."))
