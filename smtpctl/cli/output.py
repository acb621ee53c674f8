"""The one renderer: a result becomes a table, JSON or CSV on stdout.

Messages, warnings and errors go to stderr. Rich is imported only when a
table is actually drawn, so ``--json`` runs stay light; a big table written
to a file or a pipe needs only its cell widths (``_print_plain_table``).
Typer is not imported either (the fast path renders with this module): the
options every command shares (``JsonOption``...) are in
``smtpctl.cli.options`` and are found here too.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Sequence

from smtpctl.core.errors import InvalidInput

_OPTIONS = ("JsonOption", "CsvOption", "ExistOkOption", "YesOption")


def __getattr__(name: str) -> Any:
    # ``from smtpctl.cli.output import JsonOption``: the shared typer options
    # are built (typer imported) by the command modules that declare them.
    if name in _OPTIONS:
        from smtpctl.cli import options

        return getattr(options, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


Column = tuple[str, str]  # (key in the record, header for people)


def fmt(json_out: bool, csv_out: bool = False) -> str:
    if json_out and csv_out:
        raise InvalidInput("--json and --csv cannot be used together")
    return "json" if json_out else "csv" if csv_out else "table"


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        from smtpctl.core.clock import iso_z

        return iso_z(value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "as_dict"):
        return value.as_dict()
    raise TypeError(f"cannot render {type(value).__name__}")


def to_json(data: Any, *, pretty: bool = False) -> str:
    return json.dumps(data, indent=2 if pretty else None, default=_plain, ensure_ascii=False)


def print_json(data: Any) -> None:
    """The one JSON document a --json command prints on stdout: indented for a
    person at a terminal, one compact line for a pipe (json's C encoder only
    runs without indentation: 5x faster on a 5,800-row report)."""
    sys.stdout.write(to_json(data, pretty=sys.stdout.isatty()) + "\n")


def _cell(value: Any) -> str:
    kind = type(value)
    if kind is str:  # most cells: answered before the isinstance chain
        return value
    if kind is int:
        return str(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items())
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def _column_texts(rows: Sequence[dict[str, Any]], key: str) -> list[str]:
    """``_cell`` of every row's ``key``; a column of strings or of integers
    (most columns) is converted without a call per cell."""
    values = [row.get(key) for row in rows]
    kinds = set(map(type, values))
    if kinds <= {str}:
        return values
    if kinds <= {int}:
        return list(map(str, values))
    if kinds <= {str, type(None)}:
        return ["" if value is None else value for value in values]
    return [_cell(value) for value in values]


def _console(stderr: bool = False):
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else int(os.environ.get("COLUMNS", "200"))
    return Console(file=stream, width=width, no_color=bool(os.environ.get("NO_COLOR")), highlight=False,
                   soft_wrap=False, emoji=False)  # data is shown as it is: ":x:" in a note stays ":x:"


# Every column keeps its cells whole and on one line (logins, domains and
# timestamps are copied into other commands), except free text, which may
# wrap onto several lines when the terminal is narrow.
WRAPPABLE = frozenset({"details", "note", "description", "block_reason", "reason", "username", "password"})
WRAP_MIN = 12  # the narrowest a wrapping column gets before we drop columns instead


def _drop_order(keys: Sequence[str]) -> list[str]:
    """Columns to leave out, first to last, when the rows do not fit the
    terminal: those whose content is elsewhere on the row or rarely needed.
    The first column (what the row is) always stays."""
    order = ["updated_at", "unicode_name", "hash_scheme", "block_reason", "details", "note"]
    if "login" in keys:
        order.append("domain")  # the login ends with its domain
    order += ["created_at", "blocked"]
    if "account" in keys:
        order.append("agency")  # an account belongs to one agency
    order += ["inbound", "outbound", "messages", "bar"]
    return [k for k in order if k in keys[1:]]


def _width(text: str) -> int:
    """Terminal cells ``text`` takes (rich's measure; plain ``len`` for ASCII)."""
    if text.isascii():
        return len(text)
    from rich.cells import cell_len

    return cell_len(text)


def _layout(texts: Sequence[Sequence[str]], columns: Sequence[Column], width: int,
            drop: Sequence[str] | None = None) -> tuple[list[Column], dict[str, int]] | None:
    """The columns that fit ``width`` with every identifier whole, and each
    kept column's minimum width; ``None`` when even the fewest do not fit.
    ``texts`` holds each column's cells, in the order of ``columns``."""
    need: dict[str, int] = {}
    for (key, header), column in zip(columns, texts):
        header_word = max((_width(w) for w in header.split()), default=1)
        distinct = set(column)  # names, days and counts repeat: measure each string once
        longest = max(map(_width, distinct), default=0)
        if key in WRAPPABLE:
            longest_word = max((_width(w) for text in distinct for w in text.split()), default=0)
            need[key] = max(header_word, min(longest, WRAP_MIN, max(longest_word, 1)))
        else:
            # no_wrap: the header keeps its lines too
            need[key] = max(longest, *(_width(line) for line in header.split("\n")))
    kept = list(columns)
    droppable = [k for k in drop if k in need] if drop is not None else _drop_order([k for k, _ in columns])
    while True:
        total = sum(need[k] + 2 for k, _ in kept) + len(kept) - 1  # padding 1+1, one rule between columns
        if total <= width:
            return kept, need
        if not droppable:
            return None
        gone = droppable.pop(0)
        kept = [c for c in kept if c[0] != gone]


def render_list(rows: Sequence[dict[str, Any]], columns: Sequence[Column], *, output: str,
                title: str | None = None, empty: str = "Nothing to show.",
                drop: Sequence[str] | None = None) -> None:
    """Render records: an array of objects, CSV rows, or a table.

    A table never cuts an identifier (a login, a domain, a timestamp): on a
    narrow terminal free text wraps first, then low-value columns are left
    out (``drop``, first to last, else ``_drop_order``); when the rows still
    do not fit, each row is printed as a block of ``Header: value`` lines.
    """
    if output == "json":
        print_json(list(rows))
        return
    if output == "csv":
        import csv

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow([key for key, _ in columns])
        for row in rows:
            writer.writerow([_csv_cell(row.get(key)) for key, _ in columns])
        return
    if not rows:
        message(empty)
        return
    texts = [_column_texts(rows, key) for key, _ in columns]
    stream = sys.stdout
    plain = len(rows) >= FAST_ROWS and not stream.isatty() and not _is_terminal(stream)  # no styles: no rich
    console = None if plain else _console()
    width = console.width if console is not None else int(os.environ.get("COLUMNS", "200"))
    fitted = _layout(texts, columns, width, drop)
    if fitted is None:
        _render_blocks(rows, columns, title=title)
        return
    kept, need = fitted
    texts = [texts[columns.index(column)] for column in kept]
    if len(rows) >= FAST_ROWS and _print_plain_table(stream, console, width, texts, kept, need, title):
        return
    (console or _console()).print(_rich_table(texts, kept, need, title))


# From this many rows on, a table is drawn line by line (``_print_plain_table``,
# the same output) instead of by rich, whose cost per cell made a 6,000-row
# report take seconds. Below it rich draws everything.
FAST_ROWS = 100


def _is_terminal(stream: Any) -> bool:
    """Whether rich would treat ``stream`` as a terminal (and style what it
    draws): its rules, read without importing it."""
    compatible = os.environ.get("TTY_COMPATIBLE", "")
    if compatible in ("0", "1"):
        return compatible == "1"
    force = os.environ.get("FORCE_COLOR")
    if force is not None:
        return force != ""
    try:
        return stream.isatty()
    except ValueError:
        return False


def _rich_table(texts: Sequence[Sequence[str]], kept: Sequence[Column], need: dict[str, int],
                title: str | None, widths: Sequence[int] | None = None) -> Any:
    """The rich table of ``texts`` (one list of cells per column of ``kept``);
    ``widths`` fixes each column's width."""
    from rich.table import Table

    table = Table(title=title, show_edge=False, header_style="bold")
    for index, (key, header) in enumerate(kept):
        fixed = {"width": widths[index]} if widths is not None else {}
        if key in WRAPPABLE:
            table.add_column(header, min_width=need[key], overflow="fold", **fixed)
        else:
            table.add_column(header, no_wrap=True, min_width=need[key], **fixed)
    for row in zip(*texts):
        table.add_row(*[_escape(text) for text in row])
    return table


def _print_plain_table(stream: Any, console: Any, width: int, texts: Sequence[Sequence[str]],
                       kept: Sequence[Column], need: dict[str, int], title: str | None) -> bool:
    """Draw the table as rich would, in one pass over the cells; ``False``,
    drawing nothing, where rich's rules go beyond what is done here (a cell
    or header that is not one printable line, markup in a header, an
    identifier rich would have to cut).

    Column widths are rich's: each column's widest cell (or header line, or
    its minimum), and when they do not fit, rich's own way of narrowing the
    columns that wrap. A row whose cells fit is one padded line; a free-text
    cell too long for its column is wrapped by rich's text wrapping, alone.
    On a terminal (``console`` given) rich draws the title and the header, so
    their styles follow the terminal, from a table with the same widths and
    no rows; off a terminal nothing is styled and every line is written here."""
    headers = [header.split("\n") for _, header in kept]
    if any("[" in line or not line.isprintable() for lines in headers for line in lines):
        return False
    sizes: list[dict[str, int]] = []
    longest: list[int] = []
    for column, lines in zip(texts, headers):
        distinct = set(column)
        if not "".join(distinct).isprintable():  # new lines, tabs, control characters
            return False
        sizes.append({text: _width(text) for text in distinct})
        longest.append(max(max(sizes[-1].values(), default=0), *(_width(line) for line in lines)))
    widths = _column_widths(width, longest, [need[key] for key, _ in kept], [key in WRAPPABLE for key, _ in kept])
    if sum(widths) + len(widths) - 1 > width:
        return False
    inner = [w - 2 for w in widths]
    for (key, _), size, lines, room in zip(kept, longest, headers, inner):
        if (size > room and key not in WRAPPABLE) or any(_width(line) > room for line in lines):
            return False  # rich would cut an identifier or wrap a header: let it
    if console is not None:
        console.print(_rich_table([], kept, need, title, inner))
    else:
        head = _plain_head(stream, inner, kept, title, sum(widths) + len(widths) - 1)
        if head is None:
            return False
        stream.write(head)
    padded: list[list[Any]] = []
    wraps = False
    for column, measured, room in zip(texts, sizes, inner):
        pad: dict[str, Any] = {}
        for text, size in measured.items():
            if size <= room:
                pad[text] = f" {text}{' ' * (room - size)} "
            else:
                console = console or _console()  # rich's text wrapping wants one
                pad[text] = _wrapped(console, text, room)
                wraps = True
        padded.append([pad[text] for text in column])
    if not wraps:
        stream.write("\n".join(map("│".join, zip(*padded))) + "\n")
        return True
    blank = [" " * w for w in widths]
    out = []
    for cells in zip(*padded):
        if not any(isinstance(cell, list) for cell in cells):
            out.append("│".join(cells))
            continue
        stacks = [cell if isinstance(cell, list) else [cell] for cell in cells]
        for line in range(max(map(len, stacks))):  # cells sit at the top, as rich aligns rows
            out.append("│".join(stack[line] if line < len(stack) else blank[i] for i, stack in enumerate(stacks)))
    stream.write("\n".join(out) + "\n")
    return True


def _column_widths(width: int, longest: Sequence[int], minimum: Sequence[int], wraps: Sequence[bool]) -> list[int]:
    """Each column's width with its padding, as rich's ``Table`` computes it
    (not expanded, no edge, padding 1 each side) from each column's widest
    line: the widest lines when they fit, else the columns that may wrap are
    narrowed, widest first, and the rest evenly as a last resort."""
    def measure(room: int, size: int, least: int) -> int:
        if room < 1:
            return 0
        fitted = room if room - 2 < 1 else min(size + 2, room)
        return max(fitted, least + 2)

    room = width - (len(longest) - 1)  # one rule between columns
    widths = [measure(room, size, least) or 1 for size, least in zip(longest, minimum)]
    if sum(widths) > room:
        from rich._ratio import ratio_reduce
        from rich.table import Table

        widths = Table._collapse_widths(widths, list(wraps), room)
        if sum(widths) > room:
            widths = ratio_reduce(sum(widths) - room, [1] * len(widths), widths, widths)
        widths = [measure(w, size, least) for w, size, least in zip(widths, longest, minimum)]
    return widths


def _wrapped(console: Any, text: str, room: int) -> list[str]:
    """``text`` wrapped to ``room`` cells as rich wraps a folding column's
    cell: the lines, each padded as a cell."""
    from rich.text import Text

    lines = Text(text).wrap(console, room, justify="left", overflow="fold", no_wrap=False)
    return [f" {line.plain}{' ' * (room - _width(line.plain))} " for line in lines]


def _plain_head(stream: Any, widths: Sequence[int], kept: Sequence[Column], title: str | None,
                table_width: int) -> str | None:
    """The title, header and rule rich draws above the rows when nothing is
    styled; ``None`` where rich would do more than pad (markup in a title
    or header, a title wider than the table, an output encoding that makes
    rich swap the box for ASCII)."""
    if not (getattr(stream, "encoding", None) or "utf-8").lower().startswith("utf"):
        return None
    headers = [header.split("\n") for _, header in kept]
    lines = []
    if title:
        if "[" in title or not title.rstrip(" ").isprintable():  # markup, or a new line rich keeps as a line
            return None
        title = title.rstrip()
        size = _width(title)
        if size > table_width:
            return None
        left = (table_width - size) // 2
        lines.append(" " * left + title + " " * (table_width - size - left))
    height = max(len(h) for h in headers)
    for line in range(height):
        cells = []
        for header, width in zip(headers, widths):
            text = header[line - (height - len(header))] if line >= height - len(header) else ""  # bottom-aligned
            cells.append(f" {text}{' ' * (width - _width(text))} ")
        lines.append("┃".join(cells))
    lines.append("╇".join("━" * (width + 2) for width in widths))
    return "\n".join(lines) + "\n"


def _render_blocks(rows: Sequence[dict[str, Any]], columns: Sequence[Column], *, title: str | None) -> None:
    """Rows too wide for the terminal: one ``Header: value`` line per field,
    a blank line between rows; long values run past the edge rather than
    being cut."""
    from rich.cells import cell_len

    columns = [(key, " ".join(header.split())) for key, header in columns]  # one line per label
    label_width = max(cell_len(header) for _, header in columns) + 1
    lines = [title, ""] if title else []
    for index, row in enumerate(rows):
        if index:
            lines.append("")
        for key, header in columns:
            value = _cell(row.get(key))
            if value != "":
                lines.append(f"{(header + ':').ljust(label_width)} {value}".rstrip())
    sys.stdout.write("\n".join(lines) + "\n")


def dollars(amount: str) -> str:
    """A money string for people: ``12.50`` -> ``$12.50``, ``-0.13`` -> ``-$0.13``."""
    return f"-${amount[1:]}" if amount.startswith("-") else f"${amount}"


def bar_scale(peak: int, length: int = 20) -> int:
    """Emails per block of a bar chart: the smallest 1, 2 or 5 times a power
    of ten that draws ``peak`` in at most ``length`` blocks."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if peak <= factor * step * length:
                return factor * step
        step *= 10


def bar(value: int, unit: int) -> str:
    """``value`` as blocks of ``unit`` (at least one block when not zero)."""
    return "█" * max(1, round(value / unit)) if value else ""


def rounding_note(rounded_rows: Iterable[str], rounded_total: str, exact_total: str) -> str | None:
    """A footnote when rows rounded to the cent one by one do not add up to
    the total rounded once (RULES: sums are taken before rounding), else None."""
    shown = sum((Decimal(r) for r in rounded_rows), Decimal("0"))
    if shown == Decimal(rounded_total):
        return None
    return (f"the rows, each rounded to the cent, add up to ${shown:.2f}; the total ${rounded_total} is the "
            f"exact sum ${exact_total} rounded once, which is what is billed.")


AGENCY_ASSIGNED_LABEL = "(agency-assigned domains)"


def render_credits(credits: dict[str, Any]) -> None:
    """An agency's credits view (``core.credits``): one row per account with
    emails and the amount to pay this month and last, a total, and a note
    when the rounded rows do not add up to the rounded total."""
    this, last = credits["this_month"], credits["last_month"]
    rows = [{
        "account": AGENCY_ASSIGNED_LABEL if r["agency_assigned"] else r["account"],
        "this_emails": r["this_month"]["emails"], "this_cost": f"${r['this_month']['cost_rounded']}",
        "last_emails": r["last_month"]["emails"], "last_cost": f"${r['last_month']['cost_rounded']}",
    } for r in credits["accounts"]]
    total = credits["total"]
    rows.append({"account": "Total", "this_emails": total["this_month"]["emails"],
                 "this_cost": f"${total['this_month']['cost_rounded']}",
                 "last_emails": total["last_month"]["emails"], "last_cost": f"${total['last_month']['cost_rounded']}"})
    sys.stdout.write("\n")
    render_list(rows, [("account", "Account"), ("this_emails", f"{this['month']}\nemails"),
                       ("this_cost", f"{this['month']}\ncost"), ("last_emails", f"{last['month']}\nemails"),
                       ("last_cost", f"{last['month']}\ncost")], output="table",
                title=f"Credits: {this['since']} to {this['until']} and {last['month']} "
                      f"({credits['timezone']}) at ${credits['price_per_1000']}/1,000")
    for key in ("this_month", "last_month"):
        note = rounding_note([r[key]["cost_rounded"] for r in credits["accounts"]], total[key]["cost_rounded"],
                             total[key]["cost"])
        if note:
            message(f"Note ({credits[key]['month']}): {note}")


def _csv_cell(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ";".join(_cell(v) for v in value)
    return _cell(value)


def render_record(record: dict[str, Any], *, output: str, fields: Iterable[Column] | None = None) -> None:
    """Render one object: a JSON object, or a two-column table for people."""
    if output == "json":
        print_json(record)
        return
    if output == "csv":
        render_list([record], list(fields or [(k, k) for k in record]), output="csv")
        return
    from rich.table import Table

    table = Table(show_header=False, show_edge=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")  # lists wrap between items; one long word folds only past the edge
    for key, label in fields or [(k, k.replace("_", " ")) for k in record]:
        table.add_row(label, _escape(_cell(record.get(key))))
    _console().print(table)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def report_outcome(kind: str, outcome: Any, label: str, json_out: bool) -> None:
    """Say what a create or change did: the object as JSON, or one line for people."""
    if json_out:
        print_json(outcome.as_dict())
    elif outcome.status == "unchanged":
        message(f"{kind} {label} already exists (unchanged).")
    else:
        message(f"{kind} {label} {outcome.status}.")


def report_rename(kind: str, outcome: Any, json_out: bool) -> None:
    """Say what a rename did: the object (with ``old_name``) as JSON, or one line."""
    if json_out:
        print_json(outcome.as_dict())
    elif outcome.status == "unchanged":
        message(f"{kind} {outcome.object.name!r} already has that name (unchanged).")
    else:
        message(f"{kind} {outcome.extra['old_name']!r} renamed to {outcome.object.name!r}; its history follows.")


def report_removal(kind: str, outcome: Any, json_out: bool) -> None:
    """Say what a removal did: the object with ``"status": "deleted"``, or one line."""
    if json_out:
        print_json(outcome.as_dict())
    else:
        message(f"{kind} {outcome.object.name!r} removed.")


def message(text: str) -> None:
    """A line for people, on stderr."""
    sys.stderr.write(text + "\n")


def warning(text: str) -> None:
    sys.stderr.write(f"Warning: {text}\n")


def confirm_destructive(question: str, yes: bool) -> None:
    """Ask before a destructive change; without a TTY, ``--yes`` is required."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise InvalidInput(f"{question} Refusing without --yes (no terminal to confirm on); nothing was changed")
    import typer

    if not typer.confirm(question, default=False, err=True):
        raise InvalidInput("not confirmed; nothing was changed")
