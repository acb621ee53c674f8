"""How core messages count and list things, so every message says it alike."""

from __future__ import annotations


def count(n: int, noun: str) -> str:
    """``1 account``, ``2 accounts``, ``1,500 emails``, ``3 guesses``."""
    return f"{n:,} {noun if n == 1 else noun + ('es' if noun.endswith(('s', 'sh', 'ch', 'x')) else 's')}"


def listing(names: list[str], most: int = 10) -> str:
    """A list for one error line: the first ``most`` names, then how many more."""
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")
