"""One run per results folder, whichever working folder a run starts from.

Two working folders A and B whose configs name the same absolute results folder (Snakemake
locks each working folder alone). The "other run" holding the folder is this test, holding
the lock through facevoice.common.lock as a run does: the run from B must stop before any
job, naming the holder; a dry run (-n) must not be stopped; once released, a run works and
leaves no lock, and a run that fails releases its lock too.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import yaml
from helpers import REPO, snakemake
from workflow_rules import tiny_tree

from facevoice.common.lock import LOCK_NAME, acquire


def run_from(folder: Path, *extra: str):
    return snakemake("-s", str(REPO / "Snakefile"), "-d", str(folder), "--configfile", str(folder / "config.yaml"),
                     "--cores", "1", *extra)


def test_a_second_run_on_the_same_results_is_refused_from_any_working_folder(tmp_path, monkeypatch):
    results = tmp_path / "results"
    for name in ("A", "B"):
        path = tiny_tree(tmp_path / name, methods=[])
        cfg = yaml.safe_load(path.read_text())
        cfg["results"] = str(results)
        path.write_text(yaml.safe_dump(cfg))
    a, b, out = tmp_path / "A", tmp_path / "B", results / "tiny"

    monkeypatch.chdir(a)
    held = acquire(out, command="snakemake --cores 1 (run A)")
    try:
        refused = run_from(b)
        said = refused.stdout + refused.stderr
        assert refused.returncode != 0, said[-3000:]
        for part in (f"results folder {out} is in use by another run", f"host {socket.gethostname()}",
                     f"pid {os.getpid()}", f"started {held.info['started']}", f"working folder {a}",
                     "(run A)", f"facevoice unlock {out}"):
            assert part in said, (part, said[-3000:])
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # stopped before its first job
        dry = run_from(b, "-n")  # planning is never stopped
        assert dry.returncode == 0 and "in use by another run" not in dry.stdout + dry.stderr, dry.stderr[-3000:]
    finally:
        held.release()

    clips = out / "clips.parquet"
    done = run_from(b, str(clips))
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert clips.is_file() and not (out / LOCK_NAME).exists()

    # a failing job (a folder where the table goes): the run ends in error and releases its lock
    clips.unlink()
    (clips / "in-the-way").mkdir(parents=True)
    failed = run_from(a, "--forcerun", "clip_table", "--until", "clip_table")
    assert failed.returncode != 0 and "IsADirectoryError" in failed.stdout + failed.stderr, failed.stderr[-3000:]
    assert not (out / LOCK_NAME).exists()
