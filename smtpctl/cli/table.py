"""Tables for people: what ``output.render_list`` draws when neither
``--json`` nor ``--csv`` is asked for, how a value reads in a cell, and the
rich console they are drawn on (rich is imported only when something is
drawn: a ``--json`` or ``--csv`` run never loads it).

Rich draws small tables; from ``FAST_ROWS`` rows on, a table written to a
file or a pipe (or whose title and header rich draws, on a terminal) is
drawn line by line, byte for byte as rich would (``_print_plain_table``).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

Column = tuple[str, str]  # (key in the record, header for people)


def cell_text(value: Any) -> str:
    """A value as the text of a cell (CSV too): yes/no, lists joined with commas, exact decimals."""
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
        return ", ".join(cell_text(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={cell_text(v)}" for k, v in value.items())
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


# Columns of numbers that are not figures: a port or an id reads as typed, with no separator.
NOT_FIGURES = frozenset({"port", "id", "line", "number", "schema_version"})
_FIGURE = re.compile(r"(-?\$?)(\d[\d,]*)(\.\d+)?( \(default\))?")


def figure_text(value: Any) -> str | None:
    """A count or an amount as people read it (``1,598,813``, ``$1,079.20``,
    ``0.675``), or ``None`` when ``value`` is not one; JSON and CSV keep the plain value."""
    kind = type(value)
    if kind is int or kind is float:
        return f"{value:,}"
    if kind is Decimal:
        return format(value, ",f")
    if kind is str:
        match = _FIGURE.fullmatch(value)
        if match:
            sign, whole, fraction, default = match.groups()
            return f"{sign}{int(whole.replace(',', '')):,}{fraction or ''}{default or ''}"
    return None


_FIGURE_KINDS = {int, float, Decimal, str, type(None)}


def _figures(key: str, values: Sequence[Any]) -> list[str] | None:
    """The cells of a column of figures with thousands separators, or ``None``
    when the column holds anything else (blank cells, such as a total row's
    group, are allowed)."""
    if key in NOT_FIGURES or not set(map(type, values)) <= _FIGURE_KINDS:
        return None
    shown: dict[Any, str] = {}
    for value in set(values):
        if value is None or value == "":
            shown[value] = ""
            continue
        text = figure_text(value)
        if text is None:
            return None
        shown[value] = text
    if not any(shown.values()):
        return None
    return [shown[value] for value in values]


def rich_console(stderr: bool = False) -> Any:
    """A rich console on stdout (or stderr): no colour with NO_COLOR, COLUMNS wide off a terminal."""
    # rich is imported here and in the drawing functions, not at the top: a
    # --json or --csv run never draws, and rich.console with rich.table takes
    # 19 ms to import (measured after typer, whose own import is 58 ms).
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = getattr(stream, "terminal_width", None)  # a table drawn for the pager (``pager.paged``)
    if width is None and not stream.isatty():
        width = int(os.environ.get("COLUMNS", "200"))
    return Console(file=stream, width=width, no_color=bool(os.environ.get("NO_COLOR")), highlight=False,
                   soft_wrap=False, emoji=False)  # data is shown as it is: ":x:" in a note stays ":x:"


def escape_markup(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def draw_record(record: dict[str, Any], fields: Iterable[Column]) -> None:
    """One object as a two-column table, label and value (``output.render_record``)."""
    from rich.table import Table

    table = Table(show_header=False, show_edge=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")  # lists wrap between items; one long word folds only past the edge
    for key, label in fields:
        value = record.get(key)
        text = figure_text(value) if type(value) in (int, Decimal) and key not in NOT_FIGURES else None
        table.add_row(label, escape_markup(text if text is not None else cell_text(value)))
    rich_console().print(table)



def _column_texts(rows: Sequence[dict[str, Any]], key: str) -> tuple[list[str], bool]:
    """``cell_text`` of every row's ``key``, and whether the column holds
    figures (then shown with thousands separators, and right-aligned); a
    column of strings or of integers (most columns) is converted without a
    call per cell."""
    values = [row.get(key) for row in rows]
    figures = _figures(key, values)
    if figures is not None:
        return figures, True
    return _cells(values), False


def _cells(values: list[Any]) -> list[str]:
    kinds = set(map(type, values))
    if kinds <= {str}:
        return values
    if kinds <= {int}:
        return list(map(str, values))
    if kinds <= {str, type(None)}:
        return ["" if value is None else value for value in values]
    return [cell_text(value) for value in values]


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


def draw(rows: Sequence[dict[str, Any]], columns: Sequence[Column], *, title: str | None,
         drop: Sequence[str] | None) -> None:
    """Draw ``rows`` (at least one) as a table on stdout, through the pager
    when it is longer than the terminal (``pager.paged``); see ``output.render_list``."""
    from smtpctl.cli.pager import paged

    paged(lambda: _draw(rows, columns, title=title, drop=drop))


def _draw(rows: Sequence[dict[str, Any]], columns: Sequence[Column], *, title: str | None,
          drop: Sequence[str] | None) -> None:
    converted = [_column_texts(rows, key) for key, _ in columns]
    texts = [cells for cells, _ in converted]
    right = {key for (key, _), (_, figures) in zip(columns, converted) if figures}
    stream = sys.stdout
    plain = len(rows) >= FAST_ROWS and not stream.isatty() and not _is_terminal(stream)  # no styles: no rich
    console = None if plain else rich_console()
    width = console.width if console is not None else int(os.environ.get("COLUMNS", "200"))
    fitted = _layout(texts, columns, width, drop)
    if fitted is None:
        _render_blocks(rows, columns, title=title, width=width)
        return
    kept, need = fitted
    texts = [texts[columns.index(column)] for column in kept]
    if len(rows) >= FAST_ROWS and _print_plain_table(stream, console, width, texts, kept, need, title, right):
        return
    (console or rich_console()).print(_rich_table(texts, kept, need, title, right=right))


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
                title: str | None, widths: Sequence[int] | None = None, right: frozenset[str] | set[str] = frozenset()
                ) -> Any:
    """The rich table of ``texts`` (one list of cells per column of ``kept``);
    ``widths`` fixes each column's width; the columns in ``right`` (figures)
    are right-aligned."""
    from rich.table import Table

    # a title is text, not markup: "[/]" in a name must print as typed
    table = Table(title=escape_markup(title) if title else title, show_edge=False, header_style="bold")
    for index, (key, header) in enumerate(kept):
        fixed: dict[str, Any] = {"width": widths[index]} if widths is not None else {}
        if key in right:
            fixed["justify"] = "right"
        if key in WRAPPABLE:
            table.add_column(header, min_width=need[key], overflow="fold", **fixed)
        else:
            table.add_column(header, no_wrap=True, min_width=need[key], **fixed)
    for row in zip(*texts):
        table.add_row(*[escape_markup(text) for text in row])
    return table


def _print_plain_table(stream: Any, console: Any, width: int, texts: Sequence[Sequence[str]],
                       kept: Sequence[Column], need: dict[str, int], title: str | None,
                       right: frozenset[str] | set[str] = frozenset()) -> bool:
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
        console.print(_rich_table([], kept, need, title, inner, right))
    else:
        head = _plain_head(stream, inner, kept, title, sum(widths) + len(widths) - 1, right)
        if head is None:
            return False
        stream.write(head)
    padded: list[list[Any]] = []
    wraps = False
    for (key, _), column, measured, room in zip(kept, texts, sizes, inner):
        pad: dict[str, Any] = {}
        for text, size in measured.items():
            if size <= room and key in right:
                pad[text] = f" {' ' * (room - size)}{text} "
            elif size <= room:
                pad[text] = f" {text}{' ' * (room - size)} "
            else:
                console = console or rich_console()  # rich's text wrapping wants one
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
                table_width: int, right: frozenset[str] | set[str] = frozenset()) -> str | None:
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
        for (key, _), header, width in zip(kept, headers, widths):
            text = header[line - (height - len(header))] if line >= height - len(header) else ""  # bottom-aligned
            gap = " " * (width - _width(text))
            cells.append(f" {gap}{text} " if key in right else f" {text}{gap} ")
        lines.append("┃".join(cells))
    lines.append("╇".join("━" * (width + 2) for width in widths))
    return "\n".join(lines) + "\n"


def _render_blocks(rows: Sequence[dict[str, Any]], columns: Sequence[Column], *, title: str | None,
                   width: int = 200) -> None:
    """Rows too wide for the terminal: one ``Header: value`` line per field,
    a blank line between rows. A value too long for the line wraps between
    its items (``a=1, b=2`` at the comma), each further line indented under
    the first; one item longer than the line runs past the edge rather than
    being cut."""
    from rich.cells import cell_len

    columns = [(key, " ".join(header.split())) for key, header in columns]  # one line per label
    label_width = max(cell_len(header) for _, header in columns) + 1
    lines = [title, ""] if title else []
    for index, row in enumerate(rows):
        if index:
            lines.append("")
        for key, header in columns:
            raw = row.get(key)
            figure = figure_text(raw) if type(raw) in (int, Decimal) and key not in NOT_FIGURES else None
            value = figure if figure is not None else cell_text(raw)
            if value != "":
                label = (header + ":").ljust(label_width)
                for number, text in enumerate(_wrap_items(value, width - label_width - 1)):
                    lines.append(f"{label if number == 0 else ' ' * label_width} {text}".rstrip())
    sys.stdout.write("\n".join(lines) + "\n")


def _wrap_items(value: str, room: int) -> list[str]:
    """``value`` in lines of at most ``room`` cells, broken only after the
    comma between two items (``key=value, key=value``) or, for text without
    items, between words; an item wider than ``room`` keeps its own line."""
    if _width(value) <= room:
        return [value]
    separator = ", " if ", " in value else " "
    items = value.split(separator)
    lines: list[str] = []
    for index, item in enumerate(items):
        piece = item + (separator.rstrip() if index < len(items) - 1 else "")
        if lines and _width(lines[-1]) + 1 + _width(piece) <= room:
            lines[-1] += " " + piece
        else:
            lines.append(piece)
    return lines
