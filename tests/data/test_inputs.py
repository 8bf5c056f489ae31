import pandas as pd
import pytest
import yaml
from helpers import REPO, snakemake, write_meta

from facevoice.data.inputs import InputError, list_clips, read_meta, read_splits


def make_tree(root, idents):
    for ident in idents:
        d = root / "videos" / ident / "vid0000000A"
        d.mkdir(parents=True, exist_ok=True)
        (d / "00001.mp4").write_bytes(b"")  # the listing only looks at names


def config_for(root, layout="videos"):
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["input"].update(layout=layout, videos=str(root / "videos"), meta=str(root / "vox1_meta.csv"),
                        splits=str(root / "identity_splits.txt"))
    cfg["results"] = str(root / "results")
    cfg["train"]["methods"] = []
    return cfg


META = [("id00001", "Ann_A", "f", "USA", "dev"), ("id00002", "Bob_B", "m", "", "test")]


def test_lists_clips_with_metadata(tmp_path):
    make_tree(tmp_path, ["id00001", "id00002"])
    write_meta(tmp_path, META, [("Ann_A", 1), ("Bob_B", 4)])
    df = list_clips(config_for(tmp_path))
    assert df["clip"].tolist() == ["id00001/vid0000000A/00001", "id00002/vid0000000A/00001"]
    assert df["split"].tolist() == ["train", "test"]
    assert df["nationality"].isna().tolist() == [False, True]  # missing stays missing
    assert df["age"].isna().all()


def test_identity_without_metadata_row(tmp_path):
    make_tree(tmp_path, ["id00001", "id00002", "id00003"])
    write_meta(tmp_path, META, [("Ann_A", 1), ("Bob_B", 4)])
    with pytest.raises(InputError, match=r"no row in .*id00003"):
        list_clips(config_for(tmp_path))


def test_duplicated_identity(tmp_path):
    write_meta(tmp_path, META + [("id00002", "Bob_C", "m", "", "test")], [])
    with pytest.raises(InputError, match=r"duplicated identity \['id00002'\]"):
        read_meta(tmp_path / "vox1_meta.csv")


def test_identity_in_two_splits(tmp_path):
    write_meta(tmp_path, META, [("Ann_A", 1), ("Bob_B", 4), ("Ann_A", 2)])
    with pytest.raises(InputError, match=r"Ann_A is in two splits \(train and val\)"):
        read_splits(tmp_path / "identity_splits.txt")


def test_a_seenheard_set_code_stops_the_run_naming_the_file_and_line(tmp_path):
    # set 3 (seen-heard test) used to map to a split nothing reads: its identities vanished
    make_tree(tmp_path, ["id00001", "id00002"])
    write_meta(tmp_path, META, [("Ann_A", 1), ("Bob_B", 3)])
    with pytest.raises(InputError, match=r"identity_splits.txt:2: identity Bob_B has set 3 \(seen-heard test\).*"
                                         r"Give it set 1 .* or 4"):
        list_clips(config_for(tmp_path))


def test_identity_without_split(tmp_path):
    make_tree(tmp_path, ["id00001", "id00002"])
    write_meta(tmp_path, META, [("Ann_A", 1)])
    with pytest.raises(InputError, match=r"no split.*Bob_B"):
        list_clips(config_for(tmp_path))


def test_missing_input_path(tmp_path):
    write_meta(tmp_path, META, [("Ann_A", 1), ("Bob_B", 4)])
    with pytest.raises(InputError, match=r"videos folder not found.*input.videos"):
        list_clips(config_for(tmp_path))


def test_voxceleb1_layout_pairs_wav_and_face_track(tmp_path):
    write_meta(tmp_path, META, [("Ann_A", 1), ("Bob_B", 4)])
    wav = tmp_path / "wav" / "id00001" / "abcdefghijk"
    wav.mkdir(parents=True)
    (wav / "00002.wav").write_bytes(b"")
    cfg = config_for(tmp_path, "voxceleb1")
    cfg["input"].update(wav=str(tmp_path / "wav"), face_frames=str(tmp_path / "faces"))
    (tmp_path / "faces").mkdir()
    df = list_clips(cfg)
    assert df.loc[0, "frames_source"].endswith("faces/Ann_A/1.6/abcdefghijk/2")
    assert df.loc[0, "speech_source"].endswith("00002.wav")


@pytest.mark.parametrize("case", ["no_row", "two_splits", "missing_path", "nothing_held_out"])
def test_snakemake_stops_before_any_job(tmp_path, case):
    make_tree(tmp_path, ["id00001", "id00002"])
    splits = [("Ann_A", 1), ("Bob_B", 4)] + ([("Bob_B", 1)] if case == "two_splits" else [])
    write_meta(tmp_path, META[:1] if case == "no_row" else META, splits)
    cfg = config_for(tmp_path)
    if case == "missing_path":
        cfg["input"]["videos"] = str(tmp_path / "elsewhere")
    if case == "nothing_held_out":  # one video per identity: no seen-heard speaker to generate from
        cfg["train"]["methods"] = ["voice2face"]
        cfg["generate"].update(methods=["voice2face"], split="seenheard")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    res = snakemake("-n", "--configfile", str(tmp_path / "c.yaml"))
    out = res.stdout + res.stderr
    assert res.returncode != 0
    expect = {"no_row": "no row in", "two_splits": "two splits", "missing_path": "not found",
              "nothing_held_out": "generate.split is seenheard, but no video is held out"}[case]
    assert expect in out
    assert not (tmp_path / "results").exists()


def test_batches_cut_an_identity_into_parts_that_jobs_list_alike(tmp_path):
    from facevoice.data.inputs import batch_clips, clips_digest
    from facevoice.data.layouts import SOURCE_KEYS

    for v in range(2):
        d = tmp_path / "videos" / "id00001" / f"vid000000{v}A"
        d.mkdir(parents=True)
        for c in range(3):
            (d / f"{c + 1:05d}.mp4").write_bytes(b"")
    make_tree(tmp_path, ["id00002"])
    write_meta(tmp_path, META, [("Ann_A", 1), ("Bob_B", 4)])
    cfg = config_for(tmp_path)
    cfg["batches"]["max_clips"] = 4
    df = list_clips(cfg)
    assert df.groupby("identity")["part"].apply(list).to_dict() == {
        "id00001": ["000"] * 4 + ["001"] * 2, "id00002": ["000"]}
    source = {k: cfg["input"].get(k) for k in SOURCE_KEYS}
    for (ident, part), group in df.groupby(["identity", "part"]):
        listed = batch_clips(source, ident, group["name"].iloc[0], part, 4)
        assert [r[0] for r in listed] == group["clip"].tolist()  # the job's listing is the planner's
        assert [r[2] for r in listed] == group["speech_source"].tolist()
        assert clips_digest([r[0] for r in listed]) == clips_digest(group["clip"].tolist())
    assert batch_clips(source, "id00001", "Ann_A", "002", 4) == []
    with pytest.raises(InputError, match=r"input.video_extensions"):  # named, never a default
        batch_clips({k: v for k, v in source.items() if k != "video_extensions"}, "id00001", "Ann_A", "000", 4)


def test_a_batch_job_refuses_a_tree_changed_since_planning(tmp_path):
    import json
    import subprocess
    import sys

    make_tree(tmp_path, ["id00001"])
    source = json.dumps({"layout": "videos", "videos": str(tmp_path / "videos"), "video_extensions": [".mp4"],
                         "wav": None, "face_frames": None, "voices": None, "faces": None})
    res = subprocess.run([sys.executable, "-m", "facevoice.preprocess.frames", "--source", source, "--identity", "id00001",
                          "--digest", "0000000000000000", "--output", str(tmp_path / "f.parquet"),
                          "--params", '{"fps": 1, "max_per_clip": 2}'], capture_output=True, text=True)
    assert res.returncode == 2 and "changed since the run was planned" in res.stderr
    assert not (tmp_path / "f.parquet").exists()


# --------------------------------------------------------------------------- seen-heard hold-out


def make_videos(root, ident, videos, clips=2):
    for v in videos:
        d = root / "videos" / ident / v
        d.mkdir(parents=True, exist_ok=True)
        for c in range(1, clips + 1):
            (d / f"{c:05d}.mp4").write_bytes(b"")


SEEN_META = META + [("id00003", "Cid_C", "m", "UK", "dev")]


def seen_tree(tmp_path):
    make_videos(tmp_path, "id00001", ["vidA0000000", "vidB0000000", "vidC0000000", "vidD0000000"])
    make_videos(tmp_path, "id00002", ["vidA0000000", "vidB0000000"])  # test identity: never held out
    make_videos(tmp_path, "id00003", ["vidA0000000"])  # one video: keeps it for training
    write_meta(tmp_path, SEEN_META, [("Ann_A", 1), ("Bob_B", 4), ("Cid_C", 1)])
    return config_for(tmp_path)


def _held(df):
    return sorted(set(df.loc[df["split"] == "seenheard", "identity"] + "/" + df.loc[df["split"] == "seenheard", "video"]))


@pytest.mark.parametrize("videos, n_held", [(1, 1), (2, 2), (0.5, 2), (0.1, 1), (9, 3), (0, 0)])
def test_seenheard_holds_out_videos_of_training_identities(tmp_path, videos, n_held):
    cfg = seen_tree(tmp_path)
    cfg["seenheard"] = {"videos": videos, "seed": 0}
    df = list_clips(cfg)
    held = _held(df)
    assert len(held) == n_held and all(h.startswith("id00001/") for h in held)
    # whole videos move: each held-out video's clips are all seenheard, and no training video is
    train_videos = set(df.loc[df["split"] == "train", "identity"] + "/" + df.loc[df["split"] == "train", "video"])
    assert not train_videos & set(held)
    assert "id00001" in set(df.loc[df["split"] == "train", "identity"])  # always keeps a training video
    assert set(df.loc[df["identity"] == "id00003", "split"]) == {"train"}
    assert set(df.loc[df["identity"] == "id00002", "split"]) == {"test"}


def test_seenheard_draw_follows_its_seed_and_not_other_identities(tmp_path):
    cfg = seen_tree(tmp_path)
    draws = set()
    for seed in range(6):
        cfg["seenheard"] = {"videos": 1, "seed": seed}
        draws.add(tuple(_held(list_clips(cfg))))
    assert len(draws) > 1  # the seed chooses
    cfg["seenheard"] = {"videos": 1, "seed": 3}
    before = _held(list_clips(cfg))
    make_videos(tmp_path, "id00004", ["vidA0000000", "vidB0000000"])
    write_meta(tmp_path, SEEN_META + [("id00004", "Dee_D", "f", "", "dev")],
               [("Ann_A", 1), ("Bob_B", 4), ("Cid_C", 1), ("Dee_D", 1)])
    after = _held(list_clips(cfg))
    assert [h for h in after if h.startswith("id00001/")] == before  # adding an identity moves nothing else


def test_seenheard_rejects_a_fractional_count(tmp_path):
    from facevoice.common.config import ConfigError, validate

    cfg = seen_tree(tmp_path)
    cfg["seenheard"] = {"videos": 1.5, "seed": 0}
    with pytest.raises(ConfigError, match=r"seenheard.videos.*whole number"):  # the schema's check
        validate(cfg)


def _seen_lists(folder, rows):
    folder.mkdir(exist_ok=True)
    lines = ["id,voice-speaker-id,face-speaker-id,label,voice-path,face-path"]
    lines += [f"{k},0,0,1,{v},{f}" for k, (v, f) in enumerate(rows, 1)]
    (folder / "veriflist_test_random_seenheard.txt").write_text("\n".join(lines) + "\n")


def test_seenheard_from_official_lists_holds_out_exactly_their_videos(tmp_path):
    cfg = seen_tree(tmp_path)
    pins = tmp_path / "pins"
    _seen_lists(pins, [("Ann_A/vidB0000000_0000001.wav", "Ann_A/vidC0000000/0000025.jpg"),
                       ("Bob_B/vidA0000000_0000001.wav", "Bob_B/vidA0000000/0000025.jpg")])  # not training
    cfg["evaluation"]["pins"] = {"dir": str(pins), "sets": ["seenheard"]}
    df = list_clips(cfg)
    assert _held(df) == ["id00001/vidB0000000", "id00001/vidC0000000"]
    assert set(df.loc[df["identity"] == "id00002", "split"]) == {"test"}


@pytest.mark.parametrize("rows, match", [
    (None, r"holds no veriflist_test_\*_seenheard.txt"),
    ([("Zed_Z/vidA0000000_0000001.wav", "Zed_Z/vidA0000000/0000025.jpg")], r"none of a training identity's"),
])
def test_seenheard_lists_that_match_nothing_stop_the_run(tmp_path, rows, match):
    cfg = seen_tree(tmp_path)
    pins = tmp_path / "pins"
    pins.mkdir()
    if rows:
        _seen_lists(pins, rows)
    cfg["evaluation"]["pins"] = {"dir": str(pins), "sets": ["unseenunheard", "seenheard"]}
    with pytest.raises(InputError, match=match):
        list_clips(cfg)


def test_an_identity_the_lists_name_with_every_video_is_left_out_of_seenheard(tmp_path):
    """Holding out every video of id00003 would leave it unseen in truth: it stays wholly in
    training, out of seen-heard, and the clip table and its summary line say so."""
    from facevoice.common.io import write_parquet
    from facevoice.data.inputs import SEENHEARD_DROPPED, heldout_summary

    cfg = seen_tree(tmp_path)
    pins = tmp_path / "pins"
    _seen_lists(pins, [("Ann_A/vidB0000000_0000001.wav", "Ann_A/vidC0000000/0000025.jpg"),
                       ("Cid_C/vidA0000000_0000001.wav", "Cid_C/vidA0000000/0000025.jpg")])  # Cid's only video
    cfg["evaluation"]["pins"] = {"dir": str(pins), "sets": ["seenheard"]}
    df = list_clips(cfg)
    assert _held(df) == ["id00001/vidB0000000", "id00001/vidC0000000"]
    assert set(df.loc[df["identity"] == "id00003", "split"]) == {"train"}
    assert df.attrs[SEENHEARD_DROPPED] == ["id00003"]
    line = heldout_summary(df)
    assert "4 clips of 2 videos of 1 training identities held out" in line
    assert "1 training identities left out of seen-heard" in line and "['id00003']" in line
    write_parquet(df, tmp_path / "clips.parquet")  # the clip table keeps the list for the data report
    assert heldout_summary(pd.read_parquet(tmp_path / "clips.parquet")) == line
    # when no identity keeps a training video, nothing is left to test seen-heard: the run stops
    _seen_lists(pins, [("Cid_C/vidA0000000_0000001.wav", "Cid_C/vidA0000000/0000025.jpg")])
    with pytest.raises(InputError, match=r"no seen-heard test remains"):
        list_clips(cfg)
