"""Batch jobs and their cache (facevoice.data.batch), with a small processor of our own."""

import hashlib
import json
import os
import shutil
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
    # the cache entry is a copy of the output (not a link to it), with its checksum beside it
    entry = tmp_path / "cache" / "id1" / "000.parquet"
    assert not os.path.samefile(entry, tmp_path / "out.parquet")
    assert entry.read_bytes() == (tmp_path / "out.parquet").read_bytes()
    assert (entry.parent / "000.parquet.sha256").read_text().strip() == hashlib.sha256(entry.read_bytes()).hexdigest()
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


def values_of(path):
    reader = BatchReader(path)
    return [reader.rows(r).column("value").to_pylist() for r in reader.records]


def forged_batch(tmp_path, values):
    """The bytes of a batch file with the keys of ``values`` and other rows (an edit in place)."""
    class Liar(Doubler):
        def process(self, xs):
            return [Result("ok", None, pa.table({"value": [-7, -7]}, schema=SCHEMA), {"x": x}) for x in xs]

    batch.run_job("double", items(values), Liar(), SCHEMA, tmp_path / "forged.parquet", {"params": {}},
                  None, "id1", "000", progress=False)
    return (tmp_path / "forged.parquet").read_bytes()


def overwrite_in_place(path, data):
    """Rewrite a file's bytes through its own inode (as an editor or ``open(path, 'r+b')`` does)."""
    inode = os.stat(path).st_ino
    with open(path, "r+b") as fh:
        fh.write(data)
        fh.truncate()
    assert os.stat(path).st_ino == inode


def test_an_output_edited_in_place_never_reaches_a_later_run(tmp_path, caplog):
    run(tmp_path, [1, 2], Doubler())
    overwrite_in_place(tmp_path / "out.parquet", forged_batch(tmp_path, [1, 2]))
    os.unlink(tmp_path / "out.parquet")  # --forcerun: Snakemake deletes the output first
    proc = Doubler()
    run(tmp_path, [1, 2], proc)
    assert values_of(tmp_path / "out.parquet") == [[2, 3], [4, 5]]
    assert proc.calls == []  # the cache entry was never touched: reused, and right
    assert "checksum" not in caplog.text


def test_a_cache_entry_edited_in_place_is_ignored_with_a_warning_then_replaced(tmp_path, caplog):
    run(tmp_path, [1, 2], Doubler())
    entry = tmp_path / "cache" / "id1" / "000.parquet"
    overwrite_in_place(entry, forged_batch(tmp_path, [1, 2]))
    os.unlink(tmp_path / "out.parquet")
    proc = Doubler()
    with caplog.at_level("WARNING", logger="facevoice"):
        run(tmp_path, [1, 2], proc)
    assert proc.calls == [[1], [2]]  # computed again, not taken from the edited entry
    assert values_of(tmp_path / "out.parquet") == [[2, 3], [4, 5]]
    warned = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and str(entry) in warned[0].getMessage() and "checksum" in warned[0].getMessage()
    # the entry was replaced by the new output: the next run reuses it, quietly
    caplog.clear()
    os.unlink(tmp_path / "out.parquet")
    again = Doubler()
    run(tmp_path, [1, 2], again)
    assert again.calls == [] and not [r for r in caplog.records if r.levelname == "WARNING"]


def test_cache_entries_take_the_umask_and_leave_no_temporary_file(tmp_path):
    import stat

    run(tmp_path, [1, 2], Doubler())
    folder = tmp_path / "cache" / "id1"
    current = os.umask(0)
    os.umask(current)
    assert sorted(p.name for p in folder.iterdir()) == ["000.parquet", "000.parquet.sha256"]
    for f in folder.iterdir():  # not mkstemp's 0600: a lab's shared cache stays readable
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~current


def test_a_cache_entry_without_its_checksum_is_ignored(tmp_path, caplog):
    run(tmp_path, [1, 2], Doubler())
    entry = tmp_path / "cache" / "id1" / "000.parquet"
    (entry.parent / "000.parquet.sha256").unlink()  # e.g. an entry of an older version (hard links)
    os.unlink(tmp_path / "out.parquet")
    proc = Doubler()
    run(tmp_path, [1, 2], proc)
    assert proc.calls == [[1], [2]]
    assert "no readable checksum" in caplog.text and str(entry) in caplog.text
    assert (entry.parent / "000.parquet.sha256").is_file()


def test_a_cache_that_cannot_be_written_is_a_warning_and_the_output_stays(tmp_path, caplog):
    # the stage's cache folder is a regular file: the identity's folder cannot be made
    (tmp_path / "cache").write_text("not a folder")
    recs = run(tmp_path, [1, 2], Doubler())
    assert [r["status"] for r in recs] == ["ok", "ok"]
    assert values_of(tmp_path / "out.parquet") == [[2, 3], [4, 5]]
    assert "not written" in caplog.text and "out.parquet is kept" in caplog.text
    # the folder exists but the entry cannot be put in place (a folder holds its name)
    caplog.clear()
    os.unlink(tmp_path / "cache")
    (tmp_path / "cache" / "id1" / "000.parquet" / "x").mkdir(parents=True)
    os.unlink(tmp_path / "out.parquet")
    run(tmp_path, [1, 2], Doubler())
    assert values_of(tmp_path / "out.parquet") == [[2, 3], [4, 5]]
    assert "not written" in caplog.text
    assert not [p for p in (tmp_path / "cache" / "id1").iterdir() if p.name.startswith(".")]  # no temporary left


def copy_package(tmp_path):
    root = tmp_path / "src" / "facevoice"
    shutil.copytree(REPO / "src" / "facevoice", root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_the_code_key_covers_the_package_modules_a_stage_imports(tmp_path):
    src = REPO / "src" / "facevoice"
    rel = lambda stage: {p.relative_to(src).as_posix() for p in batch.code_closure(src / "preprocess" / f"{stage}.py")}  # noqa: E731
    features = rel("features")
    # imported directly, through batch.py, inside a function of batch.py, and the packages' __init__
    assert {"preprocess/features.py", "common/io.py", "data/batch.py", "data/inputs.py", "data/mavceleb.py",
            "__init__.py", "preprocess/__init__.py"} <= features
    assert "data/records.py" in rel("faces")  # from facevoice.data.records import FACES
    assert not [f for f in features if f.startswith(("training/", "evaluation/"))]
    assert "preprocess/faces.py" not in features

    root = copy_package(tmp_path)
    stage = root / "preprocess" / "features.py"
    key = batch.code_key(stage, ["numpy"])
    assert key == batch.code_key(src / "preprocess" / "features.py", ["numpy"])  # the same sources, elsewhere
    (root / "evaluation" / "metrics.py").write_text("# not imported by features\n", encoding="utf-8")
    assert batch.code_key(stage, ["numpy"]) == key
    io_py = root / "common" / "io.py"
    io_py.write_bytes(io_py.read_bytes().replace(b"def numpy_values(", b"def numpy_values(  "))
    changed = batch.code_key(stage, ["numpy"])
    assert changed != key
    inputs = root / "data" / "inputs.py"  # imported only inside a function of batch.py
    inputs.write_bytes(inputs.read_bytes() + b"\n# edited\n")
    assert batch.code_key(stage, ["numpy"]) not in (key, changed)


def test_relative_imports_are_followed(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from . import b\n")
    (pkg / "sub" / "a.py").write_text("def f():\n    from ..c import g\n    return g\n")
    (pkg / "sub" / "b.py").write_text("")
    (pkg / "c.py").write_text("import pkg.d\n")
    (pkg / "d.py").write_text("")
    (pkg / "e.py").write_text("")
    names = [p.relative_to(pkg).as_posix() for p in batch.code_closure(pkg / "sub" / "a.py")]
    assert names == ["__init__.py", "c.py", "d.py", "sub/__init__.py", "sub/a.py", "sub/b.py"]


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

    def frames_job(root, out, cache=tmp_path / "cache"):
        source = json.dumps({"layout": "videos", "videos": str(root / "videos"), "video_extensions": [".mp4"],
                             "wav": None, "face_frames": None, "voices": None, "faces": None})
        res = subprocess.run([sys.executable, "-m", "facevoice.preprocess.frames", "--source", source, "--identity", "id1",
                              "--output", str(out), "--cache", str(cache), "--no-progress",
                              "--params", '{"fps": 1, "max_per_clip": 2}'], capture_output=True, text=True, env=env)
        assert res.returncode == 0, res.stderr
        return res.stderr

    assert "0 reused, 1 computed" in frames_job(tmp_path / "a", tmp_path / "f1.parquet")
    os.rename(tmp_path / "a", tmp_path / "b")
    assert "1 reused, 0 computed" in frames_job(tmp_path / "b", tmp_path / "f2.parquet")
    assert pq.read_table(tmp_path / "f1.parquet").equals(pq.read_table(tmp_path / "f2.parquet"))
    # an unwritable cache (a file where its folder should be): a warning, the job's output stays, rc 0
    log = frames_job(tmp_path / "b", tmp_path / "f3.parquet", cache=tmp_path / "f1.parquet")
    assert "0 reused, 1 computed" in log and "[frames] WARNING: cache entry" in log and "not written" in log
    assert pq.read_table(tmp_path / "f3.parquet").equals(pq.read_table(tmp_path / "f1.parquet"))
