import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from facevoice import faces, report, shards
from facevoice.io import atomic_path, read_parquet_meta, write_parquet
from facevoice.stage import write_rejected


def face_file(path, n, status="ok"):
    if status != "ok":
        return write_rejected(faces.SCHEMA, path, "faces", "no face in any frame", {})
    rows = {"frame_index": list(range(n)), "time_s": [float(i) for i in range(n)], "prob": [0.99] * n,
            "box": [[0, 0, 10, 10]] * n, "landmarks": [[float(j) for j in range(10)]] * n,
            "n_faces": [1] * n, "image": [bytes([i]) * 7 for i in range(n)]}
    write_parquet(pa.table(rows, schema=faces.SCHEMA), path, {"stage": "faces", "status": "ok"})


def feature_file(path, kinds, frames):
    rows = {"kind": [], "n_bins": [], "n_frames": [], "values": []}
    for bins, k in zip((257, 64, 13), kinds):
        rows["kind"].append(k)
        rows["n_bins"].append(bins)
        rows["n_frames"].append(frames)
        rows["values"].append(np.arange(bins * frames, dtype=np.float32).tolist())
    write_parquet(pa.table(rows), path, {"stage": "features", "status": "ok"})


def records(clips):
    return [{"clip": c, "identity": c.split("/")[0], "name": "N_" + c[:7], "split": "train", "gender": "f",
             "nationality": None, "age": None} for c in clips]


def test_face_shard_skips_rejects_and_manifest_indexes_rows(tmp_path):
    clips = ["id1/v/00001", "id1/v/00002", "id2/v/00001"]
    paths = [tmp_path / f"f{i}.parquet" for i in range(3)]
    face_file(paths[0], 3)
    face_file(paths[1], 0, status="rejected")
    face_file(paths[2], 2)
    root = tmp_path / "shards"
    out = root / "train" / "face-00000.parquet"
    meta = shards.write_shard([str(p) for p in paths], records(clips), str(out), "face", "train")
    assert meta["n_rows"] == 5
    t = pq.read_table(out)
    assert t.column("item").to_pylist() == [
        "id1/v/00001/face/0000", "id1/v/00001/face/0001", "id1/v/00001/face/0002",
        "id2/v/00001/face/0000", "id2/v/00001/face/0001"]
    assert pq.ParquetFile(out).num_row_groups == 2  # one row group per written clip: streamed
    assert read_parquet_meta(out)["clips"][2]["identity"] == "id2"

    vpaths = [tmp_path / f"v{i}.parquet" for i in range(3)]
    for p in vpaths:
        feature_file(p, ["spectrogram", "logmel"], frames=5)
    vout = root / "train" / "voice-00000.parquet"
    shards.write_shard([str(p) for p in vpaths], records(clips), str(vout), "voice", "train", ["spectrogram", "logmel"])
    v = pq.read_table(vout).to_pylist()
    assert [r["logmel_bins"] for r in v] == [64] * 3
    assert len(v[0]["logmel"]) == 64 * 5

    n = shards.write_manifest([str(out), str(vout)], str(root), str(root / "manifest.parquet"))
    m = pq.read_table(root / "manifest.parquet").to_pandas()
    assert n == len(m) == 8
    for rec in m.to_dict("records"):  # every manifest row points at its item
        row = pq.read_table(root / rec["shard"]).slice(rec["row"], 1).to_pylist()[0]
        assert row["item"] == rec["item"]
    assert set(m["modality"]) == {"face", "voice"} and m["nationality"].isna().all()


def test_manifest_refuses_an_item_in_two_shards(tmp_path):
    face_file(tmp_path / "a.parquet", 1)
    for i in range(2):
        shards.write_shard([str(tmp_path / "a.parquet")], records(["id1/v/00001"]),
                           str(tmp_path / f"s{i}.parquet"), "face", "train")
    with pytest.raises(ValueError, match="several shards"):
        shards.write_manifest([str(tmp_path / "s0.parquet"), str(tmp_path / "s1.parquet")], str(tmp_path),
                              str(tmp_path / "m.parquet"))
    assert not (tmp_path / "m.parquet").exists()


def test_voice_shard_names_missing_feature_kind(tmp_path):
    feature_file(tmp_path / "v.parquet", ["spectrogram"], frames=3)
    with pytest.raises(ValueError, match="mfcc"):
        shards.write_shard([str(tmp_path / "v.parquet")], records(["id1/v/00001"]), str(tmp_path / "s.parquet"),
                           "voice", "train", ["spectrogram", "mfcc"])
    assert not (tmp_path / "s.parquet").exists()  # atomic: nothing half-written is left


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
