"""Tables as HTML pages a browser shows: the Snakemake report's view of the Markdown and CSV
tables (comparison tables, the protocols side by side, FAME).

A page is a title and sections, each a heading, a table (a :class:`pandas.DataFrame`, written
by :meth:`pandas.DataFrame.to_html`, its cells escaped) and notes under it. Same sections, same
bytes: no date or version in the page.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field

import pandas as pd

from facevoice.common.io import write_text

STYLE = ("body{font-family:sans-serif;font-size:14px;margin:1em}"
         "table{border-collapse:collapse;margin:.5em 0}"
         "th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}"
         "th:first-child,td:first-child,td:nth-child(2){text-align:left}"
         "thead th{background:#eee}p,li{max-width:60em;color:#333}")


@dataclass
class Section:
    """One table of a page: its heading, its cells (shown as given) and the notes under it."""

    heading: str
    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def render_html(title: str, sections: list[Section], intro: list[str] | None = None) -> str:
    """The page: ``title``, paragraphs ``intro``, then each section's heading, table and notes."""
    parts = [f"<h2>{html.escape(title)}</h2>"] + [f"<p>{html.escape(p)}</p>" for p in intro or []]
    for s in sections:
        parts.append(f"<h3>{html.escape(s.heading)}</h3>")
        parts.append(s.table.to_html(index=False, border=0, na_rep="—", escape=True))
        if s.notes:
            parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in s.notes) + "</ul>")
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(parts) + "\n</body></html>\n")


def write_html(path: str | os.PathLike, title: str, sections: list[Section], intro: list[str] | None = None) -> None:
    """Write :func:`render_html`'s page to ``path`` (atomically)."""
    write_text(path, render_html(title, sections, intro))
