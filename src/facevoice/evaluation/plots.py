"""The comparison's plots: ROC curves (one panel per stratum some method has a figure for) and
1:N accuracy against N, with the papers' curves measured under the protocol shown
(:mod:`facevoice.evaluation.compare` writes them beside its tables)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facevoice.common.io import atomic_path
from facevoice.common.plotting import distinct_styles
from facevoice.evaluation.protocol import VERIFICATION_STRATA
from facevoice.evaluation.protocols import PROTOCOLS, UNSEEN_UNHEARD, Protocol
from facevoice.evaluation.results import Results


def protocol_of(cfg: dict) -> Protocol:
    """The protocol a table or plot shows (``cfg["protocol"]``: a :class:`Protocol` or its
    name; unseen-unheard when none is named)."""
    p = cfg.get("protocol", UNSEEN_UNHEARD)
    return PROTOCOLS[p] if isinstance(p, str) else p


def _savefig(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_roc(results: list[Results], rocs: dict, path: Path, protocol: Protocol = UNSEEN_UNHEARD) -> None:
    """Write :func:`figure_roc`'s figure to ``path`` (PNG)."""
    _savefig(figure_roc(results, rocs, protocol), path)


def roc_strata(results: list[Results]) -> list[str]:
    """The strata some result has a figure for: the others get no ROC panel (the verification
    table's notes say why)."""
    return [s for s in VERIFICATION_STRATA
            if any(e is not None and e.available for e in (r.verification_at(s) for r in results))]


def figure_roc(results: list[Results], rocs: dict, protocol: Protocol = UNSEEN_UNHEARD):
    """The ROC curves of ``protocol``, every method overlaid, one panel per stratum of
    :func:`roc_strata` (a matplotlib figure); with none, one line saying so."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    strata = roc_strata(results)
    if not strata:
        fig = plt.figure(figsize=(6, 0.8))
        fig.text(0.5, 0.5, f"Verification ROC, {protocol.heading}: no stratum has a result to draw "
                           "(verification.md says why)", ha="center", va="center", fontsize=8)
        return fig
    fig, axes = plt.subplots(1, len(strata), figsize=(4.2 * len(strata), 4.6), squeeze=False)
    styles = distinct_styles([r.name for r in results])  # a method's colour is the same in every panel
    for ax, s in zip(axes[0], strata):
        _roc_panel(ax, results, rocs, s, styles)
    fig.suptitle(f"Verification ROC\n{protocol.heading}", fontsize=9)
    fig.tight_layout()
    return fig


def _roc_panel(ax, results: list[Results], rocs: dict, stratum: str, styles: dict) -> None:
    """One stratum's ROC curves, each method's EER point marked; the methods not drawn named."""
    ax.plot([0, 1], [0, 1], ls=":", c="grey", lw=1, label="chance level")
    ax.plot([0, 1], [1, 0], ls="--", c="lightgrey", lw=0.8, label="FPR = FNR")
    missing = []
    for res in results:
        e, roc = res.verification_at(stratum), rocs.get(res.name)
        sub = roc[roc["stratum"] == stratum] if roc is not None and e is not None and e.available else None
        if sub is None or sub.empty:
            missing.append(res.name)
            continue
        colour, ls = styles[res.name]
        ax.plot(sub["fpr"], sub["tpr"], lw=1.5, color=colour, ls=ls,
                label=f"{res.name} (AUC {100 * e.auc:.1f}, EER {100 * e.eer:.1f})")
        ax.plot([e.eer], [1 - e.eer], "o", ms=3, c=colour)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="false accept rate (FPR)", ylabel="true accept rate (TPR)")
    ax.set_title(f"stratum {stratum}", fontsize=9)
    ax.set_aspect("equal")
    if missing:
        import textwrap

        ax.text(0.02, 0.98, textwrap.fill("no curve (verification.md says why): " + ", ".join(missing), 50),
                ha="left", va="top", fontsize=6, transform=ax.transAxes, color="dimgrey")
    ax.legend(loc="lower right", fontsize=7)


def plot_1vN(results: list[Results], papers: list[dict], direction: str, path: Path, cfg: dict) -> None:
    """Write :func:`figure_1vN`'s figure to ``path`` (PNG)."""
    _savefig(figure_1vN(results, papers, direction, cfg), path)


def figure_1vN(results: list[Results], papers: list[dict], direction: str, cfg: dict):
    """1:N accuracy against N in one direction (stratum U) of the protocol ``cfg`` names, with
    the papers' curves measured under that protocol only (a matplotlib figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    protocol = protocol_of(cfg)
    reported = _reported_curves(papers, protocol, direction) if cfg["reference"] else {}
    styles = distinct_styles([r.name for r in results] + list(reported))  # no two curves share a colour
    top = 10
    for res in results:
        e = res.matching_at(direction, "U")
        ns = sorted(n for n, ok in e.available.items() if ok) if e is not None else []
        if not ns:
            continue
        top = max(top, ns[-1])
        colour, ls = styles[res.name]
        ax.plot(ns, [100 * e.accuracy[n] for n in ns], "o", ls=ls, ms=3, lw=1.5, color=colour, label=res.name)
        if all(e.ci95.get(n) for n in ns):
            ax.fill_between(ns, [100 * e.ci95[n][0] for n in ns], [100 * e.ci95[n][1] for n in ns],
                            color=colour, alpha=0.15, lw=0)
    for label, pts in reported.items():
        ax.plot([a for a, _ in pts], [b for _, b in pts], "s--", ms=4, lw=1, mfc="none", color=styles[label][0],
                label=label)
    xs = np.arange(2, top + 1)
    ax.plot(xs, 100 / xs, ":", c="grey", label="chance level (1/N)")
    ax.set(xlabel="N (candidates)", ylabel="accuracy (%)", ylim=(0, 100))
    ax.set_title(f"1:N matching, {direction} (stratum U)\n{protocol.heading}", fontsize=9)
    ax.set_xticks(xs)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return fig


def _reported_curves(papers: list[dict], protocol: Protocol, direction: str) -> dict[str, list]:
    """The papers' 1:N curves (stratum U, more than one N) measured under ``protocol``:
    {label: [(N, accuracy), ...]}."""
    out = {}
    for p in papers:
        for f in p.get("figures") or []:
            if protocol.owns(f) and f.get("protocol") == "matching" and f.get("direction") == direction \
                    and f.get("stratum") == "U" and len(f.get("n") or {}) > 1:
                out[f"{p.get('label', p['key'])} (reported, {f.get('table')})"] = sorted(
                    (int(k), float(v)) for k, v in f["n"].items())
    return out
