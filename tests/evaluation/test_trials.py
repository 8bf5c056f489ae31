"""Invariants of the generated trial lists, their metadata, and the Learnable PINs import."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from facevoice.common.config import ConfigError, defaults, section
from facevoice.common.io import read_parquet_meta
from facevoice.evaluation import protocol
from facevoice.evaluation import trials as T
from facevoice.testing import synthetic_manifest

SIZES = section("evaluation", {"verification": {"n_trials": 300}, "matching": {"n_trials": 120}})


@pytest.fixture(scope="module")
def manifest():
    return synthetic_manifest({"train": 5, "val": 6, "test": 14}, with_age=True, seed=3)


@pytest.fixture(scope="module")
def lists(manifest):
    return T.generate(manifest, "test", 11, SIZES)


def _attrs(manifest):
    rows = manifest[manifest["split"] == "test"]
    per = rows.groupby("identity").agg(gender=("gender", "first"), nationality=("nationality", "first"),
                                       age=("age", "median"))
    per["age_band"] = np.digitize(per["age"], defaults("evaluation")["age_cuts"])
    return per


def test_only_test_identities_and_items(manifest, lists):
    test = manifest[manifest["split"] == "test"]
    items = dict(zip(test["item"], test["modality"]))
    ident = dict(zip(test["item"], test["identity"]))
    v = lists["verification"][0]
    assert set(v["face"]) <= {i for i, m in items.items() if m == "face"}
    assert set(v["voice"]) <= {i for i, m in items.items() if m == "voice"}
    assert (v["face"].map(ident) == v["face_identity"]).all()
    assert (v["voice"].map(ident) == v["voice_identity"]).all()
    m = lists["matching"][0]
    for _, r in m.iterrows():
        pmod, cmod = ("face", "voice") if r["direction"] == "F-V" else ("voice", "face")
        assert items[r["probe"]] == pmod and ident[r["probe"]] == r["probe_identity"]
        assert all(items[c] == cmod for c in r["candidates"])
        assert [ident[c] for c in r["candidates"]] == list(r["candidate_identities"])
    r = lists["retrieval"][0]
    assert sorted(r["item"]) == sorted(test["item"])


def test_verification_balanced_labels_and_strata(manifest, lists):
    v, meta = lists["verification"]
    attrs = _attrs(manifest)
    assert (v["label"] == (v["face_identity"] == v["voice_identity"]).astype(int)).all()
    for s in ("U", "G", "N", "A", "GNA"):
        sub = v[v["stratum"] == s]
        assert meta["strata"][s]["available"], s
        assert len(sub) == meta["strata"][s]["n_trials"] > 0
        assert (sub["label"] == 1).sum() == (sub["label"] == 0).sum()
        assert list(sub["trial"]) == list(range(len(sub)))
        assert not sub.duplicated(["face", "voice"]).any()
        neg = sub[sub["label"] == 0]
        cols = {"G": ["gender"], "N": ["nationality"], "A": ["age_band"],
                "GNA": ["gender", "nationality", "age_band"], "U": []}[s]
        for c in cols:
            a = attrs.loc[neg["face_identity"], c].to_numpy()
            b = attrs.loc[neg["voice_identity"], c].to_numpy()
            assert (a == b).all(), (s, c)
    assert len(v[v["stratum"] == "U"]) == 300


def test_matching_constraints(manifest, lists):
    m, meta = lists["matching"]
    attrs = _attrs(manifest)
    for key, st in meta["strata"].items():
        d, s, n = key.split("/")
        sub = m[(m["direction"] == d) & (m["stratum"] == s) & (m["n_candidates"] == int(n))]
        assert st["available"] and len(sub) == st["n_trials"] == 120, key
        assert not sub["probe"].map(str).str.cat(sub["candidates"].map(lambda c: "|".join(sorted(c))),
                                                 sep="#").duplicated().any()
        for _, r in sub.iterrows():
            ids = list(r["candidate_identities"])
            assert len(ids) == int(n) == len(set(ids))  # distinct identities
            assert ids[r["target"]] == r["probe_identity"]
            assert ids.count(r["probe_identity"]) == 1
            for c in {"G": ["gender"], "N": ["nationality"], "GN": ["gender", "nationality"],
                      "U": []}[s]:
                assert (attrs.loc[ids, c] == attrs.loc[r["probe_identity"], c]).all()
    u2 = m[(m["stratum"] == "U") & (m["n_candidates"] == 2)]
    # the true candidate's position is not fixed
    assert 0.3 < u2["target"].mean() < 0.7
    assert set(m[m["stratum"] == "U"]["n_candidates"]) == set(range(2, 11))
    assert set(m[m["stratum"] != "U"]["n_candidates"]) == {2}


def test_retrieval_list(manifest, lists):
    r, meta = lists["retrieval"]
    assert r["probe"].all()
    assert meta["strata"]["F-V"]["gallery_size"] == (r["modality"] == "voice").sum()
    capped = T.generate(manifest, "test", 11, {**SIZES, "retrieval": {"max_probes": 10}})["retrieval"][0]
    assert capped.groupby("modality")["probe"].sum().tolist() == [10, 10]


def test_same_seed_same_lists_other_seed_different(manifest, lists):
    again = T.generate(manifest.sample(frac=1.0, random_state=0), "test", 11, SIZES)  # row order shuffled
    other = T.generate(manifest, "test", 12, SIZES)
    for kind in ("verification", "matching"):
        a, b, c = lists[kind][0], again[kind][0], other[kind][0]
        pd.testing.assert_frame_equal(a, b)
        assert not a.equals(c)
    assert lists["verification"][1]["manifest"]["sha256"] == again["verification"][1]["manifest"]["sha256"]


def test_changing_one_size_keeps_other_lists(manifest, lists):
    bigger = T.generate(manifest, "test", 11, section("evaluation", {"verification": {"n_trials": 300},
                                                                     "matching": {"n_trials": 60}}))
    pd.testing.assert_frame_equal(lists["verification"][0], bigger["verification"][0])


def test_missing_age_is_unavailable_not_filled(manifest):
    no_age = manifest.assign(age=np.nan)
    v, meta = T.generate(no_age, "test", 1, SIZES)["verification"]
    for s in ("A", "GNA"):
        assert not meta["strata"][s]["available"]
        assert "age" in meta["strata"][s]["reason"]
        assert (v["stratum"] == s).sum() == 0
    assert meta["strata"]["G"]["available"]


def test_missing_nationality_excludes_those_identities(manifest):
    man = manifest.copy()
    test_ids = sorted(man.loc[man["split"] == "test", "identity"].unique())
    man.loc[man["identity"].isin(test_ids[:3]), "nationality"] = None
    v, meta = T.generate(man, "test", 2, SIZES)["verification"]
    assert meta["strata"]["N"]["excluded_missing_metadata"] == 3
    n = v[v["stratum"].isin(["N", "GNA"])]
    assert not (set(n["face_identity"]) | set(n["voice_identity"])) & set(test_ids[:3])
    u = v[v["stratum"] == "U"]
    assert set(test_ids[:3]) <= set(u["face_identity"])


def test_too_few_identities_for_large_n():
    small = synthetic_manifest({"test": 6}, seed=1)
    m, meta = T.generate(small, "test", 1, SIZES)["matching"]
    assert meta["strata"]["F-V/U/6"]["available"]
    assert not meta["strata"]["F-V/U/7"]["available"]
    assert "7" in meta["strata"]["F-V/U/7"]["reason"]
    assert (m["n_candidates"] > 6).sum() == 0


def test_a_split_of_one_identity_says_so():
    man = synthetic_manifest({"train": 4, "test": 1})
    meta = T.generate(man, "test", 1, SIZES)["verification"][1]
    assert meta["strata"]["U"]["reason"] == "the split has 1 identity with both a face and a voice item; this needs 2"


def test_empty_split_is_unavailable():
    man = synthetic_manifest({"train": 4, "test": 4})
    lists = T.generate(man, "val", 1, SIZES)
    assert all(not s["available"] for s in lists["verification"][1]["strata"].values())


def test_identity_in_two_splits_is_refused(manifest):
    bad = manifest.copy()
    first_test = bad.index[bad["split"] == "test"][0]
    bad.loc[first_test, "split"] = "train"
    with pytest.raises(ValueError, match="other splits"):
        T.generate(bad, "test", 1, SIZES)


def test_metadata_and_files(manifest, tmp_path):
    mpath = tmp_path / "manifest.parquet"
    manifest.to_parquet(mpath)
    cfg = tmp_path / "config.yaml"
    cfg.write_text("evaluation:\n  seed: 5\n  verification: {n_trials: 100}\n  matching: {n_trials: 20, n_max: 7}\n")
    assert T.main(["--manifest", str(mpath), "--split", "test", "--out", str(tmp_path / "t"),
                   "--config", str(cfg), "--params", '{"matching": {"n_max": 4}}']) == 0
    for kind in protocol.KINDS:
        meta = read_parquet_meta(tmp_path / "t" / f"{kind}.parquet")
        assert meta["format"] == protocol.FORMAT and meta["kind"] == kind
        assert meta["seed"] == 5 and meta["split"] == "test"
        assert set(meta["code_version"]) == {"facevoice", "git"}
        rows = manifest[manifest["split"] == "test"]
        assert meta["manifest"]["sha256"] == T.manifest_sha256(rows)[0]
        assert meta["manifest"]["rows"] == len(rows)
    lists = protocol.read_trials(tmp_path / "t")
    assert set(lists["matching"][0]["n_candidates"]) == {2, 3, 4}
    assert (tmp_path / "t" / "summary.json").exists()
    # the hash follows the rows used
    rows = manifest[manifest["split"] == "test"].copy()
    h0 = T.manifest_sha256(rows)[0]
    rows.loc[rows.index[0], "gender"] = "f" if rows["gender"].iloc[0] == "m" else "m"
    assert T.manifest_sha256(rows)[0] != h0


def test_settings_come_complete_from_the_schema(manifest, tmp_path):
    """No defaults of its own: the lists need the complete evaluation: section, which
    load_config completes with the schema's defaults (and checks)."""
    with pytest.raises(ConfigError, match=r"'evaluation.age_cuts' is missing"):
        T.generate(manifest, "test", 1, {k: v for k, v in SIZES.items() if k != "age_cuts"})
    assert protocol.load_config(None) == defaults("evaluation")
    over = protocol.load_config(None, '{"matching": {"n_max": 4}}')
    assert over["matching"] == {**defaults("evaluation")["matching"], "n_max": 4}
    bad = tmp_path / "bad.yaml"
    bad.write_text("evaluation:\n  matching: {n_max: 1}\n")
    with pytest.raises(ConfigError, match=r"evaluation.matching.n_max"):
        protocol.load_config(bad)


def _write_pins(tmp_path, manifest):
    test = manifest[manifest["split"] == "test"]
    names = test.drop_duplicates("identity").set_index("identity")["name"]
    ids = list(names.index)
    lines = ["id,voice-speaker-id,face-speaker-id,label,voice-path,face-path"]
    k = 0
    for i, a in enumerate(ids):
        b = ids[(i + 1) % len(ids)]
        for label, f in ((1, a), (0, b)):
            k += 1
            lines.append(f"{k},{i},{ids.index(f)},{label},{names[a]}/vid00_0000002.wav,"
                         f"{names[f]}/vid01/00{k:05d}.jpg")
    lines.append(f"{k + 1},0,0,1,Nobody_Here/xyz_0000001.wav,Nobody_Here/xyz/0000025.jpg")
    lines.append(f"{k + 2},0,0,1,{names[ids[0]]}/vid09_0000001.wav,{names[ids[0]]}/vid00/0000025.jpg")
    (tmp_path / "veriflist_test_random_unseenunheard.txt").write_text("\n".join(lines) + "\n")
    return ids


def test_import_pins(manifest, tmp_path, capsys):
    ids = _write_pins(tmp_path, manifest)
    v, meta = T.import_pins(tmp_path, manifest, "test", strata=["U"])
    assert f"imported {2 * len(ids)} of {2 * len(ids) + 2} rows" in capsys.readouterr().err
    assert meta["source"] == "learnable-pins"
    u = v[v["stratum"] == "U"]
    assert len(u) == 2 * len(ids)
    assert (u["label"] == (u["face_identity"] == u["voice_identity"]).astype(int)).all()
    assert u["voice"].str.endswith("/vid00/00002/voice").all()
    assert u["face"].str.contains("/vid01/").all()
    dropped = meta["pins"]["files"]["U"]["dropped"]
    assert dropped == {"name not in split": 1, "voice clip not in manifest": 1}
    assert list(meta["strata"]) == ["U"]
    again, _ = T.import_pins(tmp_path, manifest, "test", strata=["U"])
    pd.testing.assert_frame_equal(v, again)


def test_import_pins_counts_the_lists_negatives_of_different_genders(manifest, tmp_path, capsys):
    """The official G lists hold some negatives whose identities' genders differ in the
    metadata: the import keeps them (the lists are the protocol), counts them per list and
    says so in the G stratum's note."""
    ids = _write_pins(tmp_path, manifest)
    src = tmp_path / "veriflist_test_random_unseenunheard.txt"
    (tmp_path / "veriflist_test_G_unseenunheard.txt").write_bytes(src.read_bytes())
    m = manifest.copy()  # one identity's gender as its neighbour's, one unknown (never counted)
    m.loc[m["identity"] == ids[1], "gender"] = m.loc[m["identity"] == ids[0], "gender"].iloc[0]
    m.loc[m["identity"] == ids[3], "gender"] = None
    gender = m.drop_duplicates("identity").set_index("identity")["gender"]
    # the negatives _write_pins writes: face of the next identity, voice of this one
    pairs = [(gender[a], gender[ids[(i + 1) % len(ids)]]) for i, a in enumerate(ids)]
    expected = sum(pd.notna(x) and pd.notna(y) and x != y for x, y in pairs)
    assert 0 < expected < len(ids) - 1  # same-gender and unknown pairs too: the count is a real test
    v, meta = T.import_pins(tmp_path, m, "test", strata=["U", "G"])
    files = meta["pins"]["files"]
    assert files["G"]["cross_gender_negatives"] == files["U"]["cross_gender_negatives"] == expected
    g = v[v["stratum"] == "G"]
    assert len(g) == 2 * len(ids)  # kept: the trials are the official list's
    assert f"{expected} of the list's negatives pair identities of different genders" in meta["strata"]["G"]["note"]
    assert "genders" not in (meta["strata"]["U"]["note"] or "")  # U asks nothing of gender


def test_import_pins_stops_on_a_missing_list_or_one_that_matches_nothing(manifest, tmp_path):
    _write_pins(tmp_path, manifest)
    with pytest.raises(ValueError, match=r"veriflist_test_G_unseenunheard.txt not found"):
        T.import_pins(tmp_path, manifest, "test", strata=["U", "G"])
    with pytest.raises(ValueError, match=r"veriflist_test_random_seenheard.txt not found"):
        T.import_pins(tmp_path, manifest, "test", "seenheard", strata=["U"])
    # the lists of another dataset: no name resolves
    with pytest.raises(ValueError, match=r"no row of .* resolved .*name not in split"):
        T.import_pins(tmp_path, manifest, "val", strata=["U"])


def _with_seenheard(manifest):
    """The manifest with video vid01 of every training identity held out (split seenheard)."""
    m = manifest.copy()
    held = (m["split"] == "train") & m["clip"].str.contains("/vid01/")
    m.loc[held, "split"] = "seenheard"
    return m


def test_seenheard_lists_use_held_out_videos_of_training_identities(manifest):
    m = _with_seenheard(manifest)
    lists = T.generate(m, "seenheard", 5, SIZES)
    v = lists["verification"][0]
    train_ids = set(manifest.loc[manifest["split"] == "train", "identity"])
    assert len(v) and set(v["face_identity"]) | set(v["voice_identity"]) <= train_ids
    items = set(v["face"]) | set(v["voice"])
    assert all("/vid01/" in i for i in items)  # never a training video
    # a video in both train and seenheard is refused
    leak = m.copy()
    first = leak.index[(leak["split"] == "seenheard")][0]
    leak.loc[first, "clip"] = leak.loc[first, "clip"].replace("/vid01/", "/vid00/")
    with pytest.raises(ValueError, match=r"also training videos"):
        T.split_rows(leak, "seenheard")
    # and so is a seen-heard identity that is in a test split
    bad = m.copy()
    bad.loc[bad["split"] == "seenheard", "identity"] = bad.loc[bad["split"] == "test", "identity"].iloc[0]
    with pytest.raises(ValueError, match=r"also appear in other splits"):
        T.split_rows(bad, "seenheard")


def test_a_declared_protocol_draws_its_splits_items_that_its_filter_keeps(manifest, tmp_path, capsys):
    mpath = tmp_path / "manifest.parquet"
    manifest.to_parquet(mpath)
    female = {"name": "female", "title": "Female-only", "split": "test", "description": "female test identities",
              "filter": {"gender": "f"}}
    params = json.dumps({"verification": {"n_trials": 100}, "matching": {"n_trials": 20}, "declare": [female]})
    assert T.main(["--manifest", str(mpath), "--protocol", "female", "--out", str(tmp_path / "f"),
                   "--params", params]) == 0
    test = manifest[manifest["split"] == "test"]
    kept = test[test["gender"] == "f"]
    assert 0 < len(kept) < len(test)  # the filter leaves some test items out
    retrieval, meta = protocol.read_trials(tmp_path / "f")["retrieval"]
    assert set(retrieval["item"]) == set(kept["item"]) and meta["protocol"] == "female"
    assert meta["filter"] == {"gender": ["f"]} and meta["split"] == "test"
    assert meta["manifest"]["sha256"] == T.manifest_sha256(kept)[0]
    # a filter that keeps nothing: the values there are; a built-in name: its whole split
    none = json.dumps({"declare": [{**female, "filter": {"gender": "x"}}]})
    assert T.main(["--manifest", str(mpath), "--protocol", "female", "--out", str(tmp_path / "x"),
                   "--params", none]) == 2
    assert "no item of this split has gender in ['x']" in capsys.readouterr().err
    assert T.main(["--manifest", str(mpath), "--protocol", "unseenunheard", "--out", str(tmp_path / "u"),
                   "--params", params]) == 0
    assert protocol.read_trials(tmp_path / "u")["retrieval"][1]["manifest"]["rows"] == len(test)
