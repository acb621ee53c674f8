"""CSV usage input: one message per line under a header of column names."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import tzinfo

from smtpctl.core.ingest.lines import MAX_LINE_BYTES, UnreadableLine
from smtpctl.core.ingest.message import _JSON_KEYS, BadLine, UsageInput, _show, build_input
from smtpctl.core.model.errors import InvalidInput

_SEPARATORS = (",", ";")


def _header(text: str) -> tuple[str, list[str], str | None]:
    """Sniff the separator from the header line; return it, the column names
    (lower case) and a problem, if any."""
    import csv

    best: tuple[str, list[str], str | None] | None = None
    for sep in _SEPARATORS:
        try:
            rows = list(csv.reader((text,), delimiter=sep, strict=True))
        except csv.Error as exc:
            candidate = (sep, [], f"the header is not valid CSV: {exc}")
        else:
            names = [c.strip().lower() for c in rows[0]] if len(rows) == 1 else []
            unknown = [n for n in names if n and n not in _JSON_KEYS]
            duplicate = sorted({n for n in names if n and names.count(n) > 1})
            problem = None
            if not names:
                problem = "the header is not one line of column names"
            elif unknown:
                problem = (f"unknown columns: {_show(', '.join(unknown), 200)[1:-1]} "
                           f"(known: {', '.join(sorted(_JSON_KEYS))})")
            elif duplicate:
                problem = f"columns named twice: {', '.join(duplicate)}"
            candidate = (sep, names, problem)
        if candidate[2] is None:
            return candidate
        if best is None or (best[2] is not None and len(candidate[1]) > len(best[1])):
            best = candidate
    assert best is not None
    return best


def _addresses(cell: str | None) -> list[str]:
    if not cell:
        return []
    return [a for a in cell.replace(",", ";").split(";") if a.strip()]


def read_csv(lines: Iterable[str], default_tz: tzinfo) -> Iterator[UsageInput | BadLine]:
    """One message per line under a header of column names (the JSONL keys).

    The header is matched without regard to case, may start with a UTF-8 BOM,
    and sets the separator: ``,`` or ``;``. Within a cell, addresses are
    separated by ``;`` or ``,``. Every record is one line, parsed on its own
    (no usage field holds a line break), so a stray quote costs that line
    only. Every non-blank line is a ``UsageInput`` or a ``BadLine``; when the
    header cannot be read, the header and every line after it are ``BadLine``.
    """
    import csv

    csv.field_size_limit(max(csv.field_size_limit(), MAX_LINE_BYTES))
    reader = csv.reader
    sep = ","
    columns: list[str] | None = None
    nameless = False
    broken: str | None = None
    for number, text in enumerate(lines, start=1):
        if number == 1 and text.startswith("\ufeff"):
            text = text[1:]
        unreadable = text.__class__ is UnreadableLine
        if not unreadable and not text.strip():
            continue
        if columns is None:
            if unreadable:
                columns, problem = [], text.reason  # type: ignore[attr-defined]
            else:
                sep, columns, problem = _header(text)
            nameless = "" in columns
            if problem:
                broken = f"not read: the header (line {number}) is not valid"
                yield BadLine(number, problem)
            continue
        if broken:
            yield BadLine(number, broken)
            continue
        if unreadable:
            yield BadLine(number, text.reason)  # type: ignore[attr-defined]
            continue
        record = text.rstrip("\r\n")
        if "\r" in record or "\n" in record:
            yield BadLine(number, "not valid CSV: a carriage return inside the line")
            continue
        try:
            cells = next(reader((record,), delimiter=sep, strict=True))
        except csv.Error as exc:
            yield BadLine(number, f"not valid CSV: {exc} (a quoted cell must close on its own line)")
            continue
        if len(cells) > len(columns):
            yield BadLine(number, f"{len(cells)} cells, but the header names {len(columns)} columns")
            continue
        if nameless and any(c.strip() for n, c in zip(columns, cells) if not n):
            yield BadLine(number, "a value in a column that has no name in the header")
            continue
        row = dict(zip(columns, cells))
        get = row.get
        try:
            yield build_input(direction=get("direction") or None, user=get("user") or None,
                              domain=get("domain") or None, to=_addresses(get("to")), cc=_addresses(get("cc")),
                              bcc=_addresses(get("bcc")), recipients=get("recipients") or None,
                              at=get("at") or None, source_id=get("id") or None,
                              default_tz=default_tz, line=number)
        except InvalidInput as exc:
            yield BadLine(number, exc.message)
