"""Notices: what the service tells its operators' systems, as signed
webhooks (docs/notices.md).

``outbox.emit`` writes a notice in the transaction of the change it tells
of; ``endpoints`` keeps where notices go; ``delivery`` sends them, at least
once, per the Standard Webhooks specification.
"""
