"""``smtpctl policy serve``: Postfix SMTP access policy delegation.

The protocol (Postfix SMTPD_POLICY_README): Postfix writes ``name=value``
lines ended by an empty line; we answer one ``action=...`` line and an empty
line, and keep the connection open for the next request.

``decision``: the answer to one request, from the store; ``protocol``: the
requests read off a connection and answered in order; ``socket``: the unix
socket and the start and stop. The actions are ``servers/replies.py``.
"""
