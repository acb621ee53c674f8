"""smtpctl store: the service's settings, and care of the store file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from smtpctl.cli.options import JsonOption
from smtpctl.cli.output import fmt, message, print_json, render_list, render_record, shell_command, warning
from smtpctl.cli.state import store_of, warn_if_password_on_argv
from smtpctl.cli.table import rich_console
from smtpctl.core.billing.prices import set_price
from smtpctl.core.directory.settings import PRICE_KEY, set_setting, settings_view, unset_setting
from smtpctl.core.model.rules import DEFAULT_PRICE_PER_1000
from smtpctl.core.store import Store
from smtpctl.core.store.care import backup_store, copy_store, store_info

app = typer.Typer(help="Service settings and care of the store file.", no_args_is_help=True)


@app.command("show")
def show(ctx: typer.Context, json_out: JsonOption = False) -> None:
    """Show the service settings: each value, its default and where it comes from."""
    rows = settings_view(store_of(ctx, read_only=True))
    output = fmt(json_out)
    for row in rows:
        if row["source"] == "invalid":
            fix = shell_command(row["fix"])
            warning(f"setting {row['key']} holds an invalid value {row['value']!r}; commands that need it exit 7 "
                    f"until it is set again: {fix}")
    if output == "json":
        print_json({r["key"]: r["value"] for r in rows})
        return
    rows = [{k: v for k, v in row.items() if k != "fix"} for row in rows]
    render_list(rows, [("key", "Setting"), ("value", "Value"), ("default", "Default"), ("source", "Source"),
                       ("description", "Meaning")], output=output)


@app.command("set")
def set_(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="Setting name (see: smtpctl store show).")],
    value: Annotated[str, typer.Argument(help="New value.")],
    json_out: JsonOption = False,
) -> None:
    """Change one service setting (validated and audited); warns when it departs from the service's rules.

    price_per_1000 is the price in force: setting it here means from today on
    (smtpctl billing set-price PRICE --from DATE sets it from another day).
    """
    if key == PRICE_KEY:
        return _price_from_today(store_of(ctx), value, json_out)
    outcome = set_setting(store_of(ctx), key, value)
    if json_out:
        print_json(outcome.as_dict())
    else:
        message(f"Setting {key} = {outcome.object.value} ({outcome.status}).")
    for text in outcome.extra["warnings"]:
        warning(text)


@app.command("unset")
def unset(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="Setting name (see: smtpctl store show).")],
    json_out: JsonOption = False,
) -> None:
    """Put one service setting back to its default (audited)."""
    if key == PRICE_KEY:
        return _price_from_today(store_of(ctx), str(DEFAULT_PRICE_PER_1000), json_out)
    outcome = unset_setting(store_of(ctx), key)
    if json_out:
        print_json(outcome.as_dict())
    elif outcome.status == "unchanged":
        message(f"Setting {key} = {outcome.object.value} (already the default; unchanged).")
    else:
        message(f"Setting {key} = {outcome.object.value} (back to the default).")
    for text in outcome.extra["warnings"]:
        warning(text)


def _price_from_today(store: Store, value: str, json_out: bool) -> None:
    outcome = set_price(store, value)
    price, day = outcome.as_dict()["price_per_1000"], outcome.extra["from"]
    if json_out:
        print_json({"key": PRICE_KEY, "value": price, "status": outcome.status, "from": day,
                    "warnings": outcome.extra["warnings"]})
    else:
        message(f"Setting {PRICE_KEY} = {price} from today, {day} ({outcome.status}); earlier days keep the price "
                "they had (smtpctl billing set-price PRICE --from DATE sets a price from another day).")
    for text in outcome.extra["warnings"]:
        warning(text)


@app.command("info")
def info(ctx: typer.Context, json_out: JsonOption = False) -> None:
    """Show the store's path, schema version, object counts and size."""
    data = store_info(store_of(ctx, read_only=True))
    render_record(data, output=fmt(json_out))


@app.command("backup")
def backup(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="File to write the copy to.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    json_out: JsonOption = False,
) -> None:
    """Copy the store with SQLite's online backup API (safe while others write)."""
    result = backup_store(store_of(ctx, read_only=True, must_exist=True), path, force=force)
    if json_out:
        print_json(result)
    else:
        message(f"Backed up the store to {result['path']} ({result['size_bytes']:,} bytes).")


@app.command("copy")
def copy(
    ctx: typer.Context,
    dest: Annotated[str, typer.Argument(help="An empty store to copy into: a file path or a postgresql:// DSN.")],
    json_out: JsonOption = False,
) -> None:
    """Copy the whole store into an empty one (SQLite or PostgreSQL), verified: move up, or back."""
    warn_if_password_on_argv(dest, "the destination DSN")
    store = store_of(ctx, read_only=True, must_exist=True)
    if not sys.stderr.isatty():
        result = copy_store(store, dest)
    else:  # a progress bar for people; nothing for a script's stderr
        from rich.progress import Progress  # here, not at the top: rich.progress is ~22 ms, for a terminal only

        with Progress(transient=True, console=rich_console(stderr=True)) as progress:
            task = progress.add_task("Copying the store", total=None)
            result = copy_store(store, dest, lambda done, total: progress.update(task, completed=done, total=total))
    if json_out:
        print_json(result)
    else:
        counts = result["counts"]
        message(f"Copied the store to {result['destination']}: {counts['agencies']:,} agencies, "
                f"{counts['accounts']:,} accounts, {counts['domains']:,} domains, {counts['credentials']:,} credentials, "
                f"{counts['usage_events']:,} usage events ({result['usage']['event_emails']:,} emails), "
                f"{counts['audit']:,} audit entries; verified.")
