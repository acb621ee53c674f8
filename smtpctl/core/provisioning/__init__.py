"""Provisioning: a declared document applied in one transaction (``apply``),
logins adopted with their hashes from another mail server (``adopt``), and
the store written out for ``apply`` or for real mail servers (``export``)."""
