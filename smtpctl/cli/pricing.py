"""smtpctl pricing: what a volume of email costs here and elsewhere."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Optional

import typer

from smtpctl.cli.options import Count, JsonOption
from smtpctl.cli.output import dollars, fmt, message, print_json, render_list
from smtpctl.cli.state import store_of
from smtpctl.core.directory.settings import effective_settings
from smtpctl.core.model import rules
from smtpctl.core.model.errors import InvalidInput
from smtpctl.core.reporting import pricing

app = typer.Typer(help="Price estimates at the service's rate and at comparison rates.", no_args_is_help=True)


def _compare(values: list[str]) -> list[tuple[str, Decimal]]:
    pairs = []
    for value in values:
        name, eq, rate = value.partition("=")
        if not eq or not name.strip():
            raise InvalidInput(f"--compare takes NAME=RATE, e.g. SES=0.10, not {value!r}")
        pairs.append((rules.validate_label(name), rules.validate_price(rate)))
    return pairs


@app.command("estimate")
def estimate(
    ctx: typer.Context,
    emails: Annotated[Optional[int], typer.Option("--emails", click_type=Count(what="--emails"), metavar="N", help="Total emails (recipients).")] = None,
    per_day: Annotated[Optional[int], typer.Option("--per-day", click_type=Count(what="--per-day"), metavar="N", help="Emails per day.")] = None,
    days: Annotated[int, typer.Option("--days", click_type=Count(what="--days"), metavar="N", help="Days, with --per-day.")] = 30,
    messages: Annotated[Optional[int], typer.Option("--messages", click_type=Count(what="--messages"), metavar="N", help="Messages, with --recipients.")] = None,
    recipients: Annotated[Optional[int], typer.Option("--recipients", click_type=Count(what="--recipients"), metavar="N", help="Recipients per message.")] = None,
    rate: Annotated[Optional[str], typer.Option("--rate", help="Price per 1,000 (default: the store's).")] = None,
    compare: Annotated[Optional[list[str]], typer.Option("--compare", help="NAME=RATE to compare with (repeatable).")] = None,
    json_out: JsonOption = False,
) -> None:
    """Estimate the cost of a volume, and the saving against other prices."""
    modes = [emails is not None, per_day is not None, messages is not None or recipients is not None]
    if sum(modes) != 1:
        raise InvalidInput("give exactly one volume: --emails N, --per-day N [--days D], or --messages N --recipients R")
    if per_day is not None:
        total = rules.validate_email_count(per_day, "--per-day") * rules.whole_number(days, "--days", 1, rules.MAX_DAYS)
    elif emails is not None:
        total = rules.validate_email_count(emails, "--emails")
    else:
        if messages is None or recipients is None:
            raise InvalidInput("--messages and --recipients go together")
        total = rules.validate_email_count(messages, "--messages") * rules.whole_number(
            recipients, "--recipients", 1, rules.MAX_RECIPIENTS_PER_MESSAGE)
    total = rules.validate_email_count(total, "the total number of emails")
    settings = effective_settings(store_of(ctx, read_only=True, empty_ok=True))  # the defaults where no store is
    our_rate = rules.validate_price(rate) if rate is not None else settings["price_per_1000"]
    comparisons = _compare(compare) if compare else [(settings["compare_name"], settings["compare_price_per_1000"])]
    data = pricing.estimate(emails=total, rate=our_rate, compare=comparisons)
    if fmt(json_out) == "json":
        print_json(data)
        return
    rows = [{"provider": "this service", "rate": f"${data['rate_per_1000']}", "cost": f"${data['cost']}",
             "rounded": f"${data['cost_rounded']}", "saving": ""}]
    rows += [{"provider": c["name"], "rate": f"${c['rate_per_1000']}", "cost": f"${c['cost']}",
              "rounded": f"${c['cost_rounded']}", "saving": dollars(c["saving_as_billed"])}
             for c in data["comparisons"]]
    render_list(rows, [("provider", "Provider"), ("rate", "Per 1,000"), ("cost", "Exact"), ("rounded", "Cost"),
                       ("saving", "You save")], output="table", title=f"{total:,} emails")
    message("Cost is what you would pay (the exact cost rounded to the cent, half up); "
            "'You save' is the difference of those two amounts.")
    for c in data["comparisons"]:
        if c["saving_as_billed"] != c["saving_rounded"]:
            message(f"Note: against {c['name']}, the exact saving {dollars(c['saving'])} rounds to "
                    f"{dollars(c['saving_rounded'])}; the amounts you would pay differ by "
                    f"{dollars(c['saving_as_billed'])}.")
