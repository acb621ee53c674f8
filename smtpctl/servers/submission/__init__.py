"""``smtpctl serve``: SMTP submission authenticated against the store.

``protocol``: aiosmtpd's SMTP session with its traps handled, and the
implicit-TLS handshake; ``handler``: authentication, the envelope checks
and the metering; ``server``: the listeners and the start and stop;
``config``: what the command line gives it. Delivery (Maildir or relay) is
``servers/delivery.py``; the replies are ``servers/replies.py``.

Every message is checked against the daily limit and billed in one
transaction before its ``250`` (``admit_message``, shared by many sessions
through group commit); a Maildir message is staged in ``tmp/``, billed, then
published, and a crash is settled at the next start; with ``--relay`` each
recipient is asked of the next hop while the client waits
(docs/servers.md).
"""
