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
