"""A batch file missing while what was built from it exists is made again, never 'Nothing to be done'.

Snakemake plans a job whose output is missing only when a target, or a job that runs, needs
that output. A batch job that fails leaves exactly that state: Snakemake deletes a job's
outputs before it runs (and a failed job's after), and records the failed job's parameters as
if it had finished. The workflow requests every batch file (rule all), so the next run makes it
again and re-runs what reads it. Snakemake on the tiny tree (empty media: a finished run is
faked with empty outputs and `--touch`; the one job run here fails on its empty input).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers import snakemake
from workflow_rules import SNAKEFILE, tiny_tree

OUT = "results/tiny"


def smk(root: Path, *args: str):
    return snakemake("-s", str(SNAKEFILE), "-d", str(root), "--configfile", str(root / "config.yaml"),
                     "--cores", "1", *args)


def plan(root: Path) -> dict[str, str]:
    """Snakemake's plan per output file (`--summary`): 'no update' or 'update pending'/..."""
    res = smk(root, "--summary")
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [ln.split("\t") for ln in res.stdout.splitlines() if "\t" in ln]
    i_file, i_plan = rows[0].index("output_file"), rows[0].index("plan")
    return {r[i_file]: r[i_plan] for r in rows[1:]}


def pending(root: Path) -> set[str]:
    return {f for f, what in plan(root).items() if what != "no update"}


@pytest.fixture
def finished(tmp_path):
    """The tiny tree after a (faked) complete run: every output present and up to date."""
    tiny_tree(tmp_path, methods=[])
    for f in plan(tmp_path):
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).touch()
    res = smk(tmp_path, "--touch", "--forceall")  # in job order, with Snakemake's record of each job
    assert res.returncode == 0, res.stderr[-3000:]
    assert not pending(tmp_path)
    return tmp_path


def face_shards(todo: set[str]) -> set[str]:
    return {f for f in todo if f.startswith(f"{OUT}/shards/") and Path(f).name.startswith("face-")}


def test_a_deleted_batch_file_is_made_again_with_what_reads_it(finished):
    batch = f"{OUT}/faces/id10001/000.parquet"
    (finished / batch).unlink()
    todo = pending(finished)
    assert batch in todo  # was 'no update': the run said "Nothing to be done" without it
    assert face_shards(todo) and f"{OUT}/shards/manifest.parquet" in todo
    assert not {f for f in todo if f"{OUT}/frames/" in f or "/voice-" in f}  # nothing it does not feed


def test_failed_batch_jobs_are_planned_again(finished):
    """A faces parameter changed, the faces jobs failed: the next run re-plans them and the face shards."""
    cfg_path = finished / "config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["faces"]["min_prob"] = 0.9
    cfg_path.write_text(yaml.safe_dump(cfg))
    batches = {f"{OUT}/faces/{i}/000.parquet" for i in ("id10000", "id10001", "id10002")}
    assert batches <= pending(finished)
    failed = smk(finished, "--keep-going")  # their frames files are empty placeholders: the jobs fail
    assert failed.returncode != 0 and "Error in rule faces" in failed.stderr + failed.stdout
    assert not any((finished / f).exists() for f in batches)
    todo = pending(finished)
    # before: nothing pending ("Nothing to be done"), and the face shards kept the old min_prob's faces
    assert batches <= todo and face_shards(todo)


def test_a_clip_touched_edited_or_replaced_plans_its_batch_again(finished):
    """A batch job has no input file per clip: its clips' sizes and times are a parameter
    (workflow/rules/common.smk, batch_media), so a changed clip re-plans its batch, and what reads
    it, and nothing of the other identities."""
    import os

    clip = finished / "data" / "videos" / "id10002" / "vidAAAAAAAA" / "00001.mp4"
    st = clip.stat()
    os.utime(clip, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched
    todo = pending(finished)
    batches = {f for f in todo if f.split("/")[2] in ("frames", "speech", "faces", "features")}
    assert batches == {f"{OUT}/{s}/id10002/000.parquet" for s in ("frames", "speech", "faces", "features")}
    assert face_shards(todo) and f"{OUT}/shards/manifest.parquet" in todo
    assert smk(finished, "--touch").returncode == 0 and not pending(finished)  # recorded as done
    clip.write_bytes(b"edited")  # same time, other size
    os.utime(clip, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert {f"{OUT}/frames/id10002/000.parquet", f"{OUT}/speech/id10002/000.parquet"} <= pending(finished)
