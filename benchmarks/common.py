"""What the benchmark scripts share: printing a table of figures as Markdown."""

from __future__ import annotations

import sys


def table(title: str, header: list[str], rows: list[list]) -> None:
    """A Markdown table under a heading; floats with two decimals and thousands separators."""
    print(f"\n## {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for r in rows:
        print("| " + " | ".join(f"{x:,.2f}" if isinstance(x, float) else str(x) for x in r) + " |")
    sys.stdout.flush()
