"""The directory: agencies, accounts, domains, SMTP credentials, the store's
settings and the audit trail. Each change loads, applies a rule and writes in
one transaction and returns an ``Outcome`` (``core.model.records``); a view
(a list, a detail) returns plain data shaped as its JSON output
(docs/json-output.md), which every front end renders as it is."""
