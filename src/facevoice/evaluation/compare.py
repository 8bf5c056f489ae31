"""Comparison tables and plots for every evaluated method, beside the papers' figures.

``facevoice compare [--protocol NAME] --results a.json b.json ... [--roc a.parquet b.parquet ...] --out DIR``

Writes into DIR (the names of :data:`OUTPUTS`, from :mod:`facevoice.data.paths`) the tables and plots of one protocol
(:mod:`facevoice.evaluation.protocols`; default unseen-unheard, test identities never seen in
training; a declared one is read from ``evaluation.declare`` of --config/--params):

* ``verification.{md,csv,tex,html}``: AUC, EER, minDCF and min Cllr by stratum (U, G, N, A, GNA);
* ``matching_1v2.{md,csv,tex,html}``: 1:2 accuracy by direction (F-V, V-F) and stratum (U, G, N, GN);
* ``matching_1vN.{md,csv,tex,html}``: 1:N accuracy (stratum U) at N = 2, 4, 6, 8, 10;
* ``retrieval.{md,csv,tex,html}``: mAP and its chance level per direction;
* ``<table>.tex`` is for a paper (booktabs; intervals in small type), ``<table>.compact.tex``
  the same without intervals;
* ``tables.{md,html}``: the four tables with their notes on one page, and the sources of the
  reported rows;
* ``roc.png``: the ROC curves of all methods overlaid, one panel per stratum that some
  method has a figure for (the verification notes say why a stratum has none);
* ``matching_1vN_F-V.png``, ``matching_1vN_V-F.png``: 1:N accuracy against N.

Every figure is in percent but minDCF and min Cllr (costs in [0, 1], shown as costs; minDCF's
heading names its P_target, the results' ``meta.dcf``). Rows come in three kinds, named in the ``Figures`` column:
``ours`` (computed from the results JSON, with the 95% bootstrap interval in brackets in
Markdown and LaTeX and in ``*_lo``/``*_hi`` columns of the CSV), ``reported`` (the
papers' own figures from ``facevoice/evaluation/reference_results.yaml``, each row named by
its method, paper and table, e.g. "DJE, Wang et al. 2020 (Table 2)"; a baseline's also by the
paper that reports it; they are VoxCeleb1 figures but voice2face's (a news article's, see its note), never
recomputed, each shown under its protocol alone, in tables and plots: ``test_set`` in that
file, unseen-unheard unless it names another; an entry's ``note`` is listed under the table) and ``chance``
(row "chance level", apart from the ``chance`` baseline method's own results: AUC 50,
EER 50, minDCF 1, min Cllr 1, 1:N 100/N, retrieval: the exact expected mAP of a random ranking of our
gallery). The papers' ablation tables (``ablations`` in that file) are shown when one of
their variants (``dje-rank_only``, ...) is among the results: each ablation row directly
under the result of its variant (the full-model row under the method), the table's other
rows after the other reported rows. A
figure that does not exist is "—" (empty in the CSV): for ours only where the results say so
(a stratum or N marked ``available: false`` with its reason, or one the trial lists did not
hold), and the notes under each table say why, each text once (numbered, with the rows it is
about; the empty cell names its note's number in Markdown, "— [1]"); for the papers, a figure they do not report. Every row has its own name.
Results are read through :mod:`facevoice.evaluation.results`: a file with a missing, renamed
or unknown key is refused with the key and the file, never shown as a dash.

``facevoice compare --table protocols.md protocols.csv [protocols.html] --protocol A --results a1.json ... --protocol B
--results b1.json ...`` writes the protocols side by side instead (AUC, EER, minDCF, min Cllr and 1:2
matching of stratum U, one row per method), into exactly those files. Each ``.html`` is the
table as a page a browser shows (:mod:`facevoice.common.tables`): the Snakemake report shows
those.

ROC curves come from ``facevoice evaluate --roc-out`` files, matched to results by the
method name in their metadata.

The protocols (their titles, splits, reported figures and folders) are declared in
:mod:`facevoice.evaluation.protocols`: every table heading and plot title names its protocol.
"""

from __future__ import annotations

import argparse
import csv
import io as _io
import os
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from facevoice.common.config import check_section
from facevoice.common.io import read_parquet, write_text
from facevoice.common.tables import Section, write_html
from facevoice.data import paths
from facevoice.evaluation.metrics import dcf_name
from facevoice.evaluation.plots import (  # noqa: F401 (figure_*, roc_strata: compare's API)
    figure_1vN, figure_roc, plot_1vN, plot_roc, roc_strata)
from facevoice.evaluation.plots import protocol_of as _protocol_of
from facevoice.evaluation.protocol import DIRECTIONS, MATCHING_STRATA, VERIFICATION_STRATA, load_config
from facevoice.evaluation.protocols import PROTOCOLS, UNSEEN_UNHEARD, Protocol, figure_test_set, resolve
from facevoice.evaluation.results import MatchingResult, Results, ResultsError
from facevoice.evaluation.results import load as load_result

TABLES = ("verification", "matching_1v2", "matching_1vN", "retrieval")


def outputs() -> list[str]:
    """File names ``compare`` writes into its folder (:func:`facevoice.data.paths.comparison_names`)."""
    return paths.comparison_names(TABLES, DIRECTIONS)


OUTPUTS = outputs()
DASH = "—"


# --------------------------------------------------------------------------- inputs


def load_results(paths: list[str | os.PathLike]) -> list[Results]:
    """The results files, checked (:mod:`facevoice.evaluation.results`: a missing or renamed
    key is a :class:`ResultsError` naming it and the file), with distinct method names."""
    out, seen = [], set()
    for p in paths:
        res = load_result(p)
        if res.name in seen:
            raise ValueError(f"two results are named {res.name!r}")
        seen.add(res.name)
        out.append(res)
    return out


def _reference_data(path: str | os.PathLike | None = None) -> dict:
    import yaml

    if path is None:
        text = resources.files("facevoice.evaluation").joinpath("reference_results.yaml").read_text("utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    return yaml.safe_load(text) or {}


def load_reference(path: str | os.PathLike | None = None, baselines: bool = False) -> list[dict]:
    """The source papers' figures for their own methods (``papers``), then, with ``baselines``, the
    figures they report for the older methods they compare against (``baselines``)."""
    data = _reference_data(path)
    entries = (data.get("papers") or []) + ((data.get("baselines") or []) if baselines else [])
    for entry in entries + [r for a in data.get("ablations") or [] for r in a.get("rows") or []]:
        for f in entry.get("figures") or []:
            figure_test_set(f)  # a test_set that names no protocol: the error says which and what to use
    return entries


def load_ablations(path: str | os.PathLike | None = None) -> list[dict]:
    """The source papers' ablation tables (``ablations``): one entry per table, each row tied to
    the project's variant it corresponds to (``variant``; null where there is none)."""
    return _reference_data(path).get("ablations") or []


def load_rocs(paths: list[str | os.PathLike]) -> dict[str, Any]:
    rocs = {}
    for p in paths:
        table, meta = read_parquet(p)
        name = meta.get("method") or Path(p).stem
        rocs[name] = table.to_pandas()
    return rocs


# --------------------------------------------------------------------------- cells


class Cell:
    """A figure in percent with an optional interval (None: no figure)."""

    __slots__ = ("value", "lo", "hi", "decimals")

    def __init__(self, value=None, lo=None, hi=None, decimals=None):
        # decimals: the least precision to show (a reported figure keeps its own digits)
        self.value, self.lo, self.hi, self.decimals = value, lo, hi, decimals


def _pct(x) -> float | None:
    return None if x is None else 100.0 * float(x)


DCF_DECIMALS = 3  # minDCF and min Cllr are shown as they are (costs in [0, 1]), not in percent


def _from_result(value, ci, percent: bool = True) -> Cell:
    """A result's figure and interval, in percent, or as it is (a cost: minDCF, min Cllr)."""
    if value is None:
        return Cell()
    lo, hi = (ci if ci else (None, None))
    if percent:
        return Cell(_pct(value), _pct(lo), _pct(hi))
    return Cell(float(value), lo, hi, decimals=DCF_DECIMALS)


def _figure(entry, name: str, percent: bool = True) -> Cell:
    """A verification or retrieval entry's figure; no figure ("—") only where the results
    say so: the entry unavailable, or its stratum not in the trial lists (``entry`` None)."""
    if entry is None or not entry.available:
        return Cell()
    return _from_result(getattr(entry, name), (entry.ci95 or {}).get(name), percent)


def _accuracy(entry: MatchingResult | None, n: int) -> Cell:
    """A matching stratum's 1:``n`` accuracy; none where N is unavailable or not in the lists."""
    if entry is None or not entry.available.get(n, False):
        return Cell()
    return _from_result(entry.accuracy[n], entry.ci95[n])


def dcf_heading(results: list[Results]) -> str:
    """minDCF's heading, naming P_target (the results' ``meta.dcf``) when all share it
    (:func:`facevoice.evaluation.metrics.dcf_name`); the footer says where each result's is."""
    return dcf_name(r.meta.dcf for r in results)


def _columns(table: str, cfg: dict) -> list[tuple[str, str, str]]:
    """(csv name, group header, sub header) per column; Markdown joins group and sub."""
    if table == "verification":
        return ([(f"auc_{s}", "AUC (%)", s) for s in VERIFICATION_STRATA]
                + [(f"eer_{s}", "EER (%)", s) for s in VERIFICATION_STRATA]
                + [(f"mindcf_{s}", cfg.get("dcf_heading", "minDCF"), s) for s in VERIFICATION_STRATA]
                + [(f"mincllr_{s}", "min Cllr", s) for s in VERIFICATION_STRATA])
    if table == "matching_1v2":
        return [(f"{d}_{s}", f"{d} (%)", s) for d in DIRECTIONS for s in MATCHING_STRATA]
    if table == "matching_1vN":
        return [(f"{d}_N{n}", f"{d} (%)", f"1:{n}") for d in DIRECTIONS for n in cfg["n_values"]]
    if table == "retrieval":
        return ([(f"map_{d}", "mAP (%)", d) for d in DIRECTIONS]
                + [(f"chance_{d}", "chance mAP (%)", d) for d in DIRECTIONS])
    raise KeyError(table)


def _ours(res: Results, table: str, cfg: dict) -> dict[str, Cell]:
    cells: dict[str, Cell] = {}
    if table == "verification":
        for s in VERIFICATION_STRATA:
            e = res.verification_at(s)
            cells[f"auc_{s}"] = _figure(e, "auc")
            cells[f"eer_{s}"] = _figure(e, "eer")
            cells[f"mindcf_{s}"] = _figure(e, "min_dcf", percent=False)
            cells[f"mincllr_{s}"] = _figure(e, "min_cllr", percent=False)
    elif table == "matching_1v2":
        for d in DIRECTIONS:
            for s in MATCHING_STRATA:
                cells[f"{d}_{s}"] = _accuracy(res.matching_at(d, s), 2)
    elif table == "matching_1vN":
        for d in DIRECTIONS:
            for n in cfg["n_values"]:
                cells[f"{d}_N{n}"] = _accuracy(res.matching_at(d, "U"), n)
    elif table == "retrieval":
        for d in DIRECTIONS:
            cells[f"map_{d}"] = _figure(res.retrieval_at(d), "map")
            cells[f"chance_{d}"] = _figure(res.retrieval_at(d), "chance")
    return cells


def _reference(paper: dict, table: str, cfg: dict) -> tuple[dict[str, Cell], list[str]]:
    cells: dict[str, Cell] = {}
    tables: list[str] = []

    def put(key: str, value, tab: str) -> None:
        text = str(value)
        digits = len(text.split(".")[1]) if "." in text else 0
        cells[key] = Cell(float(value), decimals=digits)
        if tab not in tables:
            tables.append(tab)

    for f in paper.get("figures") or []:
        if not _protocol_of(cfg).owns(f):  # another protocol's figure: never in this one's tables
            continue
        proto, tab = f.get("protocol"), f.get("table", "?")
        if table == "verification" and proto == "verification":
            for metric in ("auc", "eer"):
                if f.get(metric) is not None:
                    put(f"{metric}_{f['stratum']}", f[metric], tab)
        elif table in ("matching_1v2", "matching_1vN") and proto == "matching":
            ns = {int(k): val for k, val in (f.get("n") or {}).items()}
            if table == "matching_1v2" and 2 in ns:
                put(f"{f['direction']}_{f['stratum']}", ns[2], tab)
            if table == "matching_1vN" and f.get("stratum") == "U":
                for n in cfg["n_values"]:
                    if n in ns:
                        put(f"{f['direction']}_N{n}", ns[n], tab)
        elif table == "retrieval" and proto == "retrieval":
            if f.get("map") is not None:
                put(f"map_{f['direction']}", f["map"], tab)
            if f.get("chance") is not None:
                for d in ([f["direction"]] if f.get("direction") else DIRECTIONS):
                    put(f"chance_{d}", f["chance"], tab)
    return cells, tables


def _chance(results: list[Results], table: str, cfg: dict) -> dict[str, Cell]:
    cells: dict[str, Cell] = {}
    if table == "verification":
        for s in VERIFICATION_STRATA:
            cells[f"auc_{s}"] = Cell(50.0)
            cells[f"eer_{s}"] = Cell(50.0)
            cells[f"mindcf_{s}"] = Cell(1.0, decimals=DCF_DECIMALS)
            cells[f"mincllr_{s}"] = Cell(1.0, decimals=DCF_DECIMALS)
    elif table == "matching_1v2":
        for d in DIRECTIONS:
            for s in MATCHING_STRATA:
                cells[f"{d}_{s}"] = Cell(50.0)
    elif table == "matching_1vN":
        for d in DIRECTIONS:
            for n in cfg["n_values"]:
                cells[f"{d}_N{n}"] = Cell(100.0 / n)
    elif table == "retrieval":
        for d in DIRECTIONS:
            ch = next((res.retrieval_at(d).chance for res in results
                       if res.retrieval_at(d) is not None and res.retrieval_at(d).chance is not None), None)
            cells[f"map_{d}"] = Cell(_pct(ch))
            cells[f"chance_{d}"] = Cell(_pct(ch))
    return cells


def ablations_in_play(results: list[Results], ablations: list[dict]) -> list[dict]:
    """The ablation tables to show: those with a row whose variant (``method-variant``, not
    the full model alone) is among the results."""
    names = {res.name for res in results}
    return [a for a in ablations
            if any(r.get("variant") in names and r["variant"] != a["method"] for r in a.get("rows") or [])]


def _ablation_rows(results: list[Results], ablations: list[dict], table: str,
                   cfg: dict) -> tuple[dict[str, list[dict]], list[dict]]:
    """The papers' ablation rows of one table: {result name: rows to show under it}, and
    the other rows of the same tables (variant not evaluated, or none in the project)."""
    names = {res.name for res in results}
    beside: dict[str, list[dict]] = {}
    rest: list[dict] = []
    for a in ablations_in_play(results, ablations):
        for r in a["rows"]:
            cells, tabs = _reference(r, table, cfg)
            if not cells:
                continue
            row = {"method": f"{a.get('label', a['method'])}, {r['label']}, {a['short']} ({_tables(tabs)})",
                   "kind": "reported", "figures": "reported (ablation)", "cells": cells}
            if r.get("variant") in names:
                beside.setdefault(r["variant"], []).append({**row, "group": "ours"})
            else:
                rest.append(row)
    return beside, rest


def build_rows(results: list[Results], papers: list[dict], table: str, cfg: dict,
               ablations: list[dict] | None = None) -> list[dict]:
    """Rows of one table: ours (each followed by the paper's ablation row of its variant,
    if any), then chance, then the papers' reported figures, then their other ablation rows."""
    beside, rest = _ablation_rows(results, ablations or [], table, cfg) if cfg["reference"] else ({}, [])
    rows = []
    for res in results:
        rows.append({"method": res.name, "kind": "ours", "figures": "ours", "cells": _ours(res, table, cfg)})
        rows += beside.get(res.name, [])
    rows.append({"method": CHANCE_ROW, "kind": "chance",
                 "figures": "expected at chance" + (" (exact E[AP], our gallery)" if table == "retrieval" else ""),
                 "cells": _chance(results, table, cfg)})
    if cfg["reference"]:
        for p in papers:
            cells, tabs = _reference(p, table, cfg)
            if cells:
                rows.append({"method": reported_name(p, tabs), "kind": "reported", "figures": "reported",
                             "cells": cells})
    rows += rest
    named = [r["method"] for r in rows]
    twice = sorted({n for n in named if named.count(n) > 1})
    if twice:
        raise ValueError(f"two rows of the {table} table are named {twice[0]!r}: rename the results "
                         "(meta.method) or the reference entry (label) so that each row has its own name")
    return rows


#: The row of the figures expected at chance (the ``chance`` method is a results row of its own)
CHANCE_ROW = "chance level"


def reported_name(paper: dict, tables: list[str]) -> str:
    """A reported row's name: the method and its paper, with the table(s) the figures are
    from; a baseline's figures also name the paper that reports them (``reported_in``)."""
    label = paper.get("label") or paper["key"]
    short = paper.get("short") or paper["key"]
    source = f"{short}, in {paper['reported_in']}" if paper.get("reported_in") else short
    return f"{label}, {source}" + (f" ({_tables(tables)})" if tables else "")


def _tables(names: list[str]) -> str:
    """``["Table 2", "Table 4"]`` -> ``Tables 2, 4``; other names as they are."""
    if len(names) > 1 and all(n.startswith("Table ") for n in names):
        return "Tables " + ", ".join(n.removeprefix("Table ") for n in names)
    return ", ".join(names)


def _reference_notes(papers: list[dict], ablations: list[dict], table: str, cfg: dict) -> list[Note]:
    """The ``note`` of each reported entry (paper, baseline, ablation table in play) with a
    figure in this table, on the row(s) it explains."""
    notes = []
    for p in papers:
        cells, tabs = _reference(p, table, cfg)
        if p.get("note") and cells:
            notes.append((reported_name(p, tabs), "", " ".join(p["note"].split())))
    for a in ablations:
        if a.get("note") and any(_reference(r, table, cfg)[0] for r in a["rows"]):
            notes.append((f"{a.get('label', a['method'])}, {a['short']} ({a['table']}, ablation)", "",
                          " ".join(a["note"].split())))
    return notes


# --------------------------------------------------------------------------- rendering


def _fmt(c: Cell, cfg: dict, latex: bool = False) -> str:
    if c.value is None:
        return "--" if latex else DASH
    d = max(cfg["decimals"], c.decimals or 0)
    s = f"{c.value:.{d}f}"
    if cfg["show_ci"] and c.lo is not None and c.hi is not None:
        ci = f"[{c.lo:.{d}f}, {c.hi:.{d}f}]"
        s = f"{s} {{\\scriptsize {ci}}}" if latex else f"{s} {ci}"
    return s


#: A note under a table: (the row it is about, the column(s) it is about or "", what it says);
#: the notes of one text are one note
Note = tuple[str, str, str]


def _notes(results: list[Results], table: str, cfg: dict) -> list[Note]:
    notes: list[Note] = []
    for res in results:
        if res.meta.embeddings.get("note"):  # which form of the method the row trained (embed's note)
            notes.append((res.name, "", res.meta.embeddings["note"]))
        if table == "verification":
            notes += _verification_notes(res)
        elif table.startswith("matching"):
            notes += _matching_notes(res, table)
        elif table == "retrieval":
            for d in DIRECTIONS:
                e = res.retrieval_at(d)
                if e is None:
                    notes.append((res.name, d, "not in the results"))
                elif not e.available:
                    notes.append((res.name, d, f"unavailable ({e.reason})"))
                else:
                    notes.append((res.name, d, f"{e.n_probes} probes against a gallery of {e.gallery_size}"))
    return notes


def _verification_notes(res: Results) -> list[Note]:
    notes = []
    for s in VERIFICATION_STRATA:
        e = res.verification_at(s)
        if e is None:
            notes.append((res.name, s, "not in the results"))
        elif not e.available:
            notes.append((res.name, s, f"unavailable ({e.reason})"))
    n = {s: getattr(res.verification_at(s), "n_trials", None) for s in VERIFICATION_STRATA}
    notes.append((res.name, "", "trials per stratum " + ", ".join(f"{k} {v}" for k, v in n.items())))
    crossed = {s: c for s, c in res.meta.trials.get("verification", {}).get("cross_gender_negatives", {}).items()
               if c and s in ("G", "GNA")}
    if crossed:  # the official lists' own: a few identities' genders differ from the metadata's
        notes.append((res.name, ", ".join(crossed), "the imported official lists' negatives of different genders "
                      "(metadata): " + ", ".join(f"{s} {c}" for s, c in crossed.items())))
    return notes


def _matching_notes(res: Results, table: str) -> list[Note]:
    notes = []
    for d in DIRECTIONS:
        for s, e in ((res.matching or {}).get(d) or {}).items():
            if (table != "matching_1vN" or s == "U") and e.reason:
                notes.append((res.name, f"{d} {s}", e.reason))
        nt = getattr(res.matching_at(d, "U"), "n_trials", {})
        if nt:
            notes.append((res.name, d, "trials per list " + ", ".join(
                f"1:{k} {v}" for k, v in sorted(nt.items()) if table == "matching_1vN" or k == 2)))
    return notes


def numbered_notes(notes: list[Note], methods: list[str]) -> list[str]:
    """Each note's text once, numbered, with the rows and columns it is about ("every method"
    when it is about every one of several ``methods``), in order of first appearance."""
    about: dict[str, tuple[list[str], list[str]]] = {}
    for who, where, text in notes:
        rows, cols = about.setdefault(text, ([], []))
        rows += [who] if who not in rows else []
        cols += [where] if where and where not in cols else []
    out = []
    for i, (text, (rows, cols)) in enumerate(about.items(), 1):
        every = len(methods) > 1 and sorted(rows) == sorted(methods)
        scope = ("every method" if every else "; ".join(rows)) + (f", {' and '.join(cols)}" if cols else "")
        out.append(f"{i}. {scope}: {text}")
    return out


def note_refs(notes: list[Note], rows: list[dict], cols, table: str) -> dict[tuple[str, str], int]:
    """{(row, column key): number of the note that says why the cell has no figure}, for the
    empty cells of our rows that a note is about (numbers as :func:`numbered_notes` gives them)."""
    numbers = {text: i for i, text in enumerate(dict.fromkeys(text for _, _, text in notes), 1)}
    about = {(who, where): numbers[text] for who, where, text in reversed(notes) if where}
    refs = {}
    for r in rows:
        for k, _, _ in cols:
            n = about.get((r["method"], _column_where(table, k)))
            if r["kind"] == "ours" and n and r["cells"].get(k, Cell()).value is None:
                refs[r["method"], k] = n
    return refs


def _column_where(table: str, key: str) -> str:
    """What the notes call a column's place: its stratum (verification), direction and stratum
    (matching), direction (retrieval)."""
    if table == "verification":
        return key.rsplit("_", 1)[1]
    if table == "matching_1v2":
        return key.replace("_", " ")
    if table == "matching_1vN":
        return f"{key.split('_')[0]} U"
    return key.split("_", 1)[1]


FOOTER = ("Ours: 95% bootstrap interval over the protocol's identities in brackets. Reported: each "
          "paper's own figure (table named in the row; VoxCeleb1 unless a note says otherwise), "
          "not recomputed here and comparable with ours only on the same corpus with the same protocol. "
          "Ties count as wrong in matching and rank against the probe in retrieval; "
          "EER is the crossing of the linearly interpolated FPR and FNR curves; minDCF is the "
          "normalised minimum detection cost (P_target, C_miss, C_fa of each result's "
          "meta.dcf; VoxSRC's 0.05, 1, 1 by default), 1 for a system no better than deciding without "
          "looking; min Cllr is the log-likelihood-ratio cost after PAV calibration (BOSARIS), 1 for "
          "scores that say nothing. Both are costs, not percentages. Verification intervals resample "
          "face and voice identities independently (a trial weighs the product of their draws).")

PROVENANCE = ("Provenance: every reported figure is transcribed from its paper's text, as printed "
              "(facevoice/evaluation/reference_results.yaml: each entry's citation, table and source text).")

TITLES = {
    "verification": "Cross-modal verification: AUC, EER, minDCF and min Cllr by stratum",
    "matching_1v2": "1:2 matching accuracy by direction and stratum",
    "matching_1vN": "1:N matching accuracy (stratum U)",
    "retrieval": "Cross-modal retrieval: mAP and chance",
}


def _head(cols) -> list[str]:
    return ["Method", "Figures"] + [f"{g.replace(' (%)', '')} {s}".strip() + (" (%)" if "(%)" in g else "")
                                    for _, g, s in cols]


def _cells(r: dict, cols, cfg: dict, refs: dict[tuple[str, str], int] | None = None) -> list[str]:
    """A row's formatted cells; an empty one in ``refs`` (:func:`note_refs`) names its note's number."""
    refs = refs or {}
    return [_fmt(r["cells"].get(k, Cell()), cfg) + (f" [{refs[r['method'], k]}]" if (r["method"], k) in refs else "")
            for k, _, _ in cols]


def render_markdown(rows: list[dict], cols, title: str, notes: list[str], cfg: dict,
                    refs: dict[tuple[str, str], int] | None = None) -> str:
    """The table in Markdown, with the footer and ``notes`` (lines, e.g. :func:`numbered_notes`);
    an empty cell in ``refs`` (:func:`note_refs`) names its note's number."""
    lines = [f"### {title}", "", "| " + " | ".join(_head(cols)) + " |",
             "|" + "|".join(["---"] * 2 + ["---:"] * len(cols)) + "|"]
    for r in rows:
        name = f"*{r['method']}*" if r["kind"] != "ours" else f"**{r['method']}**"
        lines.append("| " + " | ".join([name, r["figures"]] + _cells(r, cols, cfg, refs)) + " |")
    lines += ["", FOOTER]
    if notes:
        lines += [""] + list(notes)
    return "\n".join(lines) + "\n"


def html_section(rows: list[dict], cols, title: str, notes: list[str], cfg: dict,
                 refs: dict[tuple[str, str], int] | None = None) -> Section:
    """The table of :func:`render_markdown` as a section of an HTML page (same cells, title, notes)."""
    body = [[r["method"], r["figures"]] + _cells(r, cols, cfg, refs) for r in rows]
    return Section(title, pd.DataFrame(body, columns=_head(cols)), [FOOTER] + list(notes))


def render_csv(rows: list[dict], cols) -> str:
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    header = ["method", "kind", "figures"]
    for k, _, _ in cols:
        header += [k, f"{k}_lo", f"{k}_hi"]
    w.writerow(header)

    def num(x):
        return "" if x is None else f"{x:.6g}"

    for r in rows:
        line = [r["method"], r["kind"], r["figures"]]
        for k, _, _ in cols:
            c = r["cells"].get(k, Cell())
            line += [num(c.value), num(c.lo), num(c.hi)]
        w.writerow(line)
    return buf.getvalue()


def render_latex(rows: list[dict], cols, title: str, cfg: dict) -> str:
    """The table for a paper (booktabs, through pandas' Styler): one column per figure under its
    group's header, the rows' kinds in blocks split by rules, reported and chance rows in
    italics (their names say what they are). Intervals as ``cfg["show_ci"]`` says."""
    import pandas as pd

    header = pd.MultiIndex.from_tuples([(g, s) for _, g, s in cols], names=["", "Method"])  # names: the corner
    frame = pd.DataFrame([[_fmt(r["cells"].get(k, Cell()), cfg, latex=True) for k, _, _ in cols] for r in rows],
                         columns=header, index=[r["method"] for r in rows])
    styler = frame.style.format_index(escape="latex", axis=0).format_index(escape="latex", axis=1)
    styler = styler.apply_index(lambda names: ["" if r["kind"] == "ours" else "textit: --rwrap;" for r in rows])
    styler = styler.set_table_styles([{"selector": "small", "props": ":;"}])  # \small, as papers' wide tables
    tex = styler.to_latex(caption=_escape(title),
                          hrules=True, multicol_align="c", position="t", position_float="centering",
                          column_format="l" + "r" * len(cols), environment="table")
    return "% requires \\usepackage{booktabs}\n" + _block_rules(tex, rows)


def _escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped (pandas' own escaping, through a Styler)."""
    import pandas as pd

    return pd.DataFrame([[text]]).style.format(escape="latex").hide(axis=0).hide(axis=1) \
        .to_latex().splitlines()[1].rstrip(" \\")


def _block_rules(tex: str, rows: list[dict]) -> str:
    """A ``\\midrule`` between the blocks of rows (ours, chance, reported): the body's lines are
    the rows, in order, after the header's ``\\midrule``."""
    lines = tex.splitlines()
    first = lines.index("\\midrule") + 1
    out = lines[:first]
    prev = None
    for r, line in zip(rows, lines[first:first + len(rows)]):
        group = r.get("group", r["kind"])  # an ablation row under its variant stays in ours' block
        if prev is not None and group != prev:
            out.append("\\midrule")
        out.append(line)
        prev = group
    return "\n".join(out + lines[first + len(rows):]) + "\n"


# --------------------------------------------------------------------------- driver


def _write_tables(results: list[Results], papers: list[dict], ablations: list[dict], out: Path,
                  cfg: dict) -> list[Path]:
    """The protocol's tables, each as Markdown, CSV, LaTeX (full and compact) and an HTML page, then
    all of them on one page (Markdown and HTML, :data:`facevoice.data.paths.ALL_TABLES`)."""
    proto, written, sections = cfg["protocol"], [], []
    name = proto.title
    intro = ["Methods: " + (", ".join(r.name for r in results) or "none")]
    if cfg["reference"] and not any(_reference(p, t, cfg)[0] for p in papers for t in TABLES):
        intro.append(f"No {name.lower()} figure of the source papers or the baselines is transcribed "
                     f"(facevoice/evaluation/reference_results.yaml): the tables hold ours and chance.")
    combined = [f"# Face-voice association: comparison, {proto.heading}", ""] + [x for i in intro for x in (i, "")]
    for table in TABLES:
        cols = _columns(table, cfg)
        rows = build_rows(results, papers, table, cfg, ablations)
        notes = _notes(results, table, cfg)
        if cfg["reference"]:
            notes += _reference_notes(papers, ablations_in_play(results, ablations), table, cfg)
        refs = note_refs(notes, rows, cols, table)
        notes = numbered_notes(notes, [r.name for r in results])
        title = f"{name}: {TITLES[table][0].lower()}{TITLES[table][1:]}"
        md = render_markdown(rows, cols, title, notes, cfg, refs)
        sections.append(html_section(rows, cols, title, notes, cfg, refs))
        write_html(out / f"{table}.html", proto.heading, sections[-1:])
        for ext, text in (("md", md), ("csv", render_csv(rows, cols)),
                          ("tex", render_latex(rows, cols, title, cfg)),
                          ("compact.tex", render_latex(rows, cols, title, {**cfg, "show_ci": False}))):
            write_text(out / f"{table}.{ext}", text)
        written += [out / f"{table}.{ext}" for ext in paths.TABLE_FORMATS]
        combined += [md, ""]
    sources = [p for p in papers if any(proto.owns(f) for f in p.get("figures") or [])]
    cited = [f"{reported_name(p, [])}: {' '.join(str(p.get('citation', '')).split())}" for p in sources]
    if cfg["reference"] and sources:
        combined += [f"### {name}: sources of the reported rows", "", PROVENANCE, ""] + [f"- {c}" for c in cited]
        sections.append(Section(f"{name}: sources of the reported rows", pd.DataFrame({"Source": cited}),
                                [PROVENANCE]))
    all_md, all_html = (out / f for f in paths.ALL_TABLES)
    write_text(all_md, "\n".join(combined) + "\n")
    write_html(all_html, f"Face-voice association: comparison, {proto.heading}", sections, intro)
    return written + [all_md, all_html]


def compare(results_paths: list, out: str | os.PathLike, config: dict, roc_paths: list | None = None,
            reference_path: str | None = None, protocol: str | Protocol = UNSEEN_UNHEARD.name) -> list[Path]:
    """Write one protocol's tables and plots (:data:`OUTPUTS`) into ``out``.

    ``config``: the complete ``evaluation.compare`` section (``facevoice.common.config.section``
    completes a partial one); ``protocol``: a :data:`PROTOCOLS` name or declaration, whose title
    heads every table and plot and whose reported figures alone are shown."""
    proto = PROTOCOLS[protocol] if isinstance(protocol, str) else protocol
    cfg = {**check_section("evaluation.compare", config), "protocol": proto}
    cfg["n_values"] = [int(n) for n in cfg["n_values"]]
    results = load_results(results_paths)
    cfg["dcf_heading"] = dcf_heading(results)
    papers = load_reference(reference_path, baselines=True) if cfg["reference"] else []
    ablations = load_ablations(reference_path) if cfg["reference"] else []
    rocs = load_rocs(roc_paths or [])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = _write_tables(results, papers, ablations, out, cfg)
    plot_roc(results, rocs, out / "roc.png", proto)
    written.append(out / "roc.png")
    for d in DIRECTIONS:
        plot_1vN(results, papers, d, out / f"matching_1vN_{d}.png", cfg)
        written.append(out / f"matching_1vN_{d}.png")
    return written


PROTOCOL_COLUMNS = (("verification", "auc_U", "AUC U (%)"), ("verification", "eer_U", "EER U (%)"),
                    ("verification", "mindcf_U", "{dcf} U"), ("verification", "mincllr_U", "min Cllr U"),
                    ("matching_1v2", "V-F_U", "1:2 V-F U (%)"), ("matching_1v2", "F-V_U", "1:2 F-V U (%)"))


def protocols_table(by_protocol: dict[str | Protocol, list], md: str | os.PathLike, csv_path: str | os.PathLike,
                    config: dict, html_path: str | os.PathLike | None = None) -> list[Path]:
    """The protocols side by side, one row per method, into the files ``md`` and ``csv_path`` (and
    ``html_path``, the same table as an HTML page, when given).

    ``by_protocol`` maps a protocol (a :data:`PROTOCOLS` name or a declaration) to its results
    files, in column order; ``config``: the complete ``evaluation.compare`` section.
    """
    cfg = check_section("evaluation.compare", config)
    protos = {(PROTOCOLS[k] if isinstance(k, str) else k).name: (PROTOCOLS[k] if isinstance(k, str) else k)
              for k in by_protocol}
    results = {name: {r.name: r for r in load_results(files)} for name, files in zip(protos, by_protocol.values())}
    methods = list(dict.fromkeys(m for res in results.values() for m in res))
    dcf = dcf_heading([r for res in results.values() for r in res.values()])
    cols = [(p, table, key, f"{protos[p].title} {head.format(dcf=dcf)}") for p in results
            for table, key, head in PROTOCOL_COLUMNS]
    title = "The protocols side by side: verification and 1:2 matching, stratum U"
    lines = [f"### {title}", "", "| Method | " + " | ".join(c[3] for c in cols) + " |", "|---|" + "---:|" * len(cols)]
    table_rows, body = [], []
    for m in methods:
        cells = {f"{p}_{key}": _ours(results[p][m], table, cfg)[key] if m in results[p] else Cell()
                 for p, table, key, _ in cols}
        body.append([m] + [_fmt(c, cfg) for c in cells.values()])
        lines.append(f"| **{m}** | " + " | ".join(body[-1][1:]) + " |")
        table_rows.append({"method": m, "kind": "ours", "figures": "ours", "cells": cells})
    note = (" ".join(f"{protos[p].title}: {protos[p].description}." for p in results)
            + " 95% bootstrap intervals over each protocol's identities in brackets; chance is AUC 50, "
            "EER 50, minDCF 1, min Cllr 1, 1:2 50 (minDCF and min Cllr are costs, not percentages).")
    write_text(md, "\n".join(lines + ["", note]) + "\n")
    write_text(csv_path, render_csv(table_rows, [(f"{p}_{key}", "", "") for p, _, key, _ in cols]))
    if html_path is None:
        return [Path(md), Path(csv_path)]
    table = pd.DataFrame(body, columns=["Method"] + [c[3] for c in cols])
    write_html(html_path, ", ".join(p.title for p in protos.values()), [Section(title, table, [note])])
    return [Path(md), Path(csv_path), Path(html_path)]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="facevoice compare",
                                description="comparison tables and plots (see facevoice.evaluation.compare)")
    p.add_argument("--protocol", action="append", default=[],
                   help=f"the protocol compared ({', '.join(PROTOCOLS)} or a name of evaluation.declare; default "
                        f"{UNSEEN_UNHEARD.name}); with --table, once before each one's --results")
    p.add_argument("--results", nargs="*", action="append", default=[],
                   help="results JSON of each method (none: chance and reported rows only)")
    p.add_argument("--roc", nargs="*", default=[], help="ROC Parquet of each method (any order)")
    p.add_argument("--out", default=None, help="output folder (the protocol's tables and plots)")
    p.add_argument("--table", nargs="+", default=None, metavar="FILE",
                   help="MD CSV [HTML]: write the protocols side by side into these files instead")
    p.add_argument("--config", default=None, help="config.yaml (its evaluation: section)")
    p.add_argument("--params", default=None,
                   help='JSON mapping over --config, e.g. \'{"compare": {"decimals": 1}}\'')
    p.add_argument("--reference", default=None, help="reference figures YAML (default: packaged)")
    p.add_argument("--no-reference", action="store_true", help="leave out the papers' rows")
    p.add_argument("--decimals", type=int, default=None)
    p.add_argument("--no-ci", action="store_true", help="leave intervals out of Markdown/LaTeX")
    return p


def main(argv: list[str] | None = None) -> int:
    p = _parser()
    a = p.parse_args(argv)
    if (a.out is None) == (a.table is None):
        p.error("give --out DIR (one protocol's tables) or --table MD CSV [HTML] (the protocols side by side)")
    names = a.protocol or [UNSEEN_UNHEARD.name]
    if a.table and len(a.table) not in (2, 3):
        p.error(f"--table takes MD CSV [HTML]: {len(a.table)} files given")
    if a.table and len(a.results) != len(names):
        p.error(f"--table: give one --results list after each --protocol ({len(names)} protocols, "
                f"{len(a.results)} --results)")
    if a.out and len(names) > 1:
        p.error("--out writes one protocol's tables: give one --protocol (or --table MD CSV [HTML])")
    evaluation = load_config(a.config, a.params)  # completed from the schema
    cfg = evaluation["compare"]
    if a.decimals is not None:
        cfg["decimals"] = a.decimals
    if a.no_ci:
        cfg["show_ci"] = False
    if a.no_reference:
        cfg["reference"] = False
    try:
        protos = [resolve(n, evaluation) for n in names]
        if a.table:
            written = protocols_table(dict(zip(protos, a.results)), *a.table[:2], cfg, *a.table[2:])
        else:
            results = [f for group in a.results for f in group]
            written = compare(results, a.out, cfg, a.roc, a.reference, protocol=protos[0])
    except (ResultsError, ValueError) as exc:  # a results file that breaks the format (its name and the key),
        # a reference figure or a protocol of no declaration, two results of one name: the reason, no traceback
        print(f"[compare] {exc}", file=sys.stderr)
        return 1
    print(f"[compare] wrote {len(written)} files", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
