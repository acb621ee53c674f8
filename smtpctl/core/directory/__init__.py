"""The directory: agencies, accounts, domains, SMTP credentials, the store's
settings and the audit trail. Each use case loads, applies a rule and writes
in one transaction, and returns records (``core.model.records``)."""
