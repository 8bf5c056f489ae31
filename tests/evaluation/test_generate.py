"""facevoice generate: the grid picture and report.json of a generative checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from facevoice.evaluation import generate as gen
from facevoice.preprocess.shards import MANIFEST_SCHEMA
from facevoice.testing import synthetic_shards
from facevoice.training import train as tr
from facevoice.training.methods import resolve

RUN = tr.run_settings({"seed": 0, "threads": 1}, progress=False)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A small synthetic corpus, a briefly trained voice2face and a briefly trained dje."""
    root = tmp_path_factory.mktemp("gen")
    manifest = synthetic_shards(root, identities={"train": 8, "val": 4, "test": 6}, clips=2, faces_per_clip=3,
                                   image_size=32, frames=(50, 80), kinds=("logmel",), seed=3)
    shards = manifest.parent
    v2f = tr.train("voice2face", manifest, shards, root / "v2f",
                   resolve("voice2face", "debug", sets={"stages.pretrain.epochs": 1, "stages.gan.epochs": 1,
                                                        "batches_per_epoch": 2}), RUN)
    dje = tr.train("dje", manifest, shards, root / "dje",
                   resolve("dje", "debug", {"epochs": 1, "batches_per_epoch": 2}), RUN)
    assert v2f["best"]["stage"] == "gan" and dje["method"] == "dje"
    return {"manifest": manifest, "shards": shards, "v2f": root / "v2f" / "model.pt", "dje": root / "dje" / "model.pt"}


def cli(setup, out, *extra, checkpoint=None, manifest=None):
    return gen.main(["--checkpoint", str(checkpoint or setup["v2f"]), "--manifest", str(manifest or setup["manifest"]),
                     "--shards-root", str(setup["shards"]), "--split", "test", "--train-split", "train",
                     "--out-dir", str(out), "--threads", "1", "--no-progress", *extra])


def test_cli_writes_the_grid_and_the_report(setup, tmp_path):
    out = tmp_path / "out"
    assert cli(setup, out, "--n-speakers", "4", "--seed", "5", "--n-trials", "200") == 0
    rep = json.loads((out / "report.json").read_text())
    # the picture: a real PNG, 4 speakers x (2 generated: each speaker has 2 voices; 2 real faces)
    with Image.open(out / "grid.png") as im:
        assert im.format == "PNG" and im.mode in ("RGB", "RGBA")
        assert im.size == gen.grid_size(4, 2 + 2) == (rep["grid"]["width"], rep["grid"]["height"])
        px = np.asarray(im.convert("RGB"))
    assert px.std() > 10  # something is drawn
    assert rep["grid"]["generated_per_speaker"] == 2 and rep["grid"]["real_per_speaker"] == 2
    m = pd.read_parquet(setup["manifest"])
    test = m[m["split"] == "test"]
    assert len(rep["grid"]["speakers"]) == 4 and set(rep["grid"]["speakers"]) <= set(test["identity"])
    # the report
    assert rep["format"] == "facevoice-generate/1" and rep["method"] == "voice2face" and rep["seed"] == 5
    assert rep["split"] == "test" and rep["train_split"] == "train"
    assert set(rep["code_version"]) == {"facevoice", "git"} and len(rep["checkpoint"]["sha256"]) == 64
    assert rep["counts"]["identities"] == 6 and rep["counts"]["voices"] == (test["modality"] == "voice").sum()
    assert rep["counts"]["faces"] == (test["modality"] == "face").sum() and rep["counts"]["train_identities"] == 8
    g = rep["gender"]
    assert g["available"] and 0 <= g["agreement_rate"] <= 1 and g["n_voices"] == rep["counts"]["voices"]
    genders = test.drop_duplicates("identity")["gender"]
    assert g["chance_rate"] == pytest.approx(genders.value_counts().max() / len(genders))  # 2 voices each
    assert sum(g["voices_per_gender"].values()) == g["n_voices"] and g["missing"]["identities"] == 0
    assert g["train_faces"] == 8 * 6 and 0 <= g["real_face_accuracy"] <= 1
    for stratum in ("U", "G"):
        r = rep["matching_1v2"][stratum]
        assert r["available"] and r["n_trials"] == 200 and 0 <= r["accuracy"] <= 1
        assert r["ci95"][0] <= r["accuracy"] <= r["ci95"][1]
    assert rep["matching_1v2"]["U"]["n_identities"] == 6
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # atomic writes leave no temporary files


def test_the_same_seed_gives_the_same_report(setup, tmp_path):
    a = gen.generate(setup["v2f"], setup["manifest"], setup["shards"], tmp_path / "a", n_speakers=3, seed=1,
                     n_trials=100, threads=1, progress=False)
    b = gen.generate(setup["v2f"], setup["manifest"], setup["shards"], tmp_path / "b", n_speakers=3, seed=1,
                     n_trials=100, threads=1, progress=False)
    assert a == b
    c = gen.generate(setup["v2f"], setup["manifest"], setup["shards"], tmp_path / "c", n_speakers=3, seed=2,
                     n_trials=100, threads=1, progress=False, voices_per_speaker=1)
    assert c["counts"]["voices"] == 6 and c["gender"]["n_voices"] == 6


def test_missing_gender_is_reported_never_guessed(setup, tmp_path):
    m = pd.read_parquet(setup["manifest"])
    test_ids = sorted(m.loc[m["split"] == "test", "identity"].unique())
    train_ids = sorted(m.loc[m["split"] == "train", "identity"].unique())
    gone = test_ids[:2] + train_ids[:1]
    m.loc[m["identity"].isin(gone), "gender"] = None
    path = tmp_path / "manifest.parquet"
    pq.write_table(pa.Table.from_pandas(m, schema=MANIFEST_SCHEMA, preserve_index=False), path)
    assert cli(setup, tmp_path / "out", "--n-trials", "50", manifest=path) == 0
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    g = rep["gender"]
    n_missing_voices = int(((m["identity"].isin(test_ids[:2])) & (m["modality"] == "voice")).sum())
    assert g["missing"]["identities"] == 2 and g["missing"]["identity_list"] == test_ids[:2]
    assert g["missing"]["voices"] == n_missing_voices == 4
    assert g["missing"]["train_identities"] == 1 and g["missing"]["train_identity_list"] == train_ids[:1]
    assert g["n_voices"] == rep["counts"]["voices"] - n_missing_voices and g["train_identities"] == 7
    assert rep["matching_1v2"]["G"]["excluded_missing_gender"] == 2
    assert rep["matching_1v2"]["G"]["n_identities"] <= 4 and rep["matching_1v2"]["U"]["n_identities"] == 6
    # no gender anywhere in the training split: unavailable, with the reason, nothing filled in
    m.loc[m["split"] == "train", "gender"] = None
    pq.write_table(pa.Table.from_pandas(m, schema=MANIFEST_SCHEMA, preserve_index=False), path)
    rep = gen.generate(setup["v2f"], path, setup["shards"], tmp_path / "none", n_trials=50, threads=1, progress=False)
    g = rep["gender"]
    assert not g["available"] and "gender value" in g["reason"] and "agreement_rate" not in g
    assert g["missing"]["train_identities"] == 8


def test_a_checkpoint_without_a_generator_is_a_clear_error(setup, tmp_path):
    with pytest.raises(SystemExit, match="checkpoint of method 'dje' has no face generator"):
        cli(setup, tmp_path / "out", checkpoint=setup["dje"])
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit, match="split 'nope' has no items"):
        gen.generate(setup["v2f"], setup["manifest"], setup["shards"], tmp_path / "x", split="nope", progress=False)


def test_matching_1v2_interval_over_speakers():
    rng = np.random.default_rng(0)
    owners = np.repeat(np.arange(10), 3)
    faces = rng.normal(size=(10, 16))[owners] + 0.05 * rng.normal(size=(30, 16))
    groups = {"U": [np.arange(10)]}
    perfect = gen.matching_1v2(faces, owners, faces, owners, groups, 300, seed=1, n_boot=200)["U"]
    assert perfect["accuracy"] == 1.0 and perfect["ci95"] == [1.0, 1.0]
    noise = gen.matching_1v2(rng.normal(size=(30, 16)), owners, faces, owners, groups, 300, seed=1, n_boot=200)["U"]
    lo, hi = noise["ci95"]
    assert lo < noise["accuracy"] < hi and lo < 0.5 < hi and hi - lo > 0.05  # speakers resampled: a real spread
