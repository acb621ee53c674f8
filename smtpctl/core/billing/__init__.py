"""Billing (docs/billing.md): prices in force day by day, prepaid credits and
balances, closed monthly statements, and pruning raw events of billed months."""
