"""Metering: the one cap rule (``rule.py``, pure) and its callers: batch
recording (``usage record``/``import``), live admission (``serve``, the
policy service), and what crossing a limit does (``enforcement.py``)."""
