"""Usage input: one message per item, from JSONL, CSV or a Postfix mail log.

Parsers stream: they read the input a block of lines at a time (``lines.py``,
the one line reader) and yield ``UsageInput`` items or ``BadLine`` items
(``message.py``: the one validation of a message's fields), never holding
the file in memory. Nothing here touches the store.
"""
