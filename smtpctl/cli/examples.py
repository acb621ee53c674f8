"""The examples at the foot of each group's --help, as sqlite-utils shows them.

Kept in one place so the command modules stay about commands; ``build_command``
in ``smtpctl.cli.typer_app`` attaches each text as the group's or command's epilog.
Every example is a command that works against a store set up as in the
README's quickstart.
"""

from __future__ import annotations

_EXAMPLES: dict[str, tuple[str, ...]] = {
    "smtpctl": (
        "smtpctl agency add 'Acme Agency'",
        "smtpctl account add acme --agency 'Acme Agency'",
        "smtpctl usage report --by day --since 7d",
    ),
    "agency": (
        "smtpctl agency add 'Acme Agency' --exist-ok",
        "smtpctl agency list --json",
        "smtpctl agency show 'Acme Agency'",
    ),
    "account": (
        "smtpctl account add acme --agency 'Acme Agency' --daily-limit 5000",
        "smtpctl account list --blocked",
        "smtpctl account block acme --reason 'compliance review' --revoke --yes",
    ),
    "domain": (
        "smtpctl domain add mail.acme.example --account acme",
        "smtpctl domain add shared.example --agency 'Acme Agency'",
        "smtpctl domain list --account acme --csv",
    ),
    "user": (
        "smtpctl user create app@mail.acme.example --generate",
        "smtpctl user reset app@mail.acme.example --password-file /run/secrets/smtp",
        "smtpctl user list --domain mail.acme.example --json",
    ),
    "settings": (
        "smtpctl settings app@mail.acme.example",
        "smtpctl settings app@mail.acme.example --format env > smtp.env",
    ),
    "usage": (
        "smtpctl usage record --user app@mail.acme.example --to a@example.org",
        "smtpctl usage import /var/log/mail.log --format postfix --year 2026",
        "smtpctl usage status --fail-at 90",
        "smtpctl usage report --by day --since 7d",
    ),
    "pricing": (
        "smtpctl pricing estimate --per-day 1500",
        "smtpctl pricing estimate --emails 100000 --compare SES=0.10 --json",
    ),
    "imap": (
        "smtpctl imap list",
        "smtpctl imap lookup gmail --json",
    ),
    "audit": (
        "smtpctl audit --since yesterday",
        "smtpctl audit --action credential --account acme --json",
    ),
    "apply": (
        "smtpctl apply smtpctl.toml --dry-run",
        "smtpctl apply smtpctl.toml --secrets-out secrets.toml",
    ),
    "export": (
        "smtpctl export > smtpctl.toml",
        "smtpctl export --json",
        "smtpctl export --format dovecot --output /etc/dovecot/passwd --group dovecot",
    ),
    "serve": (
        "smtpctl serve --tls-cert cert.pem --tls-key key.pem --check",
        "smtpctl serve --tls-cert cert.pem --tls-key key.pem --relay 127.0.0.1:25",
    ),
    "policy": (
        "smtpctl policy serve --check",
        "smtpctl policy serve --listen unix:/var/spool/postfix/private/smtpctl",
    ),
    "billing": (
        "smtpctl billing set-price 0.70 --from 2027-01-01",
        "smtpctl billing credit 'Acme Agency' 100 --ref payment-4242",
        "smtpctl billing close 2026-11",
        "smtpctl billing statement 'Acme Agency' 2026-11 --html november.html",
    ),
    "store": (
        "smtpctl store show",
        "smtpctl store set timezone Europe/Berlin",
        "smtpctl store backup /backups/smtpctl.db --force",
    ),
}


def examples(name: str) -> str:
    """The epilog for ``name`` (a group, or ``smtpctl`` for the root): rich markup."""
    lines = "\n".join(line.replace("[", "\\[") for line in _EXAMPLES[name])
    return f"[bold]Examples[/bold]\n{lines}"


NAMES = tuple(_EXAMPLES)
