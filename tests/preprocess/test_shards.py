import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from facevoice.common.io import atomic_path, read_parquet_meta
from facevoice.data.batch import BatchReader, Result, batch_writer
from facevoice.data.inputs import bucket_of, shard_files, shard_plan
from facevoice.preprocess import faces, features, report, shards

ATTRS = {f"id{i}": {"name": f"N_{i}", "split": "train", "gender": "f", "nationality": None, "age": None}
         for i in range(1, 4)}


def face_rows(n):
    return pa.table({"frame_index": list(range(n)), "time_s": [float(i) for i in range(n)], "prob": [0.99] * n,
                     "box": [[0, 0, 10, 10]] * n, "landmarks": [[float(j) for j in range(10)]] * n,
                     "n_faces": [1] * n, "image": [bytes([i]) * 7 for i in range(n)]}, schema=faces.SCHEMA)


def feature_rows(kinds, frames):
    rows = {"kind": [], "n_bins": [], "n_frames": [], "values": []}
    for bins, k in zip((257, 64, 13), kinds):
        rows["kind"].append(k)
        rows["n_bins"].append(bins)
        rows["n_frames"].append(frames)
        rows["values"].append(np.arange(bins * frames, dtype=np.float32).tolist())
    return pa.table(rows, schema=features.SCHEMA)


def batch_file(path, stage, schema, clips):
    """A batch file of (clip, Result) pairs, as a stage job writes it."""
    with batch_writer(path, schema, {"stage": stage}) as w:
        for clip, res in clips:
            w.add(clip, f"key-{clip}", res)
    return str(path)


def test_face_shard_skips_rejects_and_manifest_indexes_rows(tmp_path):
    a = batch_file(tmp_path / "a.parquet", "faces", faces.SCHEMA, [
        ("id1/v/00001", Result("ok", None, face_rows(3))),
        ("id1/v/00002", Result.rejected("no face in any frame"))])
    b = batch_file(tmp_path / "b.parquet", "faces", faces.SCHEMA, [("id2/v/00001", Result("ok", None, face_rows(2)))])
    root = tmp_path / "shards"
    out = root / "train" / "face-00000.parquet"
    meta = shards.write_shard([b, a], str(out), "face", "train")
    assert meta["n_rows"] == 5
    t = pq.read_table(out)
    assert t.column("item").to_pylist() == [
        "id1/v/00001/face/0000", "id1/v/00001/face/0001", "id1/v/00001/face/0002",
        "id2/v/00001/face/0000", "id2/v/00001/face/0001"]
    assert pq.ParquetFile(out).num_row_groups == 2  # one row group per written clip: streamed
    assert read_parquet_meta(out)["clips"][1] == {"clip": "id2/v/00001", "identity": "id2"}

    kinds = ["spectrogram", "logmel"]
    v = batch_file(tmp_path / "v.parquet", "features", features.SCHEMA,
                   [(c, Result("ok", None, feature_rows(kinds, 5))) for c in ("id1/v/00001", "id1/v/00002", "id2/v/00001")])
    vout = root / "train" / "voice-00000.parquet"
    shards.write_shard([v], str(vout), "voice", "train", kinds)
    rows = pq.read_table(vout).to_pylist()
    assert [r["logmel_bins"] for r in rows] == [64] * 3
    assert len(rows[0]["logmel"]) == 64 * 5

    n = shards.write_manifest([str(out), str(vout)], str(root), str(root / "manifest.parquet"), ATTRS)
    m = pq.read_table(root / "manifest.parquet").to_pandas()
    assert n == len(m) == 8
    for rec in m.to_dict("records"):  # every manifest row points at its item
        row = pq.read_table(root / rec["shard"]).slice(rec["row"], 1).to_pylist()[0]
        assert row["item"] == rec["item"]
    assert set(m["modality"]) == {"face", "voice"} and m["nationality"].isna().all()
    assert set(m["name"]) == {"N_1", "N_2"}  # attributes from the clip table, by identity


def test_held_out_videos_go_to_the_seenheard_shard_only(tmp_path):
    a = batch_file(tmp_path / "a.parquet", "faces", faces.SCHEMA, [
        (c, Result("ok", None, face_rows(1))) for c in ("id1/vA/00001", "id1/vA/00002", "id1/vB/00001", "id2/vA/00001")])
    held = ["id1/vB"]
    train = shards.write_shard([a], str(tmp_path / "train.parquet"), "face", "train", heldout=held)
    seen = shards.write_shard([a], str(tmp_path / "seen.parquet"), "face", "seenheard", heldout=held)
    assert [c["clip"] for c in train["clips"]] == ["id1/vA/00001", "id1/vA/00002", "id2/vA/00001"]
    assert [c["clip"] for c in seen["clips"]] == ["id1/vB/00001"]
    assert shards.main(["write", "--modality", "face", "--split", "seenheard", "--heldout", '["id1/vA"]',
                        "--compression", "zstd", "--output", str(tmp_path / "cli.parquet"), a]) == 0
    assert set(pq.read_table(tmp_path / "cli.parquet").column("clip").to_pylist()) == {"id1/vA/00001", "id1/vA/00002"}


def test_manifest_refuses_an_item_in_two_shards_and_an_unknown_identity(tmp_path):
    a = batch_file(tmp_path / "a.parquet", "faces", faces.SCHEMA, [("id1/v/00001", Result("ok", None, face_rows(1)))])
    for i in range(2):
        shards.write_shard([a], str(tmp_path / f"s{i}.parquet"), "face", "train")
    with pytest.raises(ValueError, match="several shards"):
        shards.write_manifest([str(tmp_path / "s0.parquet"), str(tmp_path / "s1.parquet")], str(tmp_path),
                              str(tmp_path / "m.parquet"), ATTRS)
    with pytest.raises(ValueError, match="id1 is not in the clip table"):
        shards.write_manifest([str(tmp_path / "s0.parquet")], str(tmp_path), str(tmp_path / "m.parquet"), {})
    assert not (tmp_path / "m.parquet").exists()


def test_voice_shard_names_missing_feature_kind(tmp_path):
    v = batch_file(tmp_path / "v.parquet", "features", features.SCHEMA,
                   [("id1/v/00001", Result("ok", None, feature_rows(["spectrogram"], 3)))])
    with pytest.raises(ValueError, match="mfcc"):
        shards.write_shard([v], str(tmp_path / "s.parquet"), "voice", "train", ["spectrogram", "mfcc"])
    assert not (tmp_path / "s.parquet").exists()  # atomic: nothing half-written is left


def test_an_identitys_shard_depends_on_its_id_alone():
    idents = [f"id{10000 + i}" for i in range(300)]
    buckets = {i: bucket_of(i, 16) for i in idents}
    assert bucket_of("id10000", 16) == buckets["id10000"]  # stable: no salted hash()
    assert len(set(buckets.values())) == 16  # spread over every bucket
    clips = pd.DataFrame({"identity": idents, "split": ["train"] * 300})
    before = shard_plan(clips, 16)
    grown = pd.concat([clips, pd.DataFrame({"identity": ["id99999"], "split": ["train"]})])
    after = shard_plan(grown, 16)
    changed = [k for k in after if after[k] != before.get(k)]
    assert changed == [("train", bucket_of("id99999", 16))]  # only the shard the new identity joins
    assert len(shard_files(clips, 16)) == 32  # face and voice per non-empty bucket


def test_batch_file_records_and_rows(tmp_path):
    path = batch_file(tmp_path / "b.parquet", "faces", faces.SCHEMA, [
        ("id1/v/00001", Result.rejected("no face in any frame", frames_in=3)),
        ("id1/v/00002", Result("ok", None, face_rows(2), {"frames_in": 2}))])
    reader = BatchReader(path)
    rej, ok = reader.records
    assert rej["status"] == "rejected" and rej["group"] is None and rej["frames_in"] == 3
    assert ok["group"] == 0 and ok["rows"] == 2
    assert reader.rows(ok).column("frame_index").to_pylist() == [0, 1]
    assert reader.rows(rej).num_rows == 0 and "clip" not in reader.rows(ok).column_names
    assert pq.read_table(path).column("clip").to_pylist() == ["id1/v/00002"] * 2


def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_reject_reasons_are_traced_to_their_stage():
    assert report._origin("features", "speech: no audio track") == ("speech", "no audio track")
    assert report._origin("faces", "frames: corrupt or truncated video: x") == ("frames", "corrupt or truncated video: x")
    assert report._origin("faces", "no face in any frame") == ("faces", "no face in any frame")


def test_atomic_path_sweeps_a_killed_writers_temp_file(tmp_path):
    target = tmp_path / "clip.parquet"
    stale = tmp_path / ".clip.parquet.abc123.tmp.parquet"
    stale.write_bytes(b"half")
    other = tmp_path / ".other.parquet.abc123.tmp.parquet"
    other.write_bytes(b"someone else's")
    with atomic_path(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole" and not stale.exists() and other.exists()


def test_manifest_takes_identity_attributes_from_the_clip_table(tmp_path):
    """The manifest job reads names, genders, nationalities and ages from clips.parquet (the
    clip table written at planning), not from its command line; the split is the shard's."""
    from facevoice.data.inputs import CLIP_COLUMNS

    rows = [("id1/vA/00001", "id1", "vA", "00001", "N_1", "train", "f", "X", 31.0),
            ("id1/vB/00001", "id1", "vB", "00001", "N_1", "seenheard", "f", "X", 31.0),  # a held-out video
            ("id2/vA/00001", "id2", "vA", "00001", "N_2", "test", "m", None, None)]
    clips = pd.DataFrame([r + (None, "", "", 0) for r in rows], columns=CLIP_COLUMNS)
    clips.to_parquet(tmp_path / "clips.parquet")
    kinds = ["logmel"]
    batches = {}  # (identity, modality) -> its batch file, as the preprocessing writes them
    for ident in ("id1", "id2"):
        own = [r[0] for r in rows if r[1] == ident]
        batches[ident, "face"] = batch_file(tmp_path / f"{ident}-f.parquet", "faces", faces.SCHEMA,
                                            [(c, Result("ok", None, face_rows(1))) for c in own])
        batches[ident, "voice"] = batch_file(tmp_path / f"{ident}-v.parquet", "features", features.SCHEMA,
                                             [(c, Result("ok", None, feature_rows(kinds, 2))) for c in own])
    root = tmp_path / "shards"
    for (split, _), idents in shard_plan(clips, 1).items():
        for modality in ("face", "voice"):
            shards.write_shard([batches[i, modality] for i in idents], str(root / split / f"{modality}-00000.parquet"),
                               modality, split, kinds, heldout=["id1/vB"])
    out = tmp_path / "manifest.parquet"
    assert shards.main(["manifest", "--clips", str(tmp_path / "clips.parquet"), "--root", str(root),
                        "--buckets", "1", "--output", str(out)]) == 0
    m = pq.read_table(out).to_pandas().set_index("item")
    assert len(m) == 6
    assert m.loc["id1/vA/00001/face/0000", ["name", "split", "gender", "nationality", "age"]].tolist() == \
        ["N_1", "train", "f", "X", 31.0]
    assert m.loc["id1/vB/00001/voice", "split"] == "seenheard" and m.loc["id1/vB/00001/voice", "name"] == "N_1"
    assert m.loc["id2/vA/00001/voice", ["name", "gender"]].tolist() == ["N_2", "m"]
    assert m.loc["id2/vA/00001/voice", ["nationality", "age"]].isna().all()  # missing metadata stays missing
    (root / "test" / "voice-00000.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="voice-00000"):
        shards.manifest_from_clips(str(tmp_path / "clips.parquet"), str(root), 1, str(out))


def _shard_tree(tmp_path, rows, buckets, kinds=("logmel",)):
    """The clip table of ``rows`` (clip, identity, split), its planned shards and the manifest,
    as the shard and manifest jobs write them; returns the shards folder."""
    from facevoice.data.inputs import CLIP_COLUMNS

    clips = pd.DataFrame([(c, i, c.split("/")[1], c.split("/")[2], f"N_{i}", s, "f", None, None, None, "", "", "000")
                          for c, i, s in rows], columns=CLIP_COLUMNS)
    clips.to_parquet(tmp_path / "clips.parquet")
    root = tmp_path / "shards"
    for (split, bucket), idents in shard_plan(clips, buckets).items():
        own = [r[0] for r in rows if r[1] in idents]
        face = batch_file(tmp_path / f"{split}-{bucket}-f.parquet", "faces", faces.SCHEMA,
                          [(c, Result("ok", None, face_rows(2))) for c in own])
        voice = batch_file(tmp_path / f"{split}-{bucket}-v.parquet", "features", features.SCHEMA,
                           [(c, Result("ok", None, feature_rows(list(kinds), 2))) for c in own])
        for modality, batch in (("face", face), ("voice", voice)):
            shards.write_shard([batch], str(root / split / f"{modality}-{bucket:05d}.parquet"), modality, split,
                               list(kinds))
    assert shards.main(["manifest", "--clips", str(tmp_path / "clips.parquet"), "--root", str(root),
                        "--buckets", str(buckets), "--output", str(root / "manifest.parquet")]) == 0
    return root


def test_the_shards_folder_holds_only_the_planned_shards(tmp_path, capsys):
    """A bucket that empties (its identities gone) and a split that disappears leave no shard
    behind: reading shards/<split>/ directly gives what the manifest indexes."""
    idents = [f"id{i}" for i in range(1, 9)]
    rows = [(f"{i}/v/00001", i, "train") for i in idents] + [("id9/v/00001", "id9", "test")]
    buckets = 4
    _shard_tree(tmp_path, rows, buckets)
    by_bucket = {}
    for i in idents:
        by_bucket.setdefault(bucket_of(i, buckets), []).append(i)
    gone = set(next(v for v in by_bucket.values()))  # every identity of one train bucket, and split test
    kept = [r for r in rows if r[1] not in gone and r[2] == "train"]
    root = _shard_tree(tmp_path, kept, buckets)
    log = capsys.readouterr().err
    m = pq.read_table(root / "manifest.parquet").to_pandas()
    assert sorted(m["split"].unique()) == ["train"] and not set(m["identity"]) & gone
    assert not (root / "test").exists()  # the split's folder went with its shards
    for modality in ("face", "voice"):
        files = sorted((root / "train").glob(f"{modality}-*.parquet"))
        assert [f"train/{f.name}" for f in files] == sorted(set(m.loc[m["modality"] == modality, "shard"]))
        folder = pd.concat([pq.read_table(f, columns=["item"]).to_pandas() for f in files])
        assert sorted(folder["item"]) == sorted(m.loc[m["modality"] == modality, "item"])
    assert f"face-{bucket_of(next(iter(gone)), buckets):05d}.parquet" in log and "test/voice-" in log
