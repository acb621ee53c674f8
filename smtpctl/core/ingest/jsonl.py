"""JSONL usage input: one message per JSON object line."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import tzinfo
from typing import Any

from smtpctl.core.ingest.lines import UnreadableLine
from smtpctl.core.ingest.message import _JSON_KEYS, _KNOWN_KEYS, BadLine, UsageInput, _show, build_input
from smtpctl.core.model.errors import InvalidInput


def _fields_decoder() -> tuple[type, Callable[[str], Any]]:
    """A line's fields, as msgspec decodes them (in C, 0.2 us a line, where
    ``json`` takes 1.8 us): the keys a message may have, each value as JSON
    gives it, checked by nothing here (``build_input`` checks them all). It
    raises ``ValueError`` for anything but an object of those keys.

    msgspec is imported here, not with the module: its import (28-39 ms
    alone on the machine of issue 22, ``typing``'s included) is paid by a
    JSONL import only, not by every ``usage`` command."""
    import msgspec

    class Fields(msgspec.Struct, forbid_unknown_fields=True, gc=False):  # (JSON values hold no cycles)
        user: Any = None
        domain: Any = None
        to: Any = None
        cc: Any = None
        bcc: Any = None
        recipients: Any = None
        at: Any = None
        id: Any = None
        direction: Any = None

    return Fields, msgspec.json.Decoder(Fields).decode


def _json_fields(text: str, number: int, fields: type, loads: Callable[[str], Any]) -> Any:
    """A line msgspec did not read as an object of known keys, read by
    ``json``: its fields, or None for a blank line; ``InvalidInput`` in
    ``json``'s words for a line that is not an object of known keys. (json
    also reads what msgspec refuses: NaN, 1e400, escaped lone surrogates...,
    which ``build_input`` then rejects in its own words.)"""
    import json

    if number == 1 and text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        return None
    try:
        item = loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"not JSON: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:
        # json refuses integers of more than 4,300 digits (ValueError) and
        # nesting deeper than the stack (RecursionError).
        raise InvalidInput(f"not JSON this program can read: {type(exc).__name__}") from None
    if not isinstance(item, dict):
        raise InvalidInput("a line must be a JSON object")
    if not _KNOWN_KEYS(item):
        unknown = item.keys() - _JSON_KEYS
        raise InvalidInput(f"unknown keys: {_show(', '.join(sorted(unknown)), 200)[1:-1]}")
    return fields(**item)


def read_jsonl(lines: Iterable[str], default_tz: tzinfo) -> Iterator[UsageInput | BadLine]:
    """One message per JSON object line; every other line is a ``BadLine``
    (blank lines are skipped). Never raises for what a line holds.

    msgspec decodes each line into its fields, and ``build_input``, the one
    validation, checks them; a line msgspec does not read as an object of
    known keys is read again by ``json``, whose words a ``BadLine`` gives.
    """
    import json

    fields, decode = _fields_decoder()
    loads = json.JSONDecoder().decode  # json.loads without its per-call checks
    for number, line in enumerate(lines, start=1):
        if line.__class__ is UnreadableLine:
            yield BadLine(number, line.reason)  # type: ignore[attr-defined]
            continue
        try:
            try:
                item = decode(line)
            except (ValueError, RecursionError):  # (UnicodeEncodeError: a str with a lone surrogate)
                item = _json_fields(line, number, fields, loads)
                if item is None:
                    continue
            yield build_input(direction=item.direction, user=item.user, domain=item.domain, to=item.to,
                              cc=item.cc, bcc=item.bcc, recipients=item.recipients, at=item.at,
                              source_id=item.id, default_tz=default_tz, line=number)
        except InvalidInput as exc:
            yield BadLine(number, exc.message)
