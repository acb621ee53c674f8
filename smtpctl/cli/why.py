"""smtpctl why: can a credential or an account send now, and if not, why."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from smtpctl.cli.options import JsonOption
from smtpctl.cli.output import print_json, shell_command
from smtpctl.cli.state import store_of
from smtpctl.core.reporting.why import as_dict, why


def why_command(
    ctx: typer.Context,
    subject: Annotated[str, typer.Argument(metavar="LOGIN@DOMAIN|ACCOUNT",
                                           help="An SMTP credential's login, or an account name.")],
    json_out: JsonOption = False,
) -> None:
    """Say whether a credential or an account can send now, and every reason it cannot, each with its fix.

    Reasons: a revoked, deleted or missing credential, a block (since when, why, by whom), each full limit (hour, day,
    month; credential, account, agency) and when it resets, used-up prepaid credits. Notes: limits past 80%, sender
    alignment, a block that only stops credential creation. Exit 0 whatever the answer ("can_send" says it).
    """
    answer = as_dict(why(store_of(ctx, read_only=True), subject), shell_command)
    if json_out:
        print_json(answer)
        return
    out = sys.stdout.write
    verdict = "can send now" if answer["can_send"] else "cannot send now"
    out(f"{answer['subject']} {verdict}.\n")
    for title, items in (("Why", answer["reasons"]), ("Notes", answer["notes"])):
        if items:
            out(f"{title}:\n")
            for item in items:
                out(f"  - {item['detail']}\n")
                if item["fix"]:
                    out(f"    fix: {item['fix']}\n")
    out("Limits:\n")
    for limit in answer["limits"]:
        out(f"  {limit['scope']} {limit['subject']}, {limit['window']}: {limit['used']:,} of {limit['limit']:,} "
            f"emails (resets {limit['resets_at']})\n")
