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
    "why": (
        "smtpctl why app@mail.acme.example",
        "smtpctl why acme --json",
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
    "auth": (
        "smtpctl auth throttle list",
        "smtpctl auth throttle list --login app@mail.acme.example --json",
        "smtpctl auth throttle clear --client 203.0.113.7 --yes",
    ),
    "notify": (
        "smtpctl notify add https://hooks.example.net/smtpctl --event limit.crossed --event account.blocked",
        "smtpctl notify log --failed --json",
        "smtpctl notify run --metrics 127.0.0.1:9467",
    ),
    "store": (
        "smtpctl store show",
        "smtpctl store set timezone Europe/Berlin",
        "smtpctl store backup /backups/smtpctl.db --force",
    ),
}


# One or two real examples per leaf command, shown at the foot of its --help
# and in its man page ("account add" is the command smtpctl account add).
_LEAF_EXAMPLES: dict[str, tuple[str, ...]] = {
    "auth throttle": ("smtpctl auth throttle list",),  # (the group within auth; its commands' examples follow)
    "auth throttle list": ("smtpctl auth throttle list --client 203.0.113.7",
                           "smtpctl auth throttle list --max-auth-failures 10 --json"),
    "auth throttle clear": ("smtpctl auth throttle clear --login app@mail.acme.example --yes",
                            "smtpctl auth throttle clear --client 203.0.113.7 --login app@mail.acme.example --yes --json"),
    "agency add": ("smtpctl agency add 'Acme Agency'", "smtpctl agency add 'Acme Agency' --exist-ok --json"),
    "agency list": ("smtpctl agency list", "smtpctl agency list --csv > agencies.csv"),
    "agency show": ("smtpctl agency show 'Acme Agency'", "smtpctl agency show 'Acme Agency' --json"),
    "agency rename": ("smtpctl agency rename 'Acme Agency' 'Acme Group'",),
    "agency remove": ("smtpctl agency remove 'Acme Agency' --yes",),
    "account add": ("smtpctl account add acme --agency 'Acme Agency'",
                    "smtpctl account add acme --agency 'Acme Agency' --daily-limit 5,000"),
    "account list": ("smtpctl account list --agency 'Acme Agency'", "smtpctl account list --blocked"),
    "account show": ("smtpctl account show acme", "smtpctl account show acme --json"),
    "account set-limit": ("smtpctl account set-limit acme 5,000", "smtpctl account set-limit acme default",
                          "smtpctl account set-limit acme 500 --window hour",
                          "smtpctl account set-limit acme --window month --clear"),
    "agency set-limit": ("smtpctl agency set-limit 'Acme Agency' 1,000,000 --window month",
                         "smtpctl agency set-limit 'Acme Agency' --clear"),
    "user set-limit": ("smtpctl user set-limit app@mail.acme.example 200 --window hour",
                       "smtpctl user set-limit app@mail.acme.example --window day --clear"),
    "account block": ("smtpctl account block acme --reason 'compliance review'",
                      "smtpctl account block acme --reason 'spam complaints' --revoke --yes"),
    "account unblock": ("smtpctl account unblock acme",),
    "account rename": ("smtpctl account rename acme acme-marketing",),
    "account remove": ("smtpctl account remove acme --yes",),
    "domain add": ("smtpctl domain add mail.acme.example --account acme",
                   "smtpctl domain add shared.example --agency 'Acme Agency'"),
    "domain list": ("smtpctl domain list", "smtpctl domain list --account acme --csv"),
    "domain show": ("smtpctl domain show mail.acme.example",),
    "domain remove": ("smtpctl domain remove mail.acme.example --yes",),
    "user create": ("smtpctl user create app@mail.acme.example --generate",
                    "printf '%s\\n' \"$SMTP_PASSWORD\" | smtpctl user create app@mail.acme.example --password-stdin"),
    "user list": ("smtpctl user list --domain mail.acme.example", "smtpctl user list --account acme --json"),
    "user show": ("smtpctl user show app@mail.acme.example",),
    "user reset": ("smtpctl user reset app@mail.acme.example --generate",
                   "smtpctl user reset app@mail.acme.example --password-file /run/secrets/smtp"),
    "user delete": ("smtpctl user delete app@mail.acme.example --yes",
                    "smtpctl user delete old@mail.acme.example tmp@mail.acme.example --missing-ok --yes"),
    "user verify": ("smtpctl user verify app@mail.acme.example --password-file /run/secrets/smtp",),
    "user import": ("smtpctl user import /etc/dovecot/users --format dovecot --dry-run",
                    "smtpctl user import postfix-accounts.cf --format dms"),
    "usage record": ("smtpctl usage record --user app@mail.acme.example --to a@example.org --cc b@example.org",
                     "smtpctl usage record --inbound --domain mail.acme.example --recipients 3"),
    "usage import": ("smtpctl usage import events.jsonl", "smtpctl usage import /var/log/mail.log --format postfix"),
    "usage status": ("smtpctl usage status", "smtpctl usage status acme --fail-at 90"),
    "usage report": ("smtpctl usage report --by day --since 7d", "smtpctl usage report --by agency --by account --csv"),
    "usage prune": ("smtpctl usage prune --before 2026-01 --yes",),
    "pricing estimate": ("smtpctl pricing estimate --per-day 1,500", "smtpctl pricing estimate --emails 1,000,000 --compare SES=0.10"),
    "imap list": ("smtpctl imap list", "smtpctl imap list --json"),
    "imap lookup": ("smtpctl imap lookup gmail",),
    "policy serve": ("smtpctl policy serve --listen 127.0.0.1:10040",
                     "smtpctl policy serve --listen unix:/var/spool/postfix/private/smtpctl-policy --socket-group postfix"),
    "store show": ("smtpctl store show", "smtpctl store show --json"),
    "store set": ("smtpctl store set smtp_host smtp.example.net", "smtpctl store set default_daily_limit 2,000"),
    "store unset": ("smtpctl store unset default_daily_limit",),
    "store info": ("smtpctl store info", "smtpctl store info --json"),
    "store backup": ("smtpctl store backup /backups/smtpctl.db --force",),
    "store copy": ("smtpctl store copy postgresql://smtpctl@db.example/smtpctl",),
    "billing prices": ("smtpctl billing prices", "smtpctl billing prices --agency 'Acme Agency'"),
    "billing set-price": ("smtpctl billing set-price 0.70 --from 2027-01-01",),
    "billing set-resale": ("smtpctl billing set-resale 'Acme Agency' 0.90 --from 2027-01-01",),
    "billing credit": ("smtpctl billing credit 'Acme Agency' 100 --ref payment-4242",),
    "billing balance": ("smtpctl billing balance", "smtpctl billing balance 'Acme Agency' --json"),
    "billing set-mode": ("smtpctl billing set-mode 'Acme Agency' prepaid",),
    "billing set-warn": ("smtpctl billing set-warn 'Acme Agency' 20",),
    "billing close": ("smtpctl billing close 2026-11",),
    "billing statement": ("smtpctl billing statement 'Acme Agency' 2026-11",
                          "smtpctl billing statement 'Acme Agency' 2026-11 --html november.html"),
    "billing statements": ("smtpctl billing statements --agency 'Acme Agency'",),
    "notify add": ("smtpctl notify add https://hooks.example.net/smtpctl",
                   "smtpctl notify add https://hooks.example.net/smtpctl --event credits.low --secret-file secret.txt"),
    "notify list": ("smtpctl notify list", "smtpctl notify list --json"),
    "notify remove": ("smtpctl notify remove 1",),
    "notify test": ("smtpctl notify test 1",),
    "notify log": ("smtpctl notify log", "smtpctl notify log --failed --limit 20 --json"),
    "notify run": ("smtpctl notify run --metrics 127.0.0.1:9467", "smtpctl notify run --once"),
}
# the other verb of remove/delete shows the same examples
for _group, _verb, _other in (("agency", "remove", "delete"), ("account", "remove", "delete"),
                              ("domain", "remove", "delete"), ("user", "delete", "remove")):
    _LEAF_EXAMPLES[f"{_group} {_other}"] = _LEAF_EXAMPLES[f"{_group} {_verb}"]


def examples(name: str) -> str | None:
    """The epilog for ``name`` (a group, ``smtpctl`` for the root, or a leaf
    command such as ``account add``): rich markup; ``None`` where none is kept."""
    found = _EXAMPLES.get(name) or _LEAF_EXAMPLES.get(name)
    if found is None:
        return None
    lines = "\n".join(line.replace("[", "\\[") for line in found)
    return f"[bold]Examples[/bold]\n{lines}"


def example_lines(name: str) -> tuple[str, ...]:
    """The examples of ``name`` as plain command lines (for man pages)."""
    return _EXAMPLES.get(name) or _LEAF_EXAMPLES.get(name) or ()


NAMES = tuple(_EXAMPLES)
