"""Charts drawn on the server as inline SVG: the page needs no script and no network to show them."""

from collections.abc import Sequence

from markupsafe import Markup, escape

WIDTH = 120
HEIGHT = 28
PAD = 3  # room for the end dot and the stroke, so neither is clipped


def sparkline(values: Sequence[int], label: str, width: int = WIDTH, height: int = HEIGHT) -> Markup:
    """A line of `values` (oldest first) scaled to the largest, with the last value marked, and `label`
    as the text a screen reader reads and a pointer shows."""
    if not values:
        values = [0]
    top = max(max(values), 1)  # all zeros draw a flat line at the bottom, not a division by zero
    step = (width - 2 * PAD) / max(len(values) - 1, 1)
    span = height - 2 * PAD
    points = [(PAD + i * step, PAD + span - span * v / top) for i, v in enumerate(values)]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    floor = height - PAD
    area = f"{points[0][0]:.1f},{floor} {line} {points[-1][0]:.1f},{floor}"
    last_x, last_y = points[-1]
    text = escape(label)
    return Markup(
        f'<svg class="sparkline" role="img" aria-label="{text}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{text}</title>"
        f'<polygon class="area" points="{area}"/>'
        f'<polyline class="line" points="{line}"/>'
        f'<circle class="last" cx="{last_x:.1f}" cy="{last_y:.1f}" r="2.5"/>'
        "</svg>"
    )
