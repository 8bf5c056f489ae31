"""Training curves (``curve.png``): the epochs of ``log.csv``, one panel per kind of figure.

Panels, each drawn only when the log has a figure of its kind (a method with nothing to train,
``chance``, has its validation AUC alone):

- training losses: every loss term, and each stage's ``loss`` (the objective it minimises,
  ``loss (stage)`` when there are several stages: the objectives differ);
- training accuracies: terms named ``*_acc``/``acc_*`` (fractions in [0, 1]);
- adversarial terms: every term of a stage the method lists in ``adversarial_stages`` (a
  game's log-likelihoods and losses, on their own scale), accuracies aside;
- validation AUC, with the epoch each stage kept ringed, for the stages that select by it
  (not those in the method's ``select_last``, which keep their last epoch).

Every term has its own colour, the same in every panel
(:func:`facevoice.common.plotting.distinct_styles`); stage boundaries are dashed lines named
after their stage.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from facevoice.common.io import atomic_path
from facevoice.common.plotting import distinct_styles

#: log.csv's bookkeeping columns: every other column is a term of the training objective
LOG_COLUMNS = ("epoch", "stage", "steps", "samples", "val_auc", "best", "lr", "seconds", "data_s", "skipped")
PANELS = {"loss": ("training losses (epoch means)", "loss"),
          "accuracy": ("training accuracies (epoch means)", "accuracy"),
          "adversarial": ("adversarial terms (epoch means)", "value"),
          "val_auc": ("verification AUC, validation identities", "AUC")}
VAL_AUC = "val AUC"


def term_kind(term: str, stage: str, adversarial_stages: tuple[str, ...] = ()) -> str:
    """The panel of a logged term: ``accuracy``, ``adversarial`` or ``loss``."""
    if "acc" in term.split("_"):
        return "accuracy"
    return "adversarial" if stage in adversarial_stages else "loss"


def curve_series(history: list[dict], adversarial_stages: tuple[str, ...] = ()) -> dict[str, dict[str, list]]:
    """``{panel: {label: [one Series (epoch -> value) per stage]}}``, the panels with data only,
    in :data:`PANELS` order; labels in order of first appearance."""
    df = pd.DataFrame(history)
    out: dict[str, dict[str, list]] = {k: {} for k in PANELS}
    if df.empty:
        return {}
    terms = [c for c in df.columns if c not in LOG_COLUMNS]
    several = df["stage"].nunique() > 1
    for stage, rows in df.groupby("stage", sort=False):
        rows = rows.set_index("epoch")
        for t in terms:
            y = pd.to_numeric(rows[t], errors="coerce").dropna()
            if len(y):
                label = f"{t} ({stage})" if t == "loss" and several else t
                out[term_kind(t, stage, adversarial_stages)].setdefault(label, []).append(y)
    auc = pd.to_numeric(df.set_index("epoch")["val_auc"], errors="coerce").dropna()
    if len(auc):
        out["val_auc"][VAL_AUC] = [auc]
    return {k: v for k, v in out.items() if v}


def figure_curve(history: list[dict], title: str, select_last: tuple[str, ...] = (),
                 adversarial_stages: tuple[str, ...] = ()):
    """The training curve of ``history`` (log.csv's rows) as a matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = curve_series(history, adversarial_stages)
    if not series:
        fig = plt.figure(figsize=(6, 0.8))
        fig.text(0.5, 0.5, f"{title}: no epoch logged", ha="center", va="center", fontsize=9)
        return fig
    df = pd.DataFrame(history)
    styles = distinct_styles([lb for p, s in series.items() if p != "val_auc" for lb in s])
    fig, axes = plt.subplots(1, len(series), figsize=(4.6 * len(series), 5), squeeze=False, sharex=True)
    for ax, (panel, lines) in zip(axes[0], series.items()):
        for label, parts in lines.items():
            colour, ls = styles.get(label, ("black", "-"))
            for i, y in enumerate(parts):
                ax.plot(y.index, y.values, marker=".", ls=ls, color=colour, label=label if i == 0 else None)
        if panel == "val_auc":
            _val_auc_extras(ax, df, select_last)
        if panel == "accuracy":
            ax.set_ylim(-0.02, 1.02)
        _stage_marks(ax, df)
        ax.set(xlabel="epoch", ylabel=PANELS[panel][1])
        ax.set_title(PANELS[panel][0], fontsize=9)
        ax.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.14))  # below: covers no data
    nothing = "" if {"loss", "adversarial"} & set(series) else ": nothing trained (no loss terms)"
    fig.suptitle(title + nothing)
    fig.tight_layout()
    return fig


def _val_auc_extras(ax, df: pd.DataFrame, select_last: tuple[str, ...]) -> None:
    """Chance level, and a ring on each selecting stage's kept epoch."""
    ax.axhline(0.5, color="0.7", lw=1, label="chance level")
    best = df[(df["best"] == True) & ~df["stage"].isin(select_last)]  # noqa: E712
    if len(best):
        ax.scatter(best["epoch"], best["val_auc"], s=80, facecolors="none", edgecolors="tab:red",
                   label="kept (best of its stage)", zorder=3)


def _stage_marks(ax, df: pd.DataFrame) -> None:
    """A dashed line where each stage after the first starts, with its name."""
    starts = df.groupby("stage", sort=False)["epoch"].min().iloc[1:]
    for stage, epoch in starts.items():
        ax.axvline(epoch - 0.5, color="0.6", ls="--", lw=1)
        ax.text(epoch - 0.4, 0.98, stage, va="top", fontsize=8, color="0.4", transform=ax.get_xaxis_transform())


def plot_curve(history: list[dict], path: Path, title: str, select_last: tuple[str, ...] = (),
               adversarial_stages: tuple[str, ...] = ()) -> None:
    """Write :func:`figure_curve`'s figure to ``path`` (PNG)."""
    import matplotlib.pyplot as plt

    fig = figure_curve(history, title, select_last, adversarial_stages)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
