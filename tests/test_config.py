import copy

import pytest
import yaml
from helpers import REPO, snakemake

from facevoice.config import ConfigError, load, validate


@pytest.fixture()
def cfg():
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_shipped_config_is_valid(cfg):
    assert validate(copy.deepcopy(cfg)) == cfg


def test_unknown_key_is_named_with_allowed_keys(cfg):
    cfg["faces"]["marign"] = 10
    with pytest.raises(ConfigError) as exc:
        validate(cfg)
    msg = str(exc.value)
    assert "faces.marign" in msg and "margin" in msg


def test_bad_enum_value_lists_allowed(cfg):
    cfg["faces"]["multiple"] = "biggest"
    with pytest.raises(ConfigError, match=r"faces.multiple.*'biggest'.*reject, largest, central, probable"):
        validate(cfg)


def test_wrong_type_and_missing_key(cfg):
    cfg["frames"]["fps"] = "fast"
    del cfg["speech"]["method"]
    with pytest.raises(ConfigError) as exc:
        validate(cfg)
    assert "frames.fps" in str(exc.value) and "speech.method" in str(exc.value)


def test_layout_needs_its_paths(cfg):
    cfg["input"]["layout"] = "voxceleb1"
    with pytest.raises(ConfigError, match="input.wav"):
        validate(cfg)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("faces: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(bad)


def test_snakemake_stops_before_any_job_on_bad_config(tmp_path, cfg):
    cfg["speech"]["method"] = "neural"
    cfg["results"] = str(tmp_path / "results")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = snakemake("-n", "--configfile", str(path))
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "speech.method" in out and "webrtcvad, energy, silero" in out
    assert not (tmp_path / "results").exists()


def test_unknown_method_names_the_known_ones(tmp_path):
    from facevoice import config as cfg_mod

    cfg = cfg_mod.load_yaml(REPO / "config.yaml")
    cfg["train"]["methods"] = ["dje", "nosuch-variant"]
    with pytest.raises(cfg_mod.ConfigError, match=r"unknown method\(s\) nosuch-variant; known: .*avgatn.*voice2face"):
        cfg_mod.validate(cfg)
    cfg["train"]["methods"] = ["avgatn-no_common", "chance"]
    cfg_mod.validate(cfg)


def test_model_selection_never_on_a_test_split(cfg):
    from facevoice.training.methods import MethodError
    from facevoice.training.train import settings

    for split in ("test", "tset"):  # a test split, or a typo that would select on nothing
        cfg["train"]["val"]["split"] = split
        with pytest.raises(ConfigError, match=rf"train.val.split.*'{split}'.*allowed: val, train"):
            validate(cfg)
    with pytest.raises(MethodError, match="never on a test split"):
        settings("dje", {"val": {"split": "test"}})
