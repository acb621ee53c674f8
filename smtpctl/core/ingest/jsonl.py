"""JSONL usage input: one message per JSON object line."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import datetime, tzinfo
from typing import Any

from smtpctl.core.ingest.lines import Lines, UnreadableLine, decode_line
from smtpctl.core.ingest.message import (
    _JSON_KEYS,
    _KNOWN_KEYS,
    EARLIEST,
    LATEST,
    MAX_ID,
    MAX_NAME,
    MAX_RECIPIENTS,
    BadLine,
    UsageInput,
    _show,
    build_input,
    count_addresses,
    parse_time,
)
from smtpctl.core.model.errors import InvalidInput

# A time as ``usage`` stores it: UTC to the second, "Z". Such a time is
# recorded as given, without parsing and formatting it twice.
_CANONICAL_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z").fullmatch


def _fast_jsonl() -> Any:
    """The fast path of ``read_jsonl``: a function from one line (bytes or
    text) and its number to a ``UsageInput``, or None for anything it is not
    sure of, which then goes the slow way (``json`` and ``build_input``), the
    only one that writes a reason. It takes a line only when the slow way
    would take it and give an equal ``UsageInput`` (a test compares the two on
    valid and invalid lines): msgspec decodes the line into typed fields in C,
    and this function checks them as ``build_input`` does."""
    try:
        import msgspec
    except ImportError:  # an install older than this dependency: every line goes the slow way
        return None

    class Line(msgspec.Struct, forbid_unknown_fields=True, gc=False):
        user: str | None = None
        domain: str | None = None
        to: list[str] | None = None
        cc: list[str] | None = None
        bcc: list[str] | None = None
        recipients: int | None = None
        at: str | None = None
        id: str | int | None = None
        direction: str | None = None

    decode = msgspec.json.Decoder(Line).decode
    fromisoformat = datetime.fromisoformat
    canonical = _CANONICAL_TIME

    # Logins already checked, as build_input leaves them (an import names a
    # few thousand senders, a million times): one dict look-up, not three
    # string scans. Bounded: cleared when it holds too many.
    checked: dict[str, str | None] = {}

    def fast(line: bytes | str, number: int, default_tz: tzinfo) -> UsageInput | None:
        try:
            ev = decode(line)
        except Exception:  # noqa: BLE001 - not JSON, not UTF-8, a type build_input would read...: the slow way
            return None
        user, domain = ev.user, ev.domain
        if user is not None:
            known = checked.get(user, False)
            if known is False:
                if len(user) > MAX_NAME or not user.isprintable():
                    return None
                if len(checked) >= 100_000:
                    checked.clear()
                known = checked[user] = user.strip() or None
            user = known
        if domain is not None:
            domain = domain.strip()
            if len(domain) > MAX_NAME or not domain.isprintable():
                return None
            domain = domain or None
        direction = ev.direction
        if direction is None or direction == "outbound":
            if not user or domain:
                return None
            direction = "outbound"
        elif direction == "inbound":
            if not domain or user:
                return None
        else:
            return None
        recipients, to, cc, bcc = ev.recipients, ev.to, ev.cc, ev.bcc
        if recipients is not None:
            if to or cc or bcc or not 0 < recipients <= MAX_RECIPIENTS:
                return None
            to_n, cc_n, bcc_n = recipients, 0, 0
        elif to is None and cc is None and bcc is None:
            return None
        else:
            try:
                to_n, cc_n, bcc_n = count_addresses(to or (), cc or (), bcc or ())
            except InvalidInput:
                return None
            if not to_n + cc_n + bcc_n:
                return None
        at, at_text = ev.at, None
        if not at:
            when = None
        elif canonical(at):
            try:
                when = fromisoformat(at)  # reads "Z" as timezone.utc, as parse_time does
            except ValueError:
                return None
            if not EARLIEST <= when <= LATEST:
                return None
            at_text = at
        else:
            try:
                when = parse_time(at, default_tz)
            except InvalidInput:
                return None
        sid = ev.id
        if sid is not None:
            if sid.__class__ is not str:
                return None  # a number: rare, and str() of a huge one raises
            sid = sid.strip()
            if len(sid) > MAX_ID or not sid.isprintable():
                return None
            sid = sid or None
        return UsageInput(direction, user, domain, to_n, cc_n, bcc_n, when, sid, number, at_text)

    return fast


def read_jsonl(lines: Iterable[str] | Lines, default_tz: tzinfo, *,
               fast: bool = True) -> Iterator[UsageInput | BadLine]:
    """One message per JSON object line; every other line is a ``BadLine``
    (blank lines are skipped). Never raises for what a line holds.

    ``lines`` from ``read_lines`` are read as bytes: a well-formed line is
    decoded only by the fast path, and only a line it does not take is
    decoded to text. ``fast=False`` reads every line the slow way (the
    reference the fast path is tested against).
    """
    import json

    loads = json.JSONDecoder().decode  # json.loads without its per-call checks
    quick = _fast_jsonl() if fast else None
    source: Iterable[Any] = lines.raw() if isinstance(lines, Lines) else lines
    for number, text in enumerate(source, start=1):
        if text.__class__ is UnreadableLine:
            yield BadLine(number, text.reason)  # type: ignore[attr-defined]
            continue
        if quick is not None:
            item = quick(text, number, default_tz)
            if item is not None:
                yield item
                continue
        if text.__class__ is bytes:
            text = decode_line(text)
            if text.__class__ is UnreadableLine:
                yield BadLine(number, text.reason)  # type: ignore[attr-defined]
                continue
        if number == 1 and text.startswith("\ufeff"):
            text = text[1:]
        if not text.strip():
            continue
        try:
            item = loads(text)
            if not isinstance(item, dict):
                raise InvalidInput("a line must be a JSON object")
            if not _KNOWN_KEYS(item):
                unknown = item.keys() - _JSON_KEYS
                raise InvalidInput(f"unknown keys: {_show(', '.join(sorted(unknown)), 200)[1:-1]}")
            get = item.get
            yield build_input(direction=get("direction"), user=get("user"), domain=get("domain"),
                              to=get("to"), cc=get("cc"), bcc=get("bcc"),
                              recipients=get("recipients"), at=get("at"), source_id=get("id"),
                              default_tz=default_tz, line=number)
        except json.JSONDecodeError as exc:
            yield BadLine(number, f"not JSON: {exc.msg}")
        except InvalidInput as exc:
            yield BadLine(number, exc.message)
        except (ValueError, RecursionError) as exc:
            # json refuses integers of more than 4,300 digits (ValueError) and
            # nesting deeper than the stack (RecursionError).
            yield BadLine(number, f"not JSON this program can read: {type(exc).__name__}")
