"""Small SVG charts drawn on the server: no JavaScript, no build step.

Each function returns `Markup` holding one `<svg>` that scales to its
container (a viewBox, width 100 %). Colours come from classes styled by the
dashboard's CSS, so the page needs no inline styles. Every text (labels,
series names) is escaped; a value of None ("no data") leaves a gap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 52, 12, 22, 30
MAX_LABELS = 8
STEPS = [Decimal(s) for s in ("1", "1.2", "1.5", "2", "2.5", "3", "4", "5", "6", "8", "10")]

Number = int | Decimal | None
RATE_CEILING = Decimal(100)  # a chart in % is of rates: its axis stops at 100 %


def _x_labels(labels: Sequence[str], x_of: list[float]) -> list[str]:
    step = max(1, -(-len(labels) // MAX_LABELS))
    y = HEIGHT - BOTTOM + 16
    return [
        f'<text class="axis" x="{x_of[i]:.1f}" y="{y}" text-anchor="middle">{escape(label)}</text>'
        for i, label in enumerate(labels)
        if i % step == 0
    ]


def _frame(title: str, top: Decimal, unit: str) -> list[str]:
    base = HEIGHT - BOTTOM
    return [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<line class="grid" x1="{LEFT}" y1="{TOP}" x2="{WIDTH - RIGHT}" y2="{TOP}"/>',
        f'<line class="base" x1="{LEFT}" y1="{base}" x2="{WIDTH - RIGHT}" y2="{base}"/>',
        f'<text class="axis" x="{LEFT - 6}" y="{TOP + 4}" text-anchor="end">{_tick(top)}{escape(unit)}</text>',
        f'<text class="axis" x="{LEFT - 6}" y="{base + 4}" text-anchor="end">0</text>',
    ]


def _tick(value: Decimal) -> str:
    """An axis label: whole numbers without decimals, others with two at most."""
    if value == value.to_integral_value():
        return str(int(value))
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _scale(values: Sequence[Number], floor: Decimal, ceiling: Decimal | None = None) -> Decimal:
    """A round axis top a little above every value (and at least `floor`); never above
    `ceiling` (100 for a rate, which cannot exceed it)."""
    biggest = max((Decimal(v) for v in values if v is not None), default=Decimal(0))
    target = max(biggest * Decimal("1.1"), floor)
    if ceiling is not None and target >= ceiling:
        return ceiling
    power = Decimal(10) ** (len(str(int(target))) - 1)
    for step in STEPS:
        if step * power >= target:
            return step * power
    return 10 * power


def bar_chart(
    title: str, labels: Sequence[str], values: Sequence[Number], unit: str = ""
) -> Markup:
    """One bar per label (counts such as emails sent per day)."""
    top = _scale(values, Decimal(1), RATE_CEILING if unit == "%" else None)
    inner = WIDTH - LEFT - RIGHT
    slot = inner / max(len(values), 1)
    height = HEIGHT - TOP - BOTTOM
    parts = _frame(title, top, unit)
    x_of = [LEFT + slot * (i + 0.5) for i in range(len(values))]
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        if value is None:
            continue
        h = float(Decimal(value) / top) * height
        parts.append(
            f'<rect class="bar" x="{LEFT + slot * i + slot * 0.15:.1f}" y="{HEIGHT - BOTTOM - h:.1f}" '
            f'width="{slot * 0.7:.1f}" height="{h:.1f}"><title>{escape(label)}: {value}{escape(unit)}'
            "</title></rect>"
        )
    parts.extend(_x_labels(labels, x_of))
    parts.append("</svg>")
    return Markup("".join(parts))


def line_chart(
    title: str,
    labels: Sequence[str],
    series: Mapping[str, Sequence[Number]],
    *,
    unit: str = "",
    references: Mapping[str, Decimal] | None = None,
) -> Markup:
    """One line per series over the labels; dashed reference lines; None leaves a gap."""
    references = references or {}
    every = [v for s in series.values() for v in s] + list(references.values())
    top = _scale(every, Decimal(1), RATE_CEILING if unit == "%" else None)
    inner = WIDTH - LEFT - RIGHT
    height = HEIGHT - TOP - BOTTOM
    count = max(len(labels), 1)
    x_of = [LEFT + inner * (i + 0.5) / count for i in range(len(labels))]

    def y_of(value: Number) -> float:
        return HEIGHT - BOTTOM - float(Decimal(value or 0) / top) * height

    parts = _frame(title, top, unit)
    for n, (name, mark) in enumerate(references.items()):
        y = y_of(mark)
        parts.append(
            f'<line class="reference" x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}">'
            f"<title>{escape(name)}: {mark}{escape(unit)}</title></line>"
            f'<text class="reference-label" x="{WIDTH - RIGHT - 4}" y="{y - 3 - 10 * (n % 2):.1f}" '
            f'text-anchor="end">{escape(name)} {mark}{escape(unit)}</text>'
        )
    for n, (name, values) in enumerate(series.items()):
        runs: list[list[str]] = [[]]
        for i, value in enumerate(values):
            if value is None:
                runs.append([])
                continue
            runs[-1].append(f"{x_of[i]:.1f},{y_of(value):.1f}")
            parts.append(
                f'<circle class="point series-{n % 6}" cx="{x_of[i]:.1f}" cy="{y_of(value):.1f}" r="3">'
                f"<title>{escape(name)}, {escape(labels[i])}: {value}{escape(unit)}</title></circle>"
            )
        for run in runs:
            if len(run) > 1:
                parts.append(f'<polyline class="line series-{n % 6}" points="{" ".join(run)}"/>')
    parts.extend(_x_labels(labels, x_of))
    parts.append("</svg>")
    return Markup("".join(parts))


def legend(names: Sequence[str]) -> Markup:
    """A legend for `line_chart` series, in the same colour classes."""
    items = "".join(
        f'<li><span class="swatch series-{n % 6}"></span>{escape(name)}</li>'
        for n, name in enumerate(names)
    )
    return Markup(f'<ul class="legend">{items}</ul>')
