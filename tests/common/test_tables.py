"""Tables as HTML pages (facevoice.common.tables): cells escaped, read back as written."""

import pandas as pd
from helpers import Cells

from facevoice.common.tables import Section, render_html, write_html


def test_a_page_holds_the_cells_and_notes_as_given_escaped():
    table = pd.DataFrame({"Method": ["<b>dje</b>", "a & b"], "AUC (%)": ["71.20 [65.00, 77.10]", None]})
    text = render_html("Seen-heard (held-out videos)", [Section("Seen-heard: verification", table, ["x < y"])])
    assert "<b>dje</b>" not in text and "&lt;b&gt;dje&lt;/b&gt;" in text  # a cell is text, never markup
    cells = Cells(text)
    assert cells.rows == [["Method", "AUC (%)"], ["<b>dje</b>", "71.20 [65.00, 77.10]"], ["a & b", "—"]]
    assert cells.notes == ["x < y"]
    assert "<title>Seen-heard (held-out videos)</title>" in text


def test_same_sections_same_bytes(tmp_path):
    sections = [Section("t", pd.DataFrame({"a": ["1"]}), ["n"]), Section("u", pd.DataFrame({"b": ["2"]}))]
    write_html(tmp_path / "a.html", "page", sections, ["intro"])
    write_html(tmp_path / "b.html", "page", sections, ["intro"])
    assert (tmp_path / "a.html").read_bytes() == (tmp_path / "b.html").read_bytes()
    assert [r for r in Cells((tmp_path / "a.html").read_text()).rows] == [["a"], ["1"], ["b"], ["2"]]
