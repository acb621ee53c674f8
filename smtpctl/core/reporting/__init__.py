"""Reporting: usage and cost over days, the agency's credits view, price
estimates, and today's status against the limits."""
