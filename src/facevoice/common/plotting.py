"""What the figures share: a colour (and line style) per series that no other series of the
figure has."""

from __future__ import annotations


def distinct_styles(labels: list[str]) -> dict[str, tuple[tuple[float, ...], str]]:
    """One (colour, line style) per label, in order: the 10 colours of tab10, then the 10 light
    tones of tab20, then the same 20 dashed, dotted, dash-dotted (80 pairs before any repeats)."""
    import matplotlib

    light = matplotlib.colormaps["tab20"].colors
    colours = list(matplotlib.colormaps["tab10"].colors) + [light[i] for i in range(1, 20, 2)]
    styles = ("-", "--", ":", "-.")
    return {lb: (colours[i % len(colours)], styles[(i // len(colours)) % len(styles)])
            for i, lb in enumerate(dict.fromkeys(labels))}
