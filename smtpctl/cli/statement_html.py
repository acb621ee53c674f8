"""A statement as one self-contained HTML page (``billing statement --html``).

The page is what an agency sends to its bookkeeper or prints: the number,
the agency, the period, the lines and totals exactly as the statement
document holds them, and a chart of emails per day per account. Everything
is inline (CSS, SVG, no fonts, images or scripts), and its Content Security
Policy forbids fetching anything, so it opens and prints the same offline,
years later. This module only shapes the document for the template
(templates/statement.html.j2): display words, sums of the printed columns and
the chart's geometry; it never recomputes money, which the core already did.
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from typing import Any

from smtpctl.cli.output import AGENCY_ASSIGNED_LABEL, bar_scale

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")

# Ten colours told apart on screen and on paper: the chart never draws more series.
PALETTE = ("#1f4e79", "#e07b24", "#3a8f4b", "#c23b3b", "#7b5ea7", "#8c6d31", "#d067b0", "#5a6470", "#a8a81f",
           "#2aa7b8")
# The chart draws this many accounts, the busiest, and the rest as one
# series: a legend of 200 accounts would fill pages and say nothing.
MAX_SERIES = len(PALETTE) - 1

# The chart's drawing box (SVG user units; the page scales it to its width).
WIDTH, HEIGHT = 720, 175
LEFT, RIGHT, TOP, BOTTOM = 58, 12, 12, 40


@lru_cache(maxsize=1)
def _environment() -> Any:
    # jinja2 is imported here, not at the top: only --html pays for it.
    import jinja2

    environment = jinja2.Environment(loader=jinja2.PackageLoader("smtpctl.cli", "templates"), autoescape=True,
                                     undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    environment.filters.update(count=count, usd=usd, exact_usd=exact_usd, price=price)
    return environment


def render(document: dict[str, Any], daily: dict[str, Any]) -> str:
    """The whole HTML page of a statement ``document``
    (``core.billing.statements.statement``) with the chart of ``daily``
    (``statements.daily_emails`` of the same agency, month and account)."""
    lines = [_line(line) for line in document["lines"]]
    sums = {key: sum(line[key] for line in document["lines"]) for key in ("messages", "outbound", "inbound",
                                                                          "emails")}
    return _environment().get_template("statement.html.j2").render(
        doc=document, lines=lines, sums=sums, period=_period(document["month"]), chart=_chart(daily),
        client=document.get("account"), draft=document["status"] != "closed",
    )


def _line(line: dict[str, Any]) -> dict[str, Any]:
    return {**line, "label": AGENCY_ASSIGNED_LABEL if line["account"] is None else line["account"]}


def _period(month: str) -> str:
    year, number = month.split("-")
    return f"{MONTHS[int(number) - 1]} {year}"


def count(value: int) -> str:
    """``12345`` -> ``12,345``."""
    return f"{value:,}"


def usd(amount: str) -> str:
    """A money string to the cent for people: ``-1234.5`` -> ``-$1,234.50``."""
    value = Decimal(amount)
    return f"{'-' if value < 0 else ''}${abs(value):,.2f}"


def exact_usd(amount: str) -> str:
    """An exact amount with every decimal it has: ``1234.4337`` -> ``$1,234.4337``."""
    sign, digits = ("-", amount[1:]) if amount.startswith("-") else ("", amount)
    whole, _, fraction = digits.partition(".")
    return f"{sign}${int(whole):,}" + (f".{fraction}" if fraction else "")


def price(value: str) -> str:
    """A price per 1,000 emails as set (``0.675`` stays ``$0.675``)."""
    return exact_usd(value)


def _chart(daily: dict[str, Any]) -> dict[str, Any]:
    """Stacked bars of emails per day, one colour per account (the busiest
    ``MAX_SERIES``, the others together), with the axes' ticks."""
    days: list[str] = daily["days"]
    named = [(AGENCY_ASSIGNED_LABEL if name == "" else name, values) for name, values in daily["accounts"].items()]
    busiest = sorted(named, key=lambda item: -sum(item[1]))  # stable: ties keep the document's order
    if len(busiest) > MAX_SERIES + 1:
        kept = {name for name, _ in busiest[:MAX_SERIES]}
        rest = [values for name, values in named if name not in kept]
        named = [item for item in named if item[0] in kept]
        named.append((f"{len(rest)} other accounts", [sum(column) for column in zip(*rest)]))
    series = [{"name": name, "color": PALETTE[i], "total": sum(values), "values": values}
              for i, (name, values) in enumerate(named)]

    peak = max((sum(s["values"][d] for s in series) for d in range(len(days))), default=0)
    step = bar_scale(peak, 5)
    top = step * 5
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_width / max(len(days), 1)
    bar_width = round(slot * 0.72, 2)

    def y(value: int) -> float:
        return round(TOP + plot_height * (1 - value / top), 2)

    bars = []
    for d, day in enumerate(days):
        base = 0
        x = round(LEFT + slot * d + (slot - bar_width) / 2, 2)
        for s in series:
            value = s["values"][d]
            if value:
                bars.append({"x": x, "y": y(base + value), "height": round(y(base) - y(base + value), 2),
                             "color": s["color"], "title": f"{s['name']}, {day}: {value:,} emails"})
                base += value
    labelled = [d for d in range(len(days)) if d == 0 or (d + 1) % 5 == 0]
    if days and len(days) - 1 - labelled[-1] >= 3:  # the last day too, unless it would crowd the 30th
        labelled.append(len(days) - 1)
    x_ticks = [{"x": round(LEFT + slot * (d + 0.5), 2), "label": str(int(days[d][8:]))} for d in labelled]
    y_ticks = [{"y": y(step * i), "label": f"{step * i:,}"} for i in range(6)]
    return {"width": WIDTH, "height": HEIGHT, "left": LEFT, "right": WIDTH - RIGHT, "top": TOP,
            "bottom": HEIGHT - BOTTOM, "bar_width": bar_width, "bars": bars, "series": series, "x_ticks": x_ticks,
            "y_ticks": y_ticks, "total": sum(s["total"] for s in series),
            "month": _period(days[0][:7]) if days else ""}
