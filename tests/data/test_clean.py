
import yaml
from helpers import write_meta

from facevoice.cli import main as cli
from facevoice.data.inputs import bucket_of

STAGES = ("frames", "faces", "speech", "features")
BUCKETS = 4


def run_tree(tmp_path):
    """A run folder (config.yaml with relative paths, as under snakemake -d) whose outputs hold
    the current batches of id00001 and id00002 and what an earlier corpus left behind."""
    run = tmp_path / "run"
    for ident in ("id00001", "id00002"):
        d = run / "videos" / ident / "vid0000000A"
        d.mkdir(parents=True)
        (d / "00001.mp4").write_bytes(b"")
    write_meta(run, [("id00001", "Ann_A", "f", "USA", "dev"), ("id00002", "Bob_B", "m", "", "test")],
               [("Ann_A", 1), ("Bob_B", 4)])
    (run / "config.yaml").write_text(yaml.safe_dump({
        "dataset": "ds", "shards": {"buckets": BUCKETS},
        "input": {"layout": "videos", "videos": "videos", "meta": "vox1_meta.csv", "splits": "identity_splits.txt"}}))
    out = run / "results" / "ds"
    current, stale = [], []
    for stage in STAGES:
        for ident, part, into in (("id00001", "000", current), ("id00002", "000", current),
                                  ("id00003", "000", stale), ("id00001", "001", stale)):
            batch = out / stage / ident / f"{part}.parquet"
            batch.parent.mkdir(parents=True, exist_ok=True)
            batch.write_bytes(b"b" * 100)
            entry = out / "cache" / stage / ident / f"{part}.parquet"
            entry.parent.mkdir(parents=True, exist_ok=True)
            entry.write_bytes(b"b" * 100)  # as a job stores its output: a copy, and its checksum
            checksum = entry.with_name(entry.name + ".sha256")
            checksum.write_text("0" * 64)
            into += [batch, entry, checksum]
    for split, ident in (("train", "id00001"), ("test", "id00002")):
        for modality in ("face", "voice"):
            current.append(out / "shards" / split / f"{modality}-{bucket_of(ident, BUCKETS):05d}.parquet")
    other = next(b for b in range(BUCKETS) if b != bucket_of("id00001", BUCKETS))
    stale += [out / "shards" / "train" / f"face-{other:05d}.parquet", out / "shards" / "val" / "voice-00000.parquet"]
    others = [out / "shards" / "manifest.parquet", out / "clips.parquet", out / "logs" / "faces" / "id00003" / "000.log",
              out / "models" / "id00003" / "000.parquet", out / "faces" / "id00003" / "notes.txt",
              run / "results" / "other" / "faces" / "id00003" / "000.parquet"]
    for f in current + [s for s in stale if "shards" in s.parts] + others:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"s" * 10)
    return run, current + others, stale


def test_clean_lists_then_deletes_only_what_no_batch_uses(tmp_path, capsys):
    run, keep, stale = run_tree(tmp_path)
    assert cli(["clean", "-d", str(run)]) == 0  # a dry run
    lines = capsys.readouterr().out.splitlines()
    assert sorted(lines[:-1]) == sorted(str(p) for p in stale)
    # 8 batch files of 100 bytes, their 8 cache entries with 8 checksums of 64, 2 shards of 10
    total = 8 * 100 + 8 * (100 + 64) + 2 * 10
    assert lines[-1].startswith(f"{len(stale)} file(s), {total} bytes unused")
    assert all(p.exists() for p in stale + keep)

    assert cli(["clean", "--config", str(run / "config.yaml"), "-d", str(run), "--delete"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith(f"{len(stale)} file(s), {total} bytes removed")
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in keep)  # current batches, shards, manifest, logs, models, other datasets
    out = run / "results" / "ds"
    assert not (out / "cache" / "faces" / "id00003").exists() and not (out / "shards" / "val").exists()
    assert (out / "faces" / "id00003").is_dir()  # holds a file clean does not know

    assert cli(["clean", "-d", str(run), "--delete"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"0 file(s), 0 bytes removed under {out}"]


def test_clean_refuses_when_the_inputs_are_missing(tmp_path, capsys):
    run, keep, stale = run_tree(tmp_path)
    (run / "videos").rename(tmp_path / "moved")  # an unmounted data folder: every batch would look unused
    assert cli(["clean", "-d", str(run), "--delete"]) == 1
    assert "input.videos" in capsys.readouterr().err
    assert all(p.exists() for p in stale + keep)
