"""Snakemake end to end on miniature trees of both input layouts, built from demo media.

Checks the outputs, the rejection of bad input, incremental re-runs (from Snakemake's own
plan, `--summary`, after each edit) and resuming a killed run.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import DEMO_CLIPS
from helpers import HANG_S, REPO, ffmpeg, snakemake

from facevoice.common.lock import LOCK_NAME
from facevoice.data.inputs import read_splits, shard_plan
from facevoice.demo.export import copy_videos_subset, export_voxceleb1_layout

pytestmark = pytest.mark.slow


def pick_identities(corpus: Path, per_split=None):
    """The first identities of each split (sorted by name), as VoxCeleb ids."""
    per_split = per_split or {"train": 1, "val": 1, "test": 1}
    splits = read_splits(corpus / "identity_splits.txt")
    meta = pd.read_csv(corpus / "vox1_meta.csv", sep="\t", dtype=str)
    by_name = dict(zip(meta["VGGFace1 ID"], meta["VoxCeleb1 ID"]))
    chosen = []
    for split, n in per_split.items():
        chosen += [by_name[name] for name in sorted(splits) if splits[name] == split][:n]
    return chosen


def write_config(root: Path, data: Path, layout: str = "videos", **overrides) -> Path:
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["dataset"] = "mini"
    cfg["results"] = "results"  # relative to the run folder (snakemake -d): short paths in --summary
    cfg["input"].update(layout=layout, meta=str(data / "vox1_meta.csv"), splits=str(data / "identity_splits.txt"))
    if layout == "videos":
        cfg["input"].update(videos=str(data / "videos"), wav=None, face_frames=None)
    else:
        cfg["input"].update(videos=None, wav=str(data / "wav"),
                            face_frames=str(data / "unzippedIntervalFaces" / "data"))
    cfg["frames"]["max_per_clip"] = 3
    cfg["train"]["methods"] = []  # training has its own tests; these trees are too small to train on
    cfg["shards"]["buckets"] = 2
    for dotted, value in overrides.items():
        node = cfg
        *parents, last = dotted.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run(root: Path, *extra: str, timeout: float = HANG_S) -> subprocess.CompletedProcess:
    res = snakemake("-s", str(REPO / "Snakefile"), "-d", str(root), "--configfile", str(root / "config.yaml"),
                    "--cores", "2", *extra, timeout=timeout)
    if res.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}")
    return res


def plan(root: Path) -> dict[str, str]:
    """Snakemake's plan per output file (`--summary`): 'no update' or 'update pending'/'...'."""
    out = run(root, "--summary").stdout
    lines = [ln.split("\t") for ln in out.splitlines() if "\t" in ln]
    header = lines[0]
    i_file, i_plan = header.index("output_file"), header.index("plan")
    return {row[i_file]: row[i_plan] for row in lines[1:]}


def pending(p: dict[str, str]) -> set[str]:
    return {f for f, what in p.items() if what != "no update"}


def stage_of(path: str) -> str:
    return Path(path).relative_to("results/mini").parts[0] if path.startswith("results/mini") else path


@pytest.fixture(scope="module")
def videos_run(demo_corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    ids = pick_identities(demo_corpus, {"train": 1, "val": 1, "test": 2})
    copy_videos_subset(demo_corpus, root / "data", ids)
    write_config(root, root / "data")
    run(root)
    return root, ids


def test_videos_layout_end_to_end(videos_run):
    root, ids = videos_run
    out = root / "results" / "mini"
    manifest = pq.read_table(out / "shards" / "manifest.parquet").to_pandas()
    assert set(manifest["identity"]) == set(ids)
    assert set(manifest["split"]) == {"train", "val", "test", "seenheard"}
    # seen-heard: one of the training identity's two videos is held out, whole, in its own shards
    video = manifest["clip"].str.rsplit("/", n=1).str[0]
    held, train = set(video[manifest["split"] == "seenheard"]), set(video[manifest["split"] == "train"])
    assert len(held) == 1 and len(train) == 1 and not held & train
    assert {i.split("/")[0] for i in held} == {ids[0]}
    assert set(manifest.loc[manifest["split"] == "seenheard", "shard"].str.split("/").str[0]) == {"seenheard"}
    for modality in ("face", "voice"):
        sub = manifest[manifest.modality == modality]
        assert sub["clip"].nunique() == 4 * DEMO_CLIPS, modality  # 4 identities, none rejected
    # every manifest row points at its item, and the features have the configured shapes
    for rec in manifest.groupby("modality").head(2).to_dict("records"):
        row = pq.read_table(out / "shards" / rec["shard"]).slice(rec["row"], 1).to_pylist()[0]
        assert row["item"] == rec["item"]
        if rec["modality"] == "voice":
            assert row["logmel_bins"] == 64 and len(row["logmel"]) == 64 * row["logmel_frames"]
            assert row["logmel_frames"] > 100  # over a second of speech at 10 ms hops
    # one batch file per identity and stage; whole identities in shards, by bucket
    assert len(list((out / "faces").glob("*/*.parquet"))) == len(ids)
    clips = pd.read_parquet(out / "clips.parquet")
    assert clips.groupby("split")["identity"].nunique().to_dict() == {"seenheard": 1, "test": 2, "train": 1, "val": 1}
    expected = {f"{split}/face-{b:05d}.parquet" for split, b in shard_plan(clips, 2)}
    assert {p.relative_to(out / "shards").as_posix() for p in (out / "shards").glob("*/face-*.parquet")} == expected
    for shard in expected:  # a shard holds exactly its bucket's identities
        idents = set(pq.read_table(out / "shards" / shard, columns=["identity"]).column(0).to_pylist())
        split, name = shard.split("/")
        assert idents == set(shard_plan(clips, 2)[(split, int(name[5:10]))])
    report = (out / "report" / "report.md").read_text()
    assert "Counts per split" in report and (out / "report" / "report.png").stat().st_size > 10_000
    assert "speech.method: webrtcvad" in report  # which filter kept the speech
    assert set(pd.read_csv(out / "report" / "speech.csv")["method"]) == {"webrtcvad"}
    assert pd.read_csv(out / "report" / "rejects.csv").empty


def test_voxceleb1_layout_end_to_end(demo_corpus, tmp_path):
    ids = pick_identities(demo_corpus)
    export_voxceleb1_layout(demo_corpus, tmp_path / "vox", identities=ids, fps=1.0)
    write_config(tmp_path, tmp_path / "vox", layout="voxceleb1")
    run(tmp_path)
    manifest = pq.read_table(tmp_path / "results" / "mini" / "shards" / "manifest.parquet").to_pandas()
    assert set(manifest["identity"]) == set(ids)
    counts = manifest.groupby("modality")["clip"].nunique()
    assert counts["face"] == counts["voice"] == 3 * DEMO_CLIPS  # 3 identities, none rejected


def computed_in(log: Path) -> tuple[int, int]:
    """(clips reused, clips computed) that a batch job's log reports."""
    import re

    m = re.search(r"(\d+) reused, (\d+) computed", log.read_text())
    return int(m.group(1)), int(m.group(2))


def test_touching_one_clip_reruns_its_batch_and_recomputes_only_that_clip(videos_run):
    root, ids = videos_run
    clip, other = sorted((root / "data" / "videos" / ids[0]).glob("*/*.mp4"))[:2]
    # An edit: new content (Snakemake ignores a newer mtime when the checksum is unchanged),
    # bytes no clip had before (another clip's media, remuxed with a tag of its own)
    edited = clip.with_name(".edited.mp4")
    subprocess.run([ffmpeg(), "-y", "-loglevel", "error", "-i", str(other), "-map", "0", "-c", "copy",
                    "-metadata", "comment=edited", str(edited)], check=True)
    os.replace(edited, clip)
    todo = pending(plan(root))
    batches = {f for f in todo if stage_of(f) in ("frames", "faces", "speech", "features")}
    assert batches == {f"results/mini/{s}/{ids[0]}/000.parquet" for s in ("frames", "faces", "speech", "features")}
    # its bucket's face and voice shards, of training and of its held-out (seen-heard) video
    shards = {f for f in todo if stage_of(f) == "shards" and not f.endswith("manifest.parquet")}
    assert len(shards) == 4 and {Path(f).name.split("-")[0] for f in shards} == {"face", "voice"}
    assert {Path(f).parent.name for f in shards} == {"train", "seenheard"}
    run(root)  # bring it up to date again for the next test
    assert not pending(plan(root))
    logs = root / "results" / "mini" / "logs"
    n = len(list((root / "data" / "videos" / ids[0]).glob("*/*.mp4")))
    for stage in ("frames", "faces", "speech", "features"):  # inside the jobs: that clip alone
        assert computed_in(logs / stage / ids[0] / "000.log") == (n - 1, 1), stage


def test_a_missing_batch_file_is_made_again_from_the_cache(videos_run):
    """A batch file gone while the shards built from it exist (Snakemake removes a failed job's
    outputs): the next run makes it again, the same bytes, every clip from the cache."""
    root, ids = videos_run
    rel = f"results/mini/faces/{ids[0]}/000.parquet"
    before = (root / rel).read_bytes()
    (root / rel).unlink()
    assert rel in pending(plan(root))  # was 'no update': "Nothing to be done", the file missing
    run(root)
    assert (root / rel).read_bytes() == before
    assert not pending(plan(root))
    n = len(list((root / "data" / "videos" / ids[0]).glob("*/*.mp4")))
    assert computed_in(root / "results" / "mini" / "logs" / "faces" / ids[0] / "000.log") == (n, 0)


def test_feature_parameter_reruns_features_and_shards_only(videos_run):
    root, _ = videos_run
    cfg_path = root / "config.yaml"
    original = cfg_path.read_text()
    cfg = yaml.safe_load(original)
    cfg["features"]["logmel"]["n_mels"] = 40
    cfg_path.write_text(yaml.safe_dump(cfg))
    try:
        stages = {stage_of(f) for f in pending(plan(root))}
        assert "features" in stages and "shards" in stages
        assert not stages & {"frames", "faces", "speech"}
    finally:
        cfg_path.write_text(original)
    assert not pending(plan(root))


def test_adding_an_identity_leaves_other_clips_alone(videos_run, demo_corpus, tmp_path):
    root, ids = videos_run
    extra = pick_identities(demo_corpus, {"train": 2})[1]
    assert extra not in ids
    added = tmp_path / "added"
    copy_videos_subset(demo_corpus, added, ids + [extra])
    data = root / "data"
    backup = {n: (data / n).read_text() for n in ("vox1_meta.csv", "identity_splits.txt")}
    shutil.copytree(added / "videos" / extra, data / "videos" / extra)
    for n in backup:
        shutil.copy(added / n, data / n)
    try:
        todo = pending(plan(root))
        batches = {f for f in todo if stage_of(f) in ("frames", "faces", "speech", "features")}
        assert batches == {f"results/mini/{s}/{extra}/000.parquet" for s in ("frames", "faces", "speech", "features")}
        # only the shards of the bucket it joins (one face, one voice; of train and of seen-heard)
        shards = {f for f in todo if stage_of(f) == "shards" and not f.endswith("manifest.parquet")}
        assert len(shards) == 4 and {Path(f).parent.name for f in shards} == {"train", "seenheard"}
    finally:
        shutil.rmtree(data / "videos" / extra)
        for n, text in backup.items():
            (data / n).write_text(text)


def make_bad_clips(corpus: Path, ident_dir: Path) -> dict[str, str]:
    """Bad variants of a demo clip, each in its own video folder; returns clip -> expected reason."""
    src = sorted(corpus.glob("videos/*/*/*.mp4"))[0]
    ff = ffmpeg()
    expect = {}

    def put(name: str) -> Path:
        p = ident_dir / name / "00001.mp4"
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    data = src.read_bytes()
    put("corruptAAAA").write_bytes(os.urandom(20_000))
    expect["corruptAAAA"] = "corrupt or truncated video"
    put("truncatedAA").write_bytes(data[: len(data) // 3])
    expect["truncatedAA"] = "corrupt or truncated video"
    subprocess.run([ff, "-y", "-loglevel", "error", "-i", str(src), "-c:v", "copy", "-an", str(put("noaudioAAAA"))], check=True)
    expect["noaudioAAAA"] = "no audio track"
    subprocess.run([ff, "-y", "-loglevel", "error", "-i", str(src), "-c:v", "copy", "-af", "volume=0",
                    "-c:a", "aac", str(put("silentAAAAA"))], check=True)
    expect["silentAAAAA"] = "speech filtered away"
    subprocess.run([ff, "-y", "-loglevel", "error", "-f", "lavfi", "-i", "color=c=gray:s=320x320:r=25:d=3",
                    "-i", str(src), "-map", "0:v", "-map", "1:a", "-shortest", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", "-c:a", "copy", str(put("nofaceAAAAA"))], check=True)
    expect["nofaceAAAAA"] = "no face in any frame"
    frame = ident_dir.parent / "frame.png"
    subprocess.run([ff, "-y", "-loglevel", "error", "-ss", "1", "-i", str(src), "-frames:v", "1", str(frame)], check=True)
    two = two_faces_image_from(frame, ident_dir.parent / "two.png")
    subprocess.run([ff, "-y", "-loglevel", "error", "-loop", "1", "-i", str(two), "-i", str(src), "-map", "0:v",
                    "-map", "1:a", "-shortest", "-r", "25", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    "-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2", "-c:a", "copy", str(put("twofacesAAA"))], check=True)
    expect["twofacesAAA"] = "several faces"
    frame.unlink()
    return expect


def two_faces_image_from(frame: Path, out: Path) -> Path:
    from PIL import Image

    im = Image.open(frame).convert("RGB")
    both = Image.new("RGB", (im.width * 2, im.height))
    both.paste(im, (0, 0))
    both.paste(im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (im.width, 0))
    both.save(out)
    return out


def test_bad_input_is_rejected_with_reasons_and_the_run_goes_on(demo_corpus, tmp_path):
    ids = pick_identities(demo_corpus, {"train": 1, "test": 1})
    data = tmp_path / "data"
    copy_videos_subset(demo_corpus, data, ids)
    expect = make_bad_clips(demo_corpus, data / "videos" / ids[0])
    write_config(tmp_path, data)
    run(tmp_path)
    out = tmp_path / "results" / "mini"
    rejects = pd.read_csv(out / "report" / "rejects.csv")
    for video, reason in expect.items():
        got = rejects[rejects["clip"].str.contains(f"/{video}/")]
        assert len(got), f"{video} was not rejected"
        assert got["reason"].str.contains(reason).any(), (video, got.to_dict("records"))
    # modality-level: a clip without audio still gives faces; a gray clip still gives speech
    manifest = pq.read_table(out / "shards" / "manifest.parquet").to_pandas()
    face_clips = set(manifest.loc[manifest.modality == "face", "clip"])
    voice_clips = set(manifest.loc[manifest.modality == "voice", "clip"])
    assert any("/noaudioAAAA/" in c for c in face_clips)
    assert any("/nofaceAAAAA/" in c for c in voice_clips)
    assert not any(v in c for c in face_clips | voice_clips for v in ("corruptAAAA", "truncatedAA"))
    assert "several faces" in (out / "report" / "report.md").read_text()


def test_voxceleb1_audio_problems_are_rejected(demo_corpus, tmp_path):
    ids = pick_identities(demo_corpus, {"train": 1})
    vox = tmp_path / "vox"
    export_voxceleb1_layout(demo_corpus, vox, identities=ids, fps=1.0)
    wavs = sorted((vox / "wav").glob("*/*/*.wav"))
    wavs[0].write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + os.urandom(3000))
    subprocess.run([ffmpeg(), "-y", "-loglevel", "error", "-i", str(wavs[1]), "-ar", "4000", str(wavs[1]) + ".tmp.wav"],
                   check=True)
    os.replace(str(wavs[1]) + ".tmp.wav", wavs[1])
    write_config(tmp_path, vox, layout="voxceleb1")
    run(tmp_path)
    rejects = pd.read_csv(tmp_path / "results" / "mini" / "report" / "rejects.csv")
    reasons = dict(zip(rejects["clip"], rejects["reason"]))
    key = lambda w: w.relative_to(vox / "wav").with_suffix("").as_posix()  # noqa: E731
    assert "unreadable" in reasons[key(wavs[0])]
    assert "below the minimum" in reasons[key(wavs[1])]


def test_killed_run_resumes_without_redoing_finished_jobs(demo_corpus, tmp_path):
    ids = pick_identities(demo_corpus, {"train": 1, "test": 1})
    copy_videos_subset(demo_corpus, tmp_path / "data", ids)
    write_config(tmp_path, tmp_path / "data")
    exe = Path(sys.executable).with_name("snakemake")
    proc = subprocess.Popen([str(exe), "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "--configfile",
                             str(tmp_path / "config.yaml"), "--cores", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    out = tmp_path / "results" / "mini"
    deadline = time.monotonic() + HANG_S  # a hang guard: the kill waits for 3 finished files, however slow

    def finished():  # final paths; a writer's temporary file is hidden (".name.tmp...")
        return [p for p in out.glob("*/*/*.parquet") if not p.name.startswith(".")]

    while proc.poll() is None and time.monotonic() < deadline and len(finished()) < 3:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole run, its running job included
    proc.wait()
    before = {p: p.stat().st_mtime_ns for p in finished()}
    assert len(before) >= 3
    for p in before:  # whatever is at a final path is a whole file
        pq.read_metadata(p)
    # kill -9 leaves Snakemake's lock behind; its message says to unlock, as a user would
    locked = snakemake("-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "--configfile",
                       str(tmp_path / "config.yaml"), "--cores", "2")
    assert locked.returncode != 0 and "--unlock" in locked.stdout + locked.stderr
    run(tmp_path, "--unlock")
    assert (out / LOCK_NAME).exists()  # the results folder's lock, left too: its holder is dead
    resumed = run(tmp_path)
    assert f"took over the lock of {out}" in resumed.stdout + resumed.stderr  # a warning, no stop
    assert not (out / LOCK_NAME).exists()  # released at the end of the run
    redone = [p for p, t in before.items() if p.stat().st_mtime_ns != t]
    assert len(redone) <= 1, redone  # at most the job that was running when killed (one core)
    for entry in out.glob("cache/*/*/*.parquet"):  # the cache holds whole files only
        pq.read_metadata(entry)
    assert not list(out.rglob(".*.tmp*")), "a killed job's temporary file was left behind"
    manifest = pq.read_table(out / "shards" / "manifest.parquet").to_pandas()
    assert manifest["clip"].nunique() == 2 * DEMO_CLIPS


def synthetic_embeddings(manifest: pd.DataFrame, path: Path, signal: float, seed: int) -> Path:
    """Embeddings written by hand: an identity vector plus noise, for faces and voices alike."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    idents = {i: rng.normal(size=16) for i in sorted(manifest["identity"].unique())}
    emb = [(signal * idents[i] + rng.normal(size=16)).astype("float32").tolist() for i in manifest["identity"]]
    table = pa.table({"id": manifest["item"].tolist(), "identity": manifest["identity"].tolist(),
                      "modality": manifest["modality"].tolist(), "embedding": emb})
    pq.write_table(table, path)
    return path


def test_evaluation_of_any_models_embeddings_and_what_reruns(videos_run):
    root, _ = videos_run
    out = root / "results" / "mini"
    manifest = pq.read_table(out / "shards" / "manifest.parquet").to_pandas()
    cfg_path = root / "config.yaml"
    original = cfg_path.read_text()
    cfg = yaml.safe_load(original)
    paths = {}
    for name, strength in (("handmade", 3.0), ("noise", 0.0)):
        paths[name] = {split: str(synthetic_embeddings(manifest[manifest.split == split],
                                                       root / f"{name}_{split}.parquet", strength, 7))
                       for split in ("val", "test")}
    cfg.setdefault("evaluation", {})["embeddings"] = {"handmade": paths["handmade"]}
    cfg["evaluation"]["bootstrap"] = {"n": 50, "seed": 0}
    cfg_path.write_text(yaml.safe_dump(cfg))
    try:
        run(root)
        res = __import__("json").loads((out / "evaluation" / "unseenunheard" / "handmade.json").read_text())
        assert set(res) >= {"verification", "matching", "retrieval"}
        assert res["verification"]["U"]["auc"] > 0.9  # a strong identity signal, written by hand
        assert res["verification"]["A"]["auc"] is None and res["verification"]["A"]["reason"]
        tables = (out / "comparison" / "unseenunheard" / "verification.md").read_text()
        assert "handmade" in tables and "reported" in tables
        # a table option changed: only the comparison is redone
        cfg["evaluation"]["compare"] = {"decimals": 1}
        cfg_path.write_text(yaml.safe_dump(cfg))
        assert {stage_of(f) for f in pending(plan(root))} == {"comparison"}
        # a method added: its evaluation and the comparison, not the other method's
        cfg["evaluation"]["embeddings"]["noise"] = paths["noise"]
        cfg_path.write_text(yaml.safe_dump(cfg))
        todo = pending(plan(root))
        assert {stage_of(f) for f in todo} == {"comparison", "evaluation"}
        assert not any("handmade" in f for f in todo)
    finally:
        cfg_path.write_text(original)


def test_a_protocol_declared_in_the_config_runs_under_its_name(videos_run):
    """A new protocol is one declaration in the config: female-only unseen-unheard (split test,
    gender f) gets its trial lists, results, tables and plots under its name, no rule edited."""
    import json

    from facevoice.evaluation.compare import OUTPUTS
    from facevoice.evaluation.protocol import read_trials

    root, _ = videos_run
    out = root / "results" / "mini"
    manifest = pq.read_table(out / "shards" / "manifest.parquet").to_pandas()
    test = manifest[manifest.split == "test"]
    female = set(test.loc[test["gender"] == "f", "item"])
    assert female  # (this tree's test identities are all female: test_trials checks what a filter leaves out)
    cfg_path = root / "config.yaml"
    original = cfg_path.read_text()
    cfg = yaml.safe_load(original)
    emb = str(synthetic_embeddings(test, root / "declared_test.parquet", 3.0, 7))
    cfg["evaluation"].update(
        embeddings={"handmade": {"test": emb}}, bootstrap={"n": 20, "seed": 0},
        protocols=["unseenunheard", "femaleonly"],
        declare=[{"name": "femaleonly", "title": "Female-only unseen-unheard", "split": "test",
                  "description": "female test identities", "filter": {"gender": "f"}}])
    cfg_path.write_text(yaml.safe_dump(cfg))
    try:
        run(root)
        retrieval = pq.read_table(out / "trials" / "femaleonly" / "retrieval.parquet").to_pandas()
        assert set(retrieval["item"]) == female
        meta = read_trials(out / "trials" / "femaleonly")["verification"][1]
        assert meta["protocol"] == "femaleonly" and meta["filter"] == {"gender": ["f"]} and meta["split"] == "test"
        res = json.loads((out / "evaluation" / "femaleonly" / "handmade.json").read_text())
        assert set(res) >= {"verification", "matching", "retrieval"}
        assert (out / "evaluation" / "femaleonly" / "handmade_roc.parquet").exists()
        for name in OUTPUTS:
            assert (out / "comparison" / "femaleonly" / name).stat().st_size > 0, name
        md = (out / "comparison" / "femaleonly" / "verification.md").read_text()
        assert md.startswith("### Female-only unseen-unheard: cross-modal verification")
        assert "reported" not in md.split("Ours:")[0]  # no paper measured this protocol
        both = pd.read_csv(out / "comparison" / "protocols.csv")
        assert list(both["method"]) == ["handmade"] and "femaleonly_auc_U" in both.columns
    finally:
        cfg_path.write_text(original)


def test_train_embed_evaluate_compare_through_snakemake(demo_corpus, tmp_path):
    """Preprocessing to comparison tables in one Snakemake run: two methods, debug profile."""
    import json

    ids = pick_identities(demo_corpus, {"train": 2, "val": 2, "test": 2})
    copy_videos_subset(demo_corpus, tmp_path / "data", ids)
    write_config(tmp_path, tmp_path / "data", **{
        "train.methods": ["dje", "chance"], "train.profile": "debug", "train.mem_mb": 1000,
        "generate.methods": [], "evaluation.bootstrap": {"n": 20, "seed": 0}})
    run(tmp_path)
    out = tmp_path / "results" / "mini"
    for method in ("dje", "chance"):
        info = json.loads((out / "train" / method / "run.json").read_text(),
                          parse_constant=lambda c: pytest.fail(f"run.json holds a bare {c}"))
        assert info["profile"] == "debug" and info["data"]["train_identities"] == 2
        # pick_identities keeps split order; seenheard: held-out videos of the training identities
        for split, idents in (("test", ids[4:6]), ("seenheard", ids[:2])):
            emb = pq.read_table(out / "embeddings" / method / f"{split}.parquet").to_pandas()
            assert set(emb["identity"]) == set(idents) and set(emb["modality"]) == {"face", "voice"}
        assert not (out / "embeddings" / method / "val.parquet").exists()  # model selection embeds val itself
        for name in ("unseenunheard", "seenheard"):
            res = json.loads((out / "evaluation" / name / f"{method}.json").read_text())
            assert 0.0 <= res["verification"]["U"]["auc"] <= 1.0
    assert not (out / "trials" / "val").exists()
    for folder in ("comparison/unseenunheard", "comparison/seenheard"):
        table = pd.read_csv(out / folder / "verification.csv")
        assert set(table.loc[table["kind"] == "ours", "method"]) == {"dje", "chance"}
        assert (out / folder / "roc.png").stat().st_size > 1000
    assert "Seen-heard: cross-modal verification" in (out / "comparison" / "seenheard" / "verification.md").read_text()
    both = pd.read_csv(out / "comparison" / "protocols.csv")
    assert list(both["method"]) == ["dje", "chance"]
    assert both[["unseenunheard_auc_U", "seenheard_auc_U"]].notna().all().all()
    assert not pending(plan(tmp_path))  # everything up to date: a second run does nothing
    # README's results block can be written from this run (scripts/readme_results.py: tests/test_readme_results.py)
    from test_readme_results import rr

    assert "| **dje** |" in rr.block(out, dirty_ok=True)
    check_report(tmp_path)


def report_json(html: str, name: str):
    """One of the JSON objects a Snakemake HTML report embeds: `var <name> = {...};` in its
    <script id="<name>">."""
    tag = f'<script id="{name}">'
    start = html.index(tag) + len(tag)
    body = html[start:html.index("</script>", start)].split("=", 1)[1].strip()
    return __import__("json").loads(body.removesuffix(";"))


def check_report(root: Path) -> None:
    """The report (`snakemake --report`) groups a run's outputs: one category per protocol, named by
    its title, one subcategory per task, every table an HTML page whose caption names its protocol."""
    import base64

    from facevoice.evaluation.protocols import PROTOCOLS

    run(root, "--report", str(root / "report.html"))
    html = (root / "report.html").read_text()
    categories, results = report_json(html, "categories"), report_json(html, "results")
    assert set(categories) == {p.title for p in PROTOCOLS.values()} | {"Training", "Data", "Protocols side by side"}
    for proto in PROTOCOLS.values():
        tasks = categories[proto.title]
        assert set(tasks) == {"Verification", "Matching", "Retrieval", "ROC", "All tables"}
        assert all(f.split("/")[-3:-1] == ["comparison", proto.name] for fs in tasks.values() for f in fs)
        assert {Path(f).suffix for f in tasks["ROC"]} == {".png"}
        for task in ("Verification", "Retrieval", "All tables"):
            (table,) = tasks[task]
            entry = results[table]
            assert entry["mime_type"] == "text/html" and proto.heading in entry["caption"], (task, entry)
            page = base64.b64decode(entry["data_uri"].split(",", 1)[1]).decode()
            assert "<table" in page and "dje" in page and proto.title in page
    (side,) = categories["Protocols side by side"].values()
    entry = results[side[0]]
    assert entry["mime_type"] == "text/html" and all(p.heading in entry["caption"] for p in PROTOCOLS.values())
    assert any("Training of dje" in results[f]["caption"] for fs in categories["Training"].values() for f in fs)
    assert not [f for f in results if f.endswith((".md", ".csv")) and "/comparison/" in f]  # pages, not sources
