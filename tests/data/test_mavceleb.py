"""The MAV-Celeb input layout: clips per identity per language, metadata, splits, malformed trees."""

from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import REPO
from mavceleb_trees import config_for, make_tree, snakemake_on

from facevoice.common.config import ConfigError
from facevoice.data import mavceleb
from facevoice.data.inputs import InputError, batch_clips, list_clips
from facevoice.data.layouts import SOURCE_KEYS, validate


def test_one_clip_per_utterance_with_the_frames_of_its_video(tmp_path):
    make_tree(tmp_path)
    df = list_clips(config_for(tmp_path))
    assert len(df) == 10
    row = df[df["clip"] == "id0001/English.vidA/00001"].iloc[0]
    assert row["speech_source"] == str(tmp_path / "voices/id0001/English/vidA/00001.wav")
    # every utterance of a video is paired with the same face folder: the video's frames
    assert row["frames_source"] == str(tmp_path / "faces/id0001/English/vidA")
    assert set(df.loc[df["video"] == "English.vidA", "frames_source"]) == {row["frames_source"]}
    assert df.groupby("identity")["language"].agg(lambda s: sorted(set(s))).to_dict() == {
        "id0001": ["English", "Urdu"], "id0002": ["English", "Urdu"], "id0003": ["Urdu"]}
    assert df.groupby("identity")["split"].first().to_dict() == {"id0001": "train", "id0002": "test",
                                                                   "id0003": "val"}
    # no metadata: gender is missing, never guessed; the name is the id
    assert df["gender"].isna().all() and df["nationality"].isna().all() and df["age"].isna().all()
    assert (df["name"] == df["identity"]).all()
    assert mavceleb.languages(df) == ["English", "Urdu"] and mavceleb.languages(df, "val") == ["Urdu"]
    assert mavceleb.release_path("id0001/English.vidA/00001") == "id0001/English/vidA/00001"


def test_a_batch_job_lists_the_same_clips(tmp_path):
    make_tree(tmp_path)
    cfg = config_for(tmp_path)
    df = list_clips(cfg)
    source = {k: cfg["input"][k] for k in SOURCE_KEYS}
    listed = batch_clips(source, "id0002", "id0002", "000", 256)
    sub = df[df["identity"] == "id0002"]
    assert [r[0] for r in listed] == sub["clip"].tolist()
    assert [r[1] for r in listed] == sub["frames_source"].tolist()


def test_the_same_video_id_under_two_languages_stays_two_videos(tmp_path):
    make_tree(tmp_path, {"id0001": {"English": {"vidA": 1}, "Urdu": {"vidA": 1}},
                         "id0002": {"English": {"vidB": 1}}, "id0003": {"Urdu": {"vidC": 1}}})
    df = list_clips(config_for(tmp_path))
    assert sorted(df.loc[df["identity"] == "id0001", "video"]) == ["English.vidA", "Urdu.vidA"]


def test_other_layouts_have_no_language(tmp_path):
    from helpers import write_meta

    (tmp_path / "videos" / "id00001" / "vid0000000A").mkdir(parents=True)
    (tmp_path / "videos" / "id00001" / "vid0000000A" / "00001.mp4").write_bytes(b"")
    write_meta(tmp_path, [("id00001", "Ann_A", "f", "USA", "dev")], [("Ann_A", 1)])
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["input"].update(videos=str(tmp_path / "videos"), meta=str(tmp_path / "vox1_meta.csv"),
                        splits=str(tmp_path / "identity_splits.txt"))
    df = list_clips(cfg)
    assert "language" in df.columns and df["language"].isna().all()


def test_metadata_gives_gender_and_name(tmp_path):
    make_tree(tmp_path)
    meta = tmp_path / "v2_meta.csv"
    meta.write_text("ids,name,gender\nid0001,Person A,Male\nid0002,Person B,Female\nid0003,Person C,\n")
    df = list_clips(config_for(tmp_path, str(meta)))
    first = df.drop_duplicates("identity").set_index("identity")
    assert first["gender"].tolist()[:2] == ["m", "f"] and pd.isna(first["gender"].iloc[2])  # empty: missing
    assert first["name"].tolist() == ["Person A", "Person B", "Person C"]


@pytest.mark.parametrize("text, match", [
    ("ids,name,gender\nid0001,A,Male\n", r"no row in .*\['id0002', 'id0003'\]"),
    ("ids,name,gender\nid0001,A,Robot\nid0002,B,m\nid0003,C,f\n", r"id0001 has gender 'Robot'"),
    ("VoxCeleb1 ID\tVGGFace1 ID\tGender\n", r"expected the MAV-Celeb header 'ids,name,gender'"),
])
def test_bad_metadata(tmp_path, text, match):
    make_tree(tmp_path)
    (tmp_path / "meta.csv").write_text(text)
    with pytest.raises(InputError, match=match):
        list_clips(config_for(tmp_path, str(tmp_path / "meta.csv")))


def test_identity_without_split(tmp_path):
    make_tree(tmp_path)
    (tmp_path / "identity_splits.txt").write_text("id0001 1\nid0002 4\n")
    with pytest.raises(InputError, match=r"no split of .*input.splits.*\['id0003'\]"):
        list_clips(config_for(tmp_path))


@pytest.mark.parametrize("stray, match", [
    # the challenge's flat test tree: languages where identities should be
    ("voices/English/00000.wav", r"English/00000.wav' is a .wav where a language folder was expected "
                                 r"\(this looks like the challenge's flat test tree"),
    # a video level missing
    ("voices/id0001/English/00000.wav", r"id0001/English/00000.wav' is a .wav where a video folder was expected;"),
    ("voices/id0001/Eng.lish/vidZ/00000.wav", r"language folder '.*Eng.lish' has a name outside"),
])
def test_malformed_tree_names_the_path(tmp_path, stray, match):
    make_tree(tmp_path)
    (tmp_path / stray).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / stray).write_bytes(b"")
    with pytest.raises(InputError, match=match):
        list_clips(config_for(tmp_path))


def test_faces_tree_of_another_release(tmp_path):
    make_tree(tmp_path, faces=False)
    with pytest.raises(InputError, match=r"input.faces .* holds none of the 3 identities of input.voices"):
        list_clips(config_for(tmp_path))


def test_missing_tree_names_the_key(tmp_path):
    make_tree(tmp_path)
    cfg = config_for(tmp_path)
    cfg["input"]["voices"] = str(tmp_path / "nowhere")
    with pytest.raises(InputError, match=r"voices tree not found: .*nowhere' \(config key 'input.voices'\)"):
        list_clips(cfg)


def test_schema_knows_the_layout(tmp_path):
    make_tree(tmp_path)
    cfg = config_for(tmp_path)
    validate(cfg)
    cfg["input"]["faces"] = None
    with pytest.raises(ConfigError, match=r"input.layout is 'mavceleb', so 'input.faces' must be set"):
        validate(cfg)


def test_draw_splits_is_seeded_and_identity_disjoint(tmp_path):
    ids = [f"id{i:04d}" for i in range(1, 21)]
    a = mavceleb.draw_splits(ids, val=3, test=4, seed=7)
    assert a == mavceleb.draw_splits(list(reversed(ids)), val=3, test=4, seed=7)
    assert a != mavceleb.draw_splits(ids, val=3, test=4, seed=8)
    assert pd.Series(a).value_counts().to_dict() == {"1": 13, "4": 4, "2": 3}
    from facevoice.data.inputs import read_splits

    splits = read_splits(mavceleb.write_splits(a, tmp_path / "identity_splits.txt"))
    assert sorted(splits) == ids and set(splits.values()) == {"train", "val", "test"}
    with pytest.raises(ValueError, match="keep one for training"):
        mavceleb.draw_splits(ids[:3], val=1, test=2)


def test_the_manifest_carries_each_clips_language(tmp_path):
    """manifest_from_clips takes the language of every clip from the clip table (per clip, not
    per identity: an identity speaks several), and leaves it null where the table has none."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from facevoice.common.io import write_parquet
    from facevoice.data.batch import Result, batch_writer
    from facevoice.data.inputs import shard_files
    from facevoice.preprocess import faces, shards

    make_tree(tmp_path)
    clips = list_clips(config_for(tmp_path))
    clips.loc[clips["clip"] == "id0003/Urdu.vidG/00001", "language"] = None  # missing stays missing
    write_parquet(pa.Table.from_pandas(clips, preserve_index=False), tmp_path / "clips.parquet", {})
    one_face = pa.table({"frame_index": [0], "time_s": [0.0], "prob": [0.99], "box": [[0.0] * 4],
                         "landmarks": [[0.0] * 10], "n_faces": [1], "image": [b"x"]}, schema=faces.SCHEMA)
    root = tmp_path / "shards"
    for rel in shard_files(clips, 1):
        split, modality = rel.split("/")[0], rel.split("/")[1].split("-")[0]
        if modality == "voice":  # face shards suffice here: the manifest indexes whatever the shards hold
            continue
        batch = tmp_path / f"{split}.parquet"
        with batch_writer(batch, faces.SCHEMA, {"stage": "faces"}) as w:
            for clip in clips.loc[clips["split"] == split, "clip"]:
                w.add(clip, clip, Result("ok", None, one_face))
        shards.write_shard([str(batch)], str(root / rel), "face", split)
        shards.write_shard([], str(root / rel.replace("face-", "voice-")), "voice", split, ["logmel"])
    shards.manifest_from_clips(str(tmp_path / "clips.parquet"), str(root), 1, str(root / "manifest.parquet"))
    m = pq.read_table(root / "manifest.parquet").to_pandas().set_index("clip")
    assert m.loc["id0001/English.vidA/00000", "language"] == "English"
    assert m.loc["id0001/Urdu.vidC/00001", "language"] == "Urdu"
    assert m.loc["id0003/Urdu.vidG/00000", "language"] == "Urdu"
    assert pd.isna(m.loc["id0003/Urdu.vidG/00001", "language"])


def test_miniature_tree_from_demo_media(demo_corpus, tmp_path):
    import soundfile as sf
    from PIL import Image

    from facevoice.data.inputs import read_meta as read_vox1_meta
    from facevoice.testing import mavceleb_tree

    demo_ids = sorted(read_vox1_meta(demo_corpus / "vox1_meta.csv"))[:2]
    root = mavceleb_tree(demo_corpus, tmp_path / "mav", identities=demo_ids)
    cfg = config_for(root, str(root / "v2_meta.csv"))
    cfg["input"]["splits"] = str(root / "identity_splits.txt")
    df = list_clips(cfg)
    videos = sum(len(list((demo_corpus / "videos" / i).iterdir())) for i in demo_ids)
    assert sorted(df["identity"].unique()) == ["id0001", "id0002"]
    assert len(df) == sum(len(list((demo_corpus / "videos" / i).glob("*/*.mp4"))) for i in demo_ids)
    assert df["video"].nunique() == videos
    # two videos per identity: one per language, every identity speaks both
    assert df.groupby("identity")["language"].nunique().tolist() == [2, 2]
    assert df["gender"].isin(["m", "f"]).all() and df["split"].eq("train").all()  # the demo's first ids train
    for rec in df.drop_duplicates("video").to_dict("records"):
        frames = sorted(Path(rec["frames_source"]).glob("*.jpg"))
        assert frames and frames[0].name == "000000025.jpg"
        with Image.open(frames[0]) as im:
            assert min(im.size) > 32
        audio, rate = sf.read(rec["speech_source"])
        assert rate == 16000 and audio.ndim == 1 and len(audio) > rate  # over a second of speech


def test_the_workflow_plans_a_mavceleb_run(tmp_path):
    """Snakemake plans the layout: one batch per identity, and a video without face frames is
    left to the frames stage to reject (no missing-input error)."""
    make_tree(tmp_path)
    import shutil

    shutil.rmtree(tmp_path / "faces" / "id0002" / "Urdu" / "vidF")
    cfg = config_for(tmp_path)
    cfg.update(dataset="mav", results="results")
    cfg["train"]["methods"], cfg["generate"]["methods"] = [], []
    res = snakemake_on(tmp_path, cfg, "-n", "--quiet", "rules")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    counts = dict(ln.split()[:2] for ln in res.stdout.splitlines() if ln.split()[:1] in (["frames"], ["speech"]))
    assert counts == {"frames": "3", "speech": "3"}
