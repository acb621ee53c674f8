"""The library: rules, billing, passwords, the store and the use cases.

Nothing here imports typer or rich; any front end (the CLI, the servers) can
call ``smtpctl.core.services`` and friends.
"""
