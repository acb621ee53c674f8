"""smtpctl apply: make the store match a TOML document, in one transaction."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Optional

import tomli_w
import typer

from smtpctl.cli.options import JsonOption, YesOption
from smtpctl.cli.output import confirm_destructive, details_text, message, print_json, render_list, warning
from smtpctl.cli.state import store_of, writable_store_of
from smtpctl.core.directory.settings import effective_settings
from smtpctl.core.model.errors import AlreadyExists, InvalidInput
from smtpctl.core.provisioning import apply as provisioning
from smtpctl.core.provisioning import export
from smtpctl.core.store.paths import read_source



def _secrets_text(generated: dict[str, str], as_json: bool) -> str:
    if as_json:
        return json.dumps({"passwords": generated}, indent=2) + "\n"
    return tomli_w.dumps({"passwords": generated})


def apply_command(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="The TOML document, or - for stdin.", metavar="FILE.toml|-")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")] = False,
    prune: Annotated[bool, typer.Option("--prune", help="Delete credentials and domains the file does not list.")] = False,
    secrets_out: Annotated[Optional[Path], typer.Option("--secrets-out", help="Where generated passwords go (0600; TOML, or JSON with --json).")] = None,
    skip_blocked: Annotated[bool, typer.Option(
        "--skip-blocked", help="Apply the rest when some credentials are on blocked accounts (else exit 6).")] = False,
    yes: YesOption = False,
    json_out: JsonOption = False,
) -> None:
    """Create and update objects so the store matches FILE (idempotent)."""
    data = read_source(source, "the document")
    base = Path.cwd() if source == "-" else Path(source).resolve().parent
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"cannot read {source}: not UTF-8 text (invalid byte at offset {exc.start})") from None
    doc = provisioning.parse_document(text, base_dir=base)
    # Planned against the store, or against an empty one where none is made
    # yet: a dry run never creates one, and a real run creates it only once
    # the plan is accepted (a refused run leaves no empty store file behind).
    store = store_of(ctx, read_only=True, empty_ok=True, note=dry_run)
    verify = provisioning.VerifyCache()
    plan = provisioning.make_plan(store, doc, prune=prune, verify=verify)
    deletions = [c for c in plan.changes if c.action == "delete"]
    generates = [c for c in plan.changes if c.kind == "credential" and c.action == "create"
                 and doc.credentials[c.name].generate]
    refusal = _secrets_refusal(len(generates), secrets_out)
    if not dry_run:
        if plan.blocked and not skip_blocked:
            raise provisioning.blocked_error(plan)
        if refusal is not None:
            raise refusal
        if deletions:
            listed = ", ".join(f"{c.kind} {c.name}" for c in deletions)
            confirm_destructive(f"--prune will delete {len(deletions)} object(s): {listed}.", yes)
        store = writable_store_of(ctx)

    pending: dict[str, Path] = {}

    def stage_secrets(final: provisioning.Plan) -> None:
        # Inside the transaction: the passwords reach the disk before the
        # credentials exist, so a failed write keeps nothing.
        if final.generated:
            pending["tmp"] = export.stage_file(secrets_out, _secrets_text(final.generated, json_out))

    try:
        result = plan if dry_run else provisioning.apply_document(store, doc, prune=prune, before_commit=stage_secrets,
                                                                  verify=verify, skip_blocked=skip_blocked)
    except BaseException:
        if "tmp" in pending:
            pending["tmp"].unlink(missing_ok=True)
        raise
    if "tmp" in pending:
        os.replace(pending["tmp"], secrets_out)

    summary = result.summary()
    verb = {"delete": "would-delete" if dry_run else "delete"}
    changes = [dict(c.as_dict(), action=verb.get(c.action, c.action)) for c in result.changes]
    if json_out:
        print_json({"dry_run": dry_run, "changes": changes, "summary": summary,
                    "secrets_out": str(secrets_out) if result.generated else None})
        _report_blocked(result, dry_run, skip_blocked)
        if dry_run and refusal is not None:
            raise refusal
        return
    default_limit = int(effective_settings(store)["default_daily_limit"])
    render_list([{**c, "details": details_text(c["details"], default_limit)} for c in changes
                 if c["action"] != "unchanged"],
                [("action", "Action"), ("type", "Type"), ("name", "Name"), ("details", "Details")], output="table",
                empty="Nothing to change.")
    done = "Plan" if dry_run else "Applied"
    blocked = f", {summary['blocked']} blocked" if summary["blocked"] else ""
    message(f"{done}: {summary['create']} to create, {summary['update']} to update, {summary['unchanged']} unchanged, "
            f"{summary['delete']} to delete{blocked}." if dry_run else
            f"{done}: {summary['create']} created, {summary['update']} updated, {summary['unchanged']} unchanged, "
            f"{summary['delete']} deleted{blocked}.")
    if result.generated and not dry_run:
        message(f"Generated passwords for {len(result.generated)} credential(s) are in {secrets_out} (mode 0600).")
    _report_blocked(result, dry_run, skip_blocked)
    if dry_run and refusal is not None:  # after the plan, as the real run would refuse it
        raise refusal


def _secrets_refusal(generates: int, secrets_out: Path | None) -> Exception | None:
    """Why a plan that generates passwords cannot run (they must go to a new
    --secrets-out file), or ``None``; a dry run refuses it too, after the plan."""
    if generates and secrets_out is None:
        return InvalidInput(f"the plan generates {generates} password(s); give --secrets-out PATH to keep them "
                            "(they are never printed)")
    if generates and secrets_out.exists():
        return AlreadyExists(f"--secrets-out {secrets_out} already exists; move it away or choose another path")
    return None


def _report_blocked(result, dry_run: bool, skip_blocked: bool) -> None:
    """After the plan is shown: a dry run without --skip-blocked fails as the
    real run would (exit 6); with it, the skipped entries are named."""
    if not result.blocked:
        return
    if dry_run and not skip_blocked:
        raise provisioning.blocked_error(result)
    listed = ", ".join(f"{c.name} (account {c.details['account']})" for c in result.blocked)
    done = "would skip" if dry_run else "skipped"
    warning(f"{done} {len(result.blocked)} credential(s) on blocked accounts: {listed}")
