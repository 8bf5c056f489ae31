"""``facevoice report``: its command line (--top defaults to the schema's report.top_identities)
and its seen-heard line."""

from __future__ import annotations

import pytest

from facevoice.common.config import defaults
from facevoice.preprocess import report

REQUIRED = ["--clips", "c.parquet", "--manifest", "m.parquet", "--results", "r", "--out", "o"]


def test_top_defaults_to_the_schemas_value():
    top = defaults("report")["top_identities"]
    assert report.parser().parse_args(REQUIRED).top == top
    assert report.parser().parse_args([*REQUIRED, "--top", str(top + 3)]).top == top + 3
    assert f"report.top_identities, {top}" in " ".join(report.parser().format_help().split())


def test_top_below_one_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        report.main([*REQUIRED, "--top", "0"])
    assert e.value.code == 2 and "--top must be at least 1" in capsys.readouterr().err


def test_the_report_counts_the_identities_left_out_of_seenheard(tmp_path):
    """The clip table lists (in its attrs, kept in clips.parquet) the training identities the
    official seen-heard lists name with every video; the data report gives their count."""
    import pandas as pd
    import pyarrow as pa

    from facevoice.common.io import write_parquet
    from facevoice.data.inputs import SEENHEARD_DROPPED

    clips = pd.DataFrame({"clip": ["a/v1/1", "a/v2/1", "b/v1/1"], "identity": ["a", "a", "b"],
                          "name": ["A", "A", "B"], "video": ["v1", "v2", "v1"],
                          "split": ["train", "seenheard", "train"], "part": ["p0", "p0", "p0"]})
    clips.attrs[SEENHEARD_DROPPED] = ["b"]
    write_parquet(clips, tmp_path / "clips.parquet")
    manifest = pd.DataFrame({"item": ["a/v1/1/f", "a/v2/1/f", "b/v1/1/f"], "clip": clips["clip"],
                             "identity": clips["identity"], "split": clips["split"], "modality": "face"})
    write_parquet(manifest, tmp_path / "manifest.parquet")
    results = tmp_path / "results"
    for stage in ("faces", "features", "speech"):
        for ident in ("a", "b"):
            recs = [{"clip": c, "status": "ok", "total_s": 2.0, "kept_s": 1.5}
                    for c in clips.loc[clips["identity"] == ident, "clip"]]
            (results / stage / ident).mkdir(parents=True, exist_ok=True)
            write_parquet(pa.table({"clip": pa.array([], pa.string())}), results / stage / ident / "p0.parquet",
                          {"stage": stage, "params": {"method": "energy"}, "clips": recs})
    report.build(str(tmp_path / "clips.parquet"), str(tmp_path / "manifest.parquet"), str(results),
                 str(tmp_path / "report"), 5)
    text = (tmp_path / "report" / "report.md").read_text()
    assert "1 clips of 1 videos of 1 training identities held out of training" in text
    assert "1 training identities left out of seen-heard" in text and "['b']" in text


# --------------------------------------------------------------------------- the tables and the overview


def _held_out():
    """A manifest and clip table where each training identity has one of its two videos held out
    (split seenheard), as the pipeline's seen-heard protocol makes them."""
    import pandas as pd

    from facevoice.testing import synthetic_manifest

    man = synthetic_manifest({"train": 3, "test": 2}, videos=2, clips=2, frames=3, seed=1)
    held = (man["split"] == "train") & man["clip"].str.contains("/vid01/")
    man.loc[held, "split"] = "seenheard"
    # one more clip of 5 faces for the first identity's training video: the splits' counts differ
    extra = man[man["clip"] == "id10001/vid00/00001"].copy()
    extra["clip"] = "id10001/vid00/00003"
    extra = pd.concat([extra, extra[extra.modality == "face"].head(2)])
    man = pd.concat([man, extra], ignore_index=True)
    clips = man.drop_duplicates("clip")[["clip", "identity", "name", "split"]]
    return clips, man


def test_identity_table_counts_each_split_of_an_identity_apart():
    clips, man = _held_out()
    splits = report.split_names(clips)
    assert splits == ["train", "seenheard", "test"]
    ident = report.identity_table(clips, man, splits)
    assert list(ident.columns) == ["split", "identity", "name", "clips", "face items", "voice items"]
    assert ident["split"].tolist() == ["train"] * 3 + ["seenheard"] * 3 + ["test"] * 2
    one = ident[ident.identity == "id10001"].set_index("split")
    assert one.loc["train", ["clips", "face items", "voice items"]].tolist() == [3, 11, 3]
    assert one.loc["seenheard", ["clips", "face items", "voice items"]].tolist() == [2, 6, 2]
    # the counts add up to the manifest's, split by split
    for s in splits:
        assert ident.loc[ident.split == s, "face items"].sum() == ((man.split == s) & (man.modality == "face")).sum()


def test_identity_headings_say_how_many_they_list():
    clips, man = _held_out()
    splits = report.split_names(clips)
    md = report.identities_md(report.identity_table(clips, man, splits), splits, top=2)
    heads = [ln for ln in md.splitlines() if ln.startswith("###")]
    assert heads == ["### train (first 2 of 3 identities)", "### seenheard (first 2 of 3 identities)",
                     "### test (all 2 identities)"]
    blocks = md.split("###")[1:]
    assert [sum(ln.startswith("| id1") for ln in b.splitlines()) for b in blocks] == [2, 2, 2]


def test_overview_axes_are_labelled_and_legends_cover_no_bar():
    import matplotlib.pyplot as plt
    import pandas as pd

    clips, man = _held_out()
    splits = report.split_names(clips)
    per_split = pd.DataFrame({"split": splits,
                              "face items": [((man.split == s) & (man.modality == "face")).sum() for s in splits],
                              "voice items": [((man.split == s) & (man.modality == "voice")).sum() for s in splits]})
    speech = pd.DataFrame({"split": list(clips["split"]), "method": "energy", "kept_s": 3.0, "dropped_s": 1.0})
    rejects = pd.DataFrame({"stage": ["faces"], "reason": ["no face"]})
    fig = report.figure_overview(per_split, rejects, speech, man)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        assert ax.get_xlabel() and ax.get_ylabel(), ax.get_title()
        legend = ax.get_legend()
        if legend is None:
            continue
        box = legend.get_window_extent(renderer)
        bars = [p.get_window_extent(renderer) for p in ax.patches if p.get_height() > 0]
        assert bars and not any(box.overlaps(b) for b in bars), ax.get_title()
    hist = fig.axes[3]
    assert (hist.get_xlabel(), hist.get_ylabel()) == ("aligned faces per clip", "clips")
    assert fig.axes[1].get_xlabel() == "items"
    plt.close(fig)
