"""Usage input: one message per item, from JSONL, CSV or a Postfix mail log.

Parsers stream: they read one line at a time and yield ``UsageInput`` items
or ``BadLine`` items (``message.py``: the one validation of a message's
fields), never holding the file in memory. Nothing here touches the store.
"""
