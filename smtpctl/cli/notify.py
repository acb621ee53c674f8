"""smtpctl notify: webhook endpoints, the delivery log, and the delivery worker."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from smtpctl.cli.options import Count, CsvOption, JsonOption
from smtpctl.cli.output import fmt, message, print_json, render_list, warning
from smtpctl.cli.state import AppState, store_of
from smtpctl.core.model.errors import DeliveryFailed
from smtpctl.core.notices import delivery, endpoints

app = typer.Typer(help="Webhook notices: where they go, what was delivered, and the worker that delivers them.",
                  no_args_is_help=True)

COLUMNS = [("id", "ID"), ("url", "URL"), ("events", "Events"), ("created_at", "Created (UTC)")]
LOG_COLUMNS = [("id", "Notice"), ("type", "Type"), ("endpoint", "Endpoint"), ("status", "Status"),
               ("attempts", "Attempts"), ("last_http_status", "HTTP"), ("last_error", "Last error"),
               ("next_attempt_at", "Next attempt (UTC)")]


@app.command("add")
def add(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(help="Where to POST notices: https://..., or http:// to a loopback address.")],
    event: Annotated[Optional[list[str]], typer.Option(
        "--event", help="A notice kind to send (repeatable); none: every kind. docs/notices.md lists them.")] = None,
    secret_file: Annotated[Optional[Path], typer.Option(
        "--secret-file", help="Read the signing secret (whsec_...) from this file; default: generate one.")] = None,
    allow_insecure: Annotated[bool, typer.Option(
        "--allow-insecure", help="Allow http:// to an address that is not loopback (notices unencrypted).")] = False,
    json_out: JsonOption = False,
) -> None:
    """Add a webhook endpoint; a generated secret is printed once."""
    secret = endpoints.read_secret(secret_file) if secret_file is not None else None
    outcome = endpoints.add_endpoint(store_of(ctx), url, event or [], secret=secret, allow_insecure=allow_insecure)
    if json_out:
        print_json(outcome.as_dict())
        return
    message(f"Webhook endpoint {outcome.object.id} added: {outcome.object.url}.")
    if "secret" in outcome.extra:
        print(outcome.extra["secret"])
        warning("this signing secret is shown once: give it to the receiver now (it verifies each notice with it)")


@app.command("list")
def list_(ctx: typer.Context, json_out: JsonOption = False, csv_out: CsvOption = False) -> None:
    """List webhook endpoints (never their secrets)."""
    output = fmt(json_out, csv_out)
    rows = [e.as_dict() for e in endpoints.list_endpoints(store_of(ctx, read_only=True))]
    if output != "json":
        rows = [{**row, "events": " ".join(row["events"]) if row["events"] else "all"} for row in rows]
    render_list(rows, COLUMNS, output=output,
                empty="No webhook endpoints yet. Add one with: smtpctl notify add URL")


@app.command("remove")
def remove(ctx: typer.Context, endpoint_id: Annotated[str, typer.Argument(metavar="ID", help="Endpoint id.")],
           json_out: JsonOption = False) -> None:
    """Remove a webhook endpoint; its undelivered notices are dropped."""
    outcome = endpoints.remove_endpoint(store_of(ctx), endpoint_id)
    if json_out:
        print_json(outcome.as_dict())
    else:
        message(f"Webhook endpoint {outcome.object.id} ({outcome.object.url}) removed.")


@app.command("test")
def test(ctx: typer.Context, endpoint_id: Annotated[str, typer.Argument(metavar="ID", help="Endpoint id.")],
         json_out: JsonOption = False) -> None:
    """Send a notify.test notice to an endpoint now and show its answer."""
    attempt = delivery.send_test(store_of(ctx, read_only=True, must_exist=True), endpoint_id)
    if json_out:
        print_json(attempt.as_dict())
    elif attempt.ok:
        message(f"Endpoint {attempt.endpoint_id} answered HTTP {attempt.http_status}: delivered ({attempt.msg_id}).")
    if not attempt.ok:
        raise DeliveryFailed(f"endpoint {attempt.endpoint_id} did not take the test notice: {attempt.error}")


@app.command("log")
def log(
    ctx: typer.Context,
    failed: Annotated[bool, typer.Option("--failed", help="Only the deliveries that gave up after every retry.")] = False,
    limit: Annotated[int, typer.Option("--limit", click_type=Count(), help="At most N rows, newest first; 0: all.")] = 50,
    json_out: JsonOption = False,
    csv_out: CsvOption = False,
) -> None:
    """Show notice deliveries, newest first: status, attempts, the last answer."""
    output = fmt(json_out, csv_out)
    rows = delivery.delivery_log(store_of(ctx, read_only=True), failed=failed, limit=limit)
    render_list(rows, LOG_COLUMNS, output=output,
                empty="No failed deliveries." if failed else "No notices delivered or pending.")


@app.command("run")
def run(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Deliver what is due now, then exit.")] = False,
    metrics_address: Annotated[Optional[str], typer.Option(
        "--metrics", help="Serve Prometheus metrics at http://HOST:PORT/metrics (docs/notices.md).")] = None,
) -> None:
    """Deliver notices to their endpoints until stopped (SIGTERM), retrying with backoff."""
    from smtpctl.servers import notify, runtime

    scrape_address = runtime.parse_address(metrics_address, "--metrics") if metrics_address else None
    store = store_of(ctx)
    if once:
        done = notify.drain(store)
        runtime.log_event("drained", **done)
        return
    scrape = runtime.listen_sockets([scrape_address])[0] if scrape_address else []
    path, actor = store.target, store.actor
    ctx.find_object(AppState).close()
    from smtpctl.servers.metrics import NOOP, NoticeMetrics

    metrics = NoticeMetrics() if scrape else NOOP
    runtime.run_until_stopped(lambda stop: notify.serve_notices(path, actor, stop, scrape, metrics))
