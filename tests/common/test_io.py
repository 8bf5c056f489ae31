"""Atomic writes: the files' modes follow the user's umask; every JSON and Parquet metadata is strict."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from facevoice.common.io import META_KEY, atomic_path, read_parquet_meta, write_json, write_parquet, write_text
from facevoice.data.batch import Result, batch_writer

WRITE_ALL = """
import sys, pyarrow as pa
from pathlib import Path
from facevoice.common.io import write_text, write_json, write_parquet
out = Path(sys.argv[1])
write_text(out / "a.txt", "x")
write_json(out / "b.json", {"x": 1})
write_parquet(pa.table({"x": [1]}), out / "c.parquet", {"x": 1})
"""


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_outputs_take_the_users_umask(tmp_path, umask, mode):
    """Not mkstemp's 0600: a lab's shared results folder stays readable, as with any other tool."""
    res = subprocess.run([sys.executable, "-c", WRITE_ALL, str(tmp_path)], capture_output=True, text=True,
                         preexec_fn=lambda: os.umask(umask))
    assert res.returncode == 0, res.stderr
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {"a.txt": mode, "b.json": mode, "c.parquet": mode}


def test_atomic_path_mode_in_this_process(tmp_path):
    target = tmp_path / "x.bin"
    with atomic_path(target) as tmp:
        assert stat.S_IMODE(tmp.stat().st_mode) == 0o600  # private while half-written
        tmp.write_bytes(b"whole")
    current = os.umask(0)
    os.umask(current)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~current


def test_json_and_parquet_metadata_are_strict(tmp_path):
    """NaN and infinity are not JSON: they are written as null everywhere, footer metadata included."""
    doc = {"val_auc": float("nan"), "inf": float("inf"), "nested": [1.5, float("-inf")]}
    write_json(tmp_path / "a.json", doc)
    write_parquet(pa.table({"x": [1]}), tmp_path / "e.parquet", doc)
    with batch_writer(tmp_path / "b.parquet", pa.schema([("v", pa.float32())]), {"stage": "t", "x": float("nan")}) as w:
        w.add("c1", "k1", Result.rejected("bad", total_s=float("nan")))
    raw = [(tmp_path / "a.json").read_text(),
           pq.read_schema(tmp_path / "e.parquet").metadata[META_KEY].decode(),
           pq.read_metadata(tmp_path / "b.parquet").metadata[META_KEY].decode()]
    for text in raw:
        assert "NaN" not in text and "Infinity" not in text
        json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert read_parquet_meta(tmp_path / "e.parquet") == {"val_auc": None, "inf": None, "nested": [1.5, None]}
    meta = json.loads(raw[2])
    assert meta["x"] is None and meta["clips"][0]["total_s"] is None


def test_write_text_replaces_whole(tmp_path):
    write_text(tmp_path / "t.txt", "one")
    write_text(tmp_path / "t.txt", "two")
    assert (tmp_path / "t.txt").read_text() == "two" and len(list(tmp_path.iterdir())) == 1
