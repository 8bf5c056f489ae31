"""The FAME protocol: languages in config, trial lists per test language."""

import numpy as np
import pandas as pd
import pytest

from facevoice.data import mavceleb
from facevoice.data.inputs import InputError
from facevoice.evaluation import trials
from facevoice.testing import synthetic_manifest

SMALL = {"matching": {"n_trials": 20, "n_max": 3}}


def language_manifest(seed=0):
    """A synthetic manifest whose identities speak English in video 0 and Urdu in video 1,
    except that the first test identity has no Urdu video."""
    m = synthetic_manifest({"train": 6, "val": 2, "test": 8}, videos=2, clips=2, frames=2, seed=seed)
    video = m["clip"].str.split("/").str[1]
    m["language"] = np.where(video == "vid00", "English", "Urdu")
    first_test = sorted(m.loc[m["split"] == "test", "identity"].unique())[0]
    return m[~((m["identity"] == first_test) & (m["language"] == "Urdu"))].reset_index(drop=True), first_test


# --------------------------------------------------------------------------- config


def test_fame_languages_are_checked_against_the_clips():
    clips, _ = language_manifest()
    cfg = {"input": {"layout": "mavceleb"}, "fame": {"train_language": "Urdu"}}
    assert mavceleb.fame_languages(clips, cfg) == ("Urdu", ["English", "Urdu"])
    cfg["fame"]["test_languages"] = ["English"]
    assert mavceleb.fame_languages(clips, cfg) == ("Urdu", ["English"])
    assert mavceleb.fame_languages(clips, {"input": {"layout": "mavceleb"}, "fame": {}}) is None
    for section, match in [({"train_language": "Hindi"}, r"fame.train_language.*'Hindi'.*\['English', 'Urdu'\]"),
                           ({"train_language": "Urdu", "test_languages": ["German"]},
                            r"fame.test_languages.*\['German'\]")]:
        with pytest.raises(InputError, match=match):
            mavceleb.fame_languages(clips, {"input": {"layout": "mavceleb"}, "fame": section})
    with pytest.raises(InputError, match=r"only input.layout 'mavceleb' gives clips a language"):
        mavceleb.fame_languages(clips, {"input": {"layout": "videos"}, "fame": {"train_language": "Urdu"}})


def test_schema_takes_the_fame_section():
    import yaml
    from helpers import REPO

    from facevoice.config import ConfigError, validate

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["fame"] = {"train_language": "English", "test_languages": ["English", "Urdu"]}
    validate(cfg)
    cfg["fame"]["heard"] = "English"
    with pytest.raises(ConfigError, match=r"unknown config key 'fame.heard'"):
        validate(cfg)


# --------------------------------------------------------------------------- trial lists per language


def test_trial_lists_per_test_language():
    m, first_test = language_manifest()
    lists = {lang: trials.generate(m, "test", seed=3, config={**SMALL, "verification": {"n_trials": 40, "strata": ["U"]}},
                                   language=lang) for lang in ("English", "Urdu")}
    lang_of = dict(zip(m["item"], m["language"]))
    for lang, ls in lists.items():
        v, meta = ls["verification"]
        assert meta["language"] == lang
        assert {lang_of[i] for i in v["face"]} | {lang_of[i] for i in v["voice"]} == {lang}
        assert set(v["face_identity"]) | set(v["voice_identity"]) <= set(m.loc[m["split"] == "test", "identity"])
        assert (v["label"] == (v["face_identity"] == v["voice_identity"])).all()
        assert v["label"].sum() == len(v) - v["label"].sum() > 0  # half positive
        assert {lang_of[i] for i in ls["retrieval"][0]["item"]} == {lang}
    # the identity without Urdu items is in the English lists only
    urdu, english = lists["Urdu"]["verification"][0], lists["English"]["verification"][0]
    assert first_test not in set(urdu["face_identity"]) and first_test in set(english["face_identity"])
    # without a language: the lists of before, and no language in the metadata
    plain = trials.generate(m, "test", seed=3, config={**SMALL, "verification": {"n_trials": 40, "strata": ["U"]}})
    assert "language" not in plain["verification"][1]
    with pytest.raises(ValueError, match=r"no item in language 'Hindi'.*\['English', 'Urdu'\]"):
        trials.generate(m, "test", seed=3, language="Hindi")
    with pytest.raises(ValueError, match=r"only the mavceleb layout gives one"):
        trials.generate(m.drop(columns="language"), "test", seed=3, language="English")


def test_trials_command_takes_a_language(tmp_path):
    m, _ = language_manifest()
    m.to_parquet(tmp_path / "manifest.parquet")
    args = ["--manifest", str(tmp_path / "manifest.parquet"), "--split", "test", "--seed", "1",
            "--params", '{"verification": {"n_trials": 20, "strata": ["U"]}, "matching": {"n_max": 2}}']
    assert trials.main(args + ["--out", str(tmp_path / "urdu"), "--language", "Urdu"]) == 0
    v = pd.read_parquet(tmp_path / "urdu" / "verification.parquet")
    assert set(m.set_index("item").loc[v["voice"], "language"]) == {"Urdu"}
    assert trials.main(args + ["--out", str(tmp_path / "x"), "--language", "Hindi"]) == 2
    assert not (tmp_path / "x").exists()
