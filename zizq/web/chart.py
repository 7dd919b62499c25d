"""The overview's chart of the last hour, drawn on the server as inline
SVG (no JavaScript): one bar a minute, completed attempts in green with the
failed ones (retrying, and dead) stacked on top in red."""

from __future__ import annotations

from markupsafe import Markup, escape

from zizq._protocol.query import Minute, Throughput
from zizq.cli.format import stamp

WIDTH = 600  # px, the plot; the labels are outside it
HEIGHT = 80  # px
BAR = WIDTH // 60  # px a minute (a bar and its gap)


def _bar_title(m: Minute) -> str:
    return f"{stamp(m.start)[11:16]} UTC: {m.completed} completed, {m.failed} failed, {m.dead} dead"


def throughput_svg(t: Throughput) -> Markup:
    """The chart of ``t``'s minutes (at most 60), the current minute at the
    right; the scale is the busiest minute's total. Each bar has a title
    (the minute in UTC and its counts), shown on hover."""
    busiest = max((m.completed + m.failed + m.dead for m in t.minutes), default=0)
    top = busiest or 1
    x0 = WIDTH - BAR * len(t.minutes)
    parts = [
        f'<svg id="throughput-chart" class="chart" viewBox="0 0 {WIDTH + 50} {HEIGHT + 16}" '
        f'width="{WIDTH + 50}" height="{HEIGHT + 16}" role="img" aria-label="Attempts ended per minute, last hour">',
        f'<line x1="0" y1="{HEIGHT}" x2="{WIDTH}" y2="{HEIGHT}" class="axis"/>',
    ]
    for i, m in enumerate(t.minutes):
        x = x0 + i * BAR
        ok = round(m.completed / top * HEIGHT)
        bad = round((m.failed + m.dead) / top * HEIGHT)
        if m.completed and not ok:
            ok = 1  # a minute with any work shows
        if m.failed + m.dead and not bad:
            bad = 1
        parts.append(f'<g data-minute="{m.start}"><title>{escape(_bar_title(m))}</title>')
        parts.append(f'<rect x="{x}" y="0" width="{BAR}" height="{HEIGHT}" class="slot"/>')
        if ok:
            parts.append(f'<rect x="{x}" y="{HEIGHT - ok}" width="{BAR - 2}" height="{ok}" class="ok"/>')
        if bad:
            parts.append(f'<rect x="{x}" y="{HEIGHT - ok - bad}" width="{BAR - 2}" height="{bad}" class="bad"/>')
        parts.append("</g>")
    label_y = HEIGHT + 13
    parts += [
        f'<text x="{WIDTH + 4}" y="10" class="label">{busiest}/min</text>',
        f'<text x="{WIDTH + 4}" y="{HEIGHT}" class="label">0</text>',
        f'<text x="{x0}" y="{label_y}" class="label">{len(t.minutes)} min ago</text>',
        f'<text x="{WIDTH}" y="{label_y}" class="label" text-anchor="end">now</text>',
        "</svg>",
    ]
    return Markup("".join(parts))
