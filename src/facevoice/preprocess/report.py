"""Data report: what went into the shards, what was rejected and why, how much speech was kept.

Reads the clip table, the manifest and the clip records of every batch file, and writes
into the report folder:

- ``report.md``: counts per split, rejects by reason, speech kept vs dropped, and the first
  identities of each split (Markdown tables, each heading saying how many of how many), with
  the plot embedded;
- ``report.png``: the same at a glance;
- ``identities.csv``: counts per identity and split (an identity with held-out seen-heard
  videos has a row for each of its splits); ``rejects.csv``: one row per rejected item
  (clip, modality, stage, reason); ``speech.csv``: per-clip speech durations.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from facevoice.common.config import defaults
from facevoice.common.io import atomic_path, write_text
from facevoice.data.batch import read_batch_meta
from facevoice.data.inputs import NOTHING_HELD_OUT, SPLIT_ORDER, heldout_summary

STAGES = {"face": ["frames", "faces"], "voice": ["speech", "features"]}


def _origin(stage: str, reason: str) -> tuple[str, str]:
    """Split 'frames: corrupt video' style reasons passed down the chain into (stage, reason)."""
    while True:
        head, sep, rest = reason.partition(": ")
        if sep and head in ("frames", "faces", "speech", "features"):
            stage, reason = head, rest
        else:
            return stage, reason


def batch_records(results: Path, stage: str, clips: pd.DataFrame) -> dict[str, dict]:
    """clip -> its record in the stage's batch files (``<stage>/<identity>/<part>.parquet``)."""
    out: dict[str, dict] = {}
    for ident, part in sorted(set(zip(clips["identity"], clips["part"]))):
        meta = read_batch_meta(results / stage / ident / f"{part}.parquet")
        method = (meta.get("params") or {}).get("method")
        for rec in meta["clips"]:
            out[rec["clip"]] = {**rec, "method": method}
    return out


def collect(clips: pd.DataFrame, results: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rejects, speech durations) from the batch files' clip records."""
    records = {stage: batch_records(results, stage, clips)
               for stage in tqdm(["faces", "features", "speech"], desc="report", unit="stage", disable=None)}
    rejects, speech = [], []
    for rec in clips.to_dict("records"):
        for modality, stages in STAGES.items():
            last = stages[-1]
            meta = records[last].get(rec["clip"])
            if meta is None:
                raise ValueError(f"clip {rec['clip']} is missing from its {last} batch file: re-run {last}")
            if meta.get("status") == "rejected":
                stage, reason = _origin(last, str(meta.get("reason")))
                rejects.append({"clip": rec["clip"], "identity": rec["identity"], "split": rec["split"],
                                "modality": modality, "stage": stage, "reason": reason})
        meta = records["speech"][rec["clip"]]
        ok = meta.get("status") == "ok"
        speech.append({"clip": rec["clip"], "split": rec["split"], "method": meta.get("method"),
                       "status": meta.get("status"), "total_s": meta.get("total_s"),
                       "kept_s": meta.get("kept_s") if ok else 0.0})
    rej = pd.DataFrame(rejects, columns=["clip", "identity", "split", "modality", "stage", "reason"])
    sp = pd.DataFrame(speech, columns=["clip", "split", "method", "status", "total_s", "kept_s"])
    sp["dropped_s"] = (sp["total_s"].astype(float) - sp["kept_s"].astype(float)).clip(lower=0)
    return rej, sp


def _md(df: pd.DataFrame) -> str:
    """A Markdown table without the optional tabulate dependency."""
    if df.empty:
        return "_none_\n"
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        cells = [f"{v:.1f}" if isinstance(v, float) else ("" if v is None else str(v)) for v in row]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _methods(speech: pd.DataFrame) -> str:
    """The speech filter(s) the clips went through."""
    return ", ".join(sorted(str(m) for m in speech["method"].dropna().unique())) or "none"


def figure_overview(per_split: pd.DataFrame, rejects: pd.DataFrame, speech: pd.DataFrame, manifest: pd.DataFrame):
    """``report.png``'s figure: items per split, rejects by reason, speech kept vs dropped, faces
    per clip; every axis labelled, the legends above the bars (the y axis leaves them room)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 2, figsize=(11, 8))
    per_split.set_index("split")[["face items", "voice items"]].plot.bar(ax=ax[0, 0], rot=0)
    _legend_room(ax[0, 0], "items")
    ax[0, 0].set_title("Items per split")
    if rejects.empty:
        ax[0, 1].text(0.5, 0.5, "no rejects", ha="center", va="center")
        ax[0, 1].set_axis_off()
    else:
        counts = rejects.groupby(["stage", "reason"]).size().sort_values()
        labels = [f"{s}: {r[:40]}" for s, r in counts.index]
        ax[0, 1].barh(labels, counts.values, color="tab:red")
        ax[0, 1].set(xlabel="items", ylabel="stage: reason")
        ax[0, 1].set_title("Rejected items by reason")
    dur = speech.groupby("split")[["kept_s", "dropped_s"]].sum().reindex(per_split["split"]).fillna(0) / 60.0
    dur.columns = ["kept", "dropped"]
    dur.plot.bar(stacked=True, ax=ax[1, 0], rot=0, color=["tab:green", "tab:gray"])
    _legend_room(ax[1, 0], "minutes")
    ax[1, 0].set_title(f"Speech kept vs dropped ({_methods(speech)})")
    faces = manifest[manifest["modality"] == "face"].groupby("clip").size()
    if len(faces):
        ax[1, 1].hist(faces.values, bins=range(1, int(faces.max()) + 2), color="tab:blue", align="left")
    ax[1, 1].set(xlabel="aligned faces per clip", ylabel="clips", title="Faces kept per clip")
    ax[1, 1].yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    fig.tight_layout()
    return fig


def _legend_room(ax, ylabel: str) -> None:
    """A bar chart's y label, and its legend in one row above the tallest bar (the y axis
    extended by a third), so that it covers none."""
    top = max((b.get_y() + b.get_height() for b in ax.patches), default=0.0)
    ax.set_ylim(0, (top or 1.0) * 1.35)
    ax.set_ylabel(ylabel)
    ax.legend(loc="upper center", ncol=2, fontsize=8, frameon=False)


def plot(per_split: pd.DataFrame, rejects: pd.DataFrame, speech: pd.DataFrame, manifest: pd.DataFrame, out: Path) -> None:
    """Write :func:`figure_overview`'s figure to ``out`` (PNG)."""
    import matplotlib.pyplot as plt

    fig = figure_overview(per_split, rejects, speech, manifest)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def split_names(clips: pd.DataFrame) -> list[str]:
    """The clip table's splits, in the pipeline's order (others after, alphabetically)."""
    present = set(clips["split"])
    return [s for s in SPLIT_ORDER if s in present] + sorted(present - set(SPLIT_ORDER))


def identity_table(clips: pd.DataFrame, manifest: pd.DataFrame, splits: list[str]) -> pd.DataFrame:
    """One row per identity and split: its clips in the clip table and its face and voice items
    in the manifest *of that split* (an identity with held-out videos has a row in each)."""
    ident = clips.groupby(["identity", "name", "split"], dropna=False).size().rename("clips").reset_index()
    for mod in ("face", "voice"):
        n = manifest[manifest.modality == mod].groupby(["identity", "split"]).size().rename(f"{mod} items")
        ident = ident.merge(n.reset_index(), on=["identity", "split"], how="left")
    ident = ident.fillna({"face items": 0, "voice items": 0}).astype({"face items": int, "voice items": int})
    order = {s: i for i, s in enumerate(splits)}
    ident = ident.sort_values(["split", "identity"], key=lambda c: c.map(order) if c.name == "split" else c)
    return ident[["split", "identity", "name", "clips", "face items", "voice items"]].reset_index(drop=True)


def identities_md(ident: pd.DataFrame, splits: list[str], top: int) -> str:
    """The per-identity tables of report.md, one per split, each heading saying how many it lists."""
    parts = []
    for s in splits:
        rows = ident[ident["split"] == s].drop(columns="split")
        shown = f"first {top} of {len(rows)}" if len(rows) > top else f"all {len(rows)}"
        parts.append(f"### {s} ({shown} identities)\n\n{_md(rows.head(top))}")
    return "\n".join(parts)


def build(clips_path: str, manifest_path: str, results: str, out_dir: str, top: int) -> None:
    results_p, out = Path(results), Path(out_dir)
    clips = pd.read_parquet(clips_path)
    manifest = pd.read_parquet(manifest_path)
    rejects, speech = collect(clips, results_p)

    splits = split_names(clips)
    per_split = pd.DataFrame({
        "split": splits,
        "identities": [clips.loc[clips.split == s, "identity"].nunique() for s in splits],
        "clips": [int((clips.split == s).sum()) for s in splits],
        "face items": [int(((manifest.split == s) & (manifest.modality == "face")).sum()) for s in splits],
        "voice items": [int(((manifest.split == s) & (manifest.modality == "voice")).sum()) for s in splits],
        "rejected items": [int((rejects.split == s).sum()) for s in splits],
    })
    ident = identity_table(clips, manifest, splits)
    by_reason = (rejects.groupby(["modality", "stage", "reason"]).size().rename("items").reset_index()
                 .sort_values("items", ascending=False))
    dur = speech.groupby("split")[["total_s", "kept_s", "dropped_s"]].sum().reindex(splits).fillna(0).reset_index()
    dur["kept %"] = (100 * dur["kept_s"] / dur["total_s"].where(dur["total_s"] > 0)).round(1)

    out.mkdir(parents=True, exist_ok=True)
    for name, df in [("identities.csv", ident), ("rejects.csv", rejects), ("speech.csv", speech)]:
        with atomic_path(out / name) as tmp:
            df.to_csv(tmp, index=False)
    plot(per_split, rejects, speech, manifest, out / "report.png")
    text = (
        f"# Data report\n\n![overview](report.png)\n\n"
        f"## Counts per split\n\n{_md(per_split)}\n"
        f"{(heldout_summary(clips) or f'seen-heard: {NOTHING_HELD_OUT}') + '.'}\n\n"
        f"## Rejected items by reason\n\n{_md(by_reason)}\n"
        f"Every rejected item, with its clip: `rejects.csv`.\n\n"
        f"## Speech kept vs dropped (seconds; speech.method: {_methods(speech)})\n\n{_md(dur)}\n"
        f"## Identities per split (an identity with held-out videos is in two; every row in "
        f"`identities.csv`)\n\n{identities_md(ident, splits, top)}"
    )
    write_text(out / "report.md", text)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="facevoice report", description=__doc__.splitlines()[0])
    ap.add_argument("--clips", required=True, help="the clip table (clips.parquet)")
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--results", required=True, help="results/<dataset>: holds frames/ faces/ speech/ features/")
    ap.add_argument("--out", required=True, help="the report folder")
    top = defaults("report")["top_identities"]  # the schema holds the default, not this module
    ap.add_argument("--top", type=int, default=top,
                    help=f"identities listed per split in the per-identity tables (default: config "
                         f"report.top_identities, {top})")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.top < 1:
        parser().error(f"--top must be at least 1, not {args.top}")
    build(args.clips, args.manifest, args.results, args.out, args.top)
    print(f"[report] {args.out}/report.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
