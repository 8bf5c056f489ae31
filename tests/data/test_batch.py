"""Batch jobs and their cache (facevoice.data.batch), with a small processor of our own."""

import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import REPO, image_video, sample_face

from facevoice.data import batch
from facevoice.data.batch import BatchReader, Item, Result

SCHEMA = pa.schema([("value", pa.int64())])


class Doubler:
    """Rows [2x, 2x + 1] for input x; rejects negatives; remembers what it was asked."""

    def __init__(self, window=1, fail_on=None):
        self.window = window
        self.calls = []
        self.fail_on = fail_on

    def process(self, xs):
        self.calls.append(list(xs))
        if self.fail_on in xs:
            raise RuntimeError("killed")
        return [Result.rejected("negative", x=x) if x < 0 else
                Result("ok", None, pa.table({"value": [2 * x, 2 * x + 1]}, schema=SCHEMA), {"x": x}) for x in xs]


def items(values, version="v1"):
    return [Item(f"id1/v/{i:05d}", batch.digest("double", x, version), (lambda x=x: x)) for i, x in enumerate(values)]


def run(tmp_path, values, proc, version="v1", name="out.parquet"):
    return batch.run_job("double", items(values, version), proc, SCHEMA, tmp_path / name, {"params": {}},
                         tmp_path / "cache", "id1", "000", progress=False)


def test_windows_keep_order_and_the_cache_reuses_by_key(tmp_path):
    proc = Doubler(window=2)
    recs = run(tmp_path, [1, -2, 3, 4, 5], proc)
    assert proc.calls == [[1, -2], [3, 4], [5]]
    assert [r["status"] for r in recs] == ["ok", "rejected", "ok", "ok", "ok"]
    reader = BatchReader(tmp_path / "out.parquet")
    assert [reader.rows(r).column("value").to_pylist() for r in reader.records if r["rows"]] == \
        [[2, 3], [6, 7], [8, 9], [10, 11]]
    # the cache entry is the output itself (a hard link): no second copy on disk
    entry = tmp_path / "cache" / "id1" / "000.parquet"
    assert os.stat(entry).st_ino == os.stat(tmp_path / "out.parquet").st_ino
    # Snakemake deletes the output before the next run; one input changed, one added
    os.unlink(tmp_path / "out.parquet")
    again = Doubler(window=2)
    recs2 = run(tmp_path, [1, -2, 30, 4, 5, 6], again)
    assert again.calls == [[30, 6]]  # only the new inputs (rejections are cached too)
    assert [r.get("x") for r in recs2] == [1, -2, 30, 4, 5, 6]
    assert BatchReader(tmp_path / "out.parquet").rows(recs2[2]).column("value").to_pylist() == [60, 61]
    # another code version or parameters: another key, computed again
    os.unlink(tmp_path / "out.parquet")
    stale = entry.parent / ".000.parquet.x1y2z3.tmp"  # a job killed while storing its entry
    stale.write_bytes(b"")
    third = Doubler()
    run(tmp_path, [1], third, version="v2")
    assert third.calls == [[1]] and not stale.exists()


def test_a_killed_job_leaves_no_output_and_the_old_cache_entry(tmp_path):
    run(tmp_path, [1, 2], Doubler())
    entry = tmp_path / "cache" / "id1" / "000.parquet"
    before = entry.read_bytes()
    os.unlink(tmp_path / "out.parquet")
    with pytest.raises(RuntimeError, match="killed"):
        run(tmp_path, [1, 2, 3], Doubler(fail_on=3))
    assert not (tmp_path / "out.parquet").exists()
    assert entry.read_bytes() == before
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]  # no temporary file left


def test_an_unreadable_cache_entry_is_a_miss(tmp_path, caplog):
    entry = tmp_path / "cache" / "id1" / "000.parquet"
    entry.parent.mkdir(parents=True)
    entry.write_bytes(b"PAR1 half a file")
    proc = Doubler()
    recs = run(tmp_path, [1, 2], proc)
    assert proc.calls == [[1], [2]] and [r["status"] for r in recs] == ["ok", "ok"]
    assert "unreadable" in caplog.text
    pq.read_metadata(entry)  # replaced by the new, whole output


def test_memory_stays_bounded_when_one_clip_waits(tmp_path):
    """Cached clips behind one that waits for a full window are not all held in memory."""
    run(tmp_path, list(range(1, 201)), Doubler(window=1))
    os.unlink(tmp_path / "out.parquet")
    proc = Doubler(window=500)  # a window larger than the batch
    run(tmp_path, [1000] + list(range(2, 201)), proc)
    assert proc.calls == [[1000]]  # computed early, once the held results reached the bound
    assert batch.HELD_RESULTS < 200


def test_frames_job_reuses_a_clip_moved_to_another_folder(tmp_path):
    """Keys are content, not paths: a renamed data folder costs no decoding."""
    data = tmp_path / "a" / "videos" / "id1" / "v1"
    image_video(data / "00001.mp4", sample_face(), seconds=2.0)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}

    def frames_job(root, out):
        source = json.dumps({"layout": "videos", "videos": str(root / "videos"), "video_extensions": [".mp4"],
                             "wav": None, "face_frames": None, "voices": None, "faces": None})
        res = subprocess.run([sys.executable, "-m", "facevoice.preprocess.frames", "--source", source, "--identity", "id1",
                              "--output", str(out), "--cache", str(tmp_path / "cache"), "--no-progress",
                              "--params", '{"fps": 1, "max_per_clip": 2}'], capture_output=True, text=True, env=env)
        assert res.returncode == 0, res.stderr
        return res.stderr

    assert "0 reused, 1 computed" in frames_job(tmp_path / "a", tmp_path / "f1.parquet")
    os.rename(tmp_path / "a", tmp_path / "b")
    assert "1 reused, 0 computed" in frames_job(tmp_path / "b", tmp_path / "f2.parquet")
    assert pq.read_table(tmp_path / "f1.parquet").equals(pq.read_table(tmp_path / "f2.parquet"))
