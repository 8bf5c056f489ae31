import copy
import json
import os
import shlex
import subprocess
import sys

import pytest
import yaml
from helpers import HANG_S, REPO, snakemake

from facevoice.common.config import ConfigError, has_network, load, validate


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
    del cfg["input"]["splits"]  # a key without a default (speech.method has one)
    with pytest.raises(ConfigError) as exc:
        validate(cfg)
    assert "frames.fps" in str(exc.value) and "'input.splits' is required" in str(exc.value)


def test_the_layouts_keys_are_checked_by_the_data_layer(cfg):
    """common/ does not know the input layouts: facevoice.data.layouts.validate adds their checks."""
    from facevoice.data.layouts import validate as validate_layout

    del cfg["input"]["videos"]
    validate(copy.deepcopy(cfg))
    with pytest.raises(ConfigError, match=r"input.layout is 'videos', so 'input.videos' must be set"):
        validate_layout(cfg)


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
    from facevoice.common import config as cfg_mod

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


# --------------------------------------------------------------------------- defaults: the schema only

# config.yaml's keys whose values are the demo's own, not the schema's defaults
DEMO_ONLY = ("dataset", "input")


def _walk(schema, path=()):
    """(dotted key, its schema, whether its parent requires it) for every key of the schema."""
    for key, sub in (schema.get("properties") or {}).items():
        yield ".".join((*path, key)), sub, key in schema.get("required", [])
        yield from _walk(sub, (*path, key))


def _keys(value, schema, path=()):
    """The dotted keys of a config's mappings that the schema describes (not open maps like overrides)."""
    for key, v in value.items():
        yield ".".join((*path, key))
        sub = (schema.get("properties") or {}).get(key) or {}
        if isinstance(v, dict) and "properties" in sub:
            yield from _keys(v, sub, (*path, key))


def test_every_key_without_a_default_is_required():
    from facevoice.common.config import schema

    loose = [key for key, sub, required in _walk(schema()) if not required and "default" not in sub]
    assert loose == []  # so that validation completes every section


def test_config_yaml_spells_out_the_schema_defaults(cfg):
    """config.yaml and the schema hold the same keys, and config.yaml's values are the schema's
    defaults except for the demo's own (dataset, input): the defaults live in one place."""
    from facevoice.common.config import defaults, schema

    assert set(_keys(cfg, schema())) == {key for key, _, _ in _walk(schema())}
    assert {k: v for k, v in cfg.items() if k not in DEMO_ONLY} == defaults()
    assert set(DEMO_ONLY) == set(cfg) - set(defaults())


def test_defaults_are_what_validating_the_required_keys_gives():
    from facevoice.common.config import defaults

    required = {"dataset": "mine", "input": {"layout": "videos", "videos": "v", "meta": "m.csv", "splits": "s.txt"}}
    complete = validate(copy.deepcopy(required))
    assert complete == {**defaults(), "dataset": "mine", "input": {**defaults("input"), **required["input"]}}
    assert complete["train"]["methods"] and complete["speech"]["webrtcvad"] == defaults("speech.webrtcvad")
    # a section given in part is completed key by key, nested ones too
    part = validate({**copy.deepcopy(required), "speech": {"method": "energy", "energy": {"threshold": -20}}})
    assert part["speech"] == {**defaults("speech"), "method": "energy",
                              "energy": {**defaults("speech.energy"), "threshold": -20}}


# --------------------------------------------------------------------------- facevoice check-config


def check_config(capsys, *args):
    from facevoice.check import main

    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_check_config_prints_the_complete_config(tmp_path, capsys):
    from workflow_rules import tiny_tree

    path = tiny_tree(tmp_path)
    mine = yaml.safe_load(path.read_text())
    del mine["train"], mine["report"]
    path.write_text(yaml.safe_dump(mine))
    rc, out, err = check_config(capsys, path, "--print")
    assert rc == 0, err
    printed = yaml.safe_load(out)
    assert printed == validate(copy.deepcopy(mine)) and printed["report"] == {"top_identities": 40}
    assert list(printed)[:3] == ["dataset", "results", "input"]  # in the schema's order


def test_check_config_names_missing_keys_and_paths(tmp_path, capsys):
    from workflow_rules import tiny_tree

    path = tiny_tree(tmp_path)
    mine = yaml.safe_load(path.read_text())
    del mine["dataset"]
    path.write_text(yaml.safe_dump(mine))
    rc, _, err = check_config(capsys, path)
    assert rc == 1 and "config key 'dataset' is required" in err
    mine["dataset"] = "tiny"
    mine["input"]["splits"] = "data/splits.txt"  # relative: to the run's folder (-d)
    mine["input"]["videos"] = str(tmp_path / "nowhere")
    path.write_text(yaml.safe_dump(mine))
    rc, _, err = check_config(capsys, path, "-d", tmp_path)
    assert rc == 1
    assert f"config key 'input.videos': folder not found: {tmp_path / 'nowhere'}" in err
    assert f"config key 'input.splits': file not found: {tmp_path / 'data/splits.txt'}" in err
    assert "input.meta" not in err
    (tmp_path / "data" / "identity_splits.txt").rename(tmp_path / "data" / "splits.txt")
    mine["input"]["videos"] = str(tmp_path / "data" / "videos")
    path.write_text(yaml.safe_dump(mine))
    assert check_config(capsys, path, "-d", tmp_path)[0] == 0
    assert check_config(capsys, path)[0] == 1  # the relative path from here is not there


# --------------------------------------------------------------------------- check-config == a run


def dry_run(root, *args):
    """The shell commands of a dry run in ``root`` (a list of argument lists), or the failed result."""
    res = snakemake("-s", str(REPO / "Snakefile"), "-d", str(root), "-n", "-p", *map(str, args))
    lines = [ln.split(":", 1)[1] for ln in res.stdout.splitlines() if ln.startswith("Shell command:")]
    return res, [shlex.split(ln) for ln in lines]


def params_of(commands, module):
    """{the job's --method or "": its --params JSON} of the commands running ``module``."""
    out = {}
    for cmd in commands:
        if module in cmd:
            method = cmd[cmd.index("--method") + 1] if "--method" in cmd else ""
            out[method] = json.loads(cmd[cmd.index("--params") + 1])
    return out


def test_check_config_and_a_run_agree_on_a_config_without_train(tmp_path, capsys):
    from workflow_rules import tiny_tree

    path = tiny_tree(tmp_path)
    mine = yaml.safe_load(path.read_text())
    del mine["train"]
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(mine))
    rc, out, err = check_config(capsys, path, "--print", "-d", tmp_path)
    assert rc == 0, err
    printed = yaml.safe_load(out)
    res, commands = dry_run(tmp_path, "--configfile", path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    train = params_of(commands, "facevoice.training.train")
    assert sorted(train) == sorted(printed["train"]["methods"]) and len(train) == 9
    # every key but methods and runtime (a job's time limit: changing it re-runs no training)
    section = {k: v for k, v in printed["train"].items() if k not in ("methods", "runtime")}
    assert all(p == section for p in train.values())
    for stage in ("frames", "faces", "speech", "features"):
        assert params_of(commands, f"facevoice.preprocess.{stage}") == {"": printed[stage]}


def test_a_config_file_stands_alone(tmp_path, capsys):
    """With --configfile the folder's config.yaml is not read: keys left out take the
    schema's defaults, and a required one left out stops the run as check-config says."""
    from workflow_rules import tiny_tree

    path = tiny_tree(tmp_path, methods=[])
    folder = yaml.safe_load(path.read_text())
    folder["report"]["top_identities"] = 7
    path.write_text(yaml.safe_dump(folder))  # the config.yaml of the run's folder
    mine = {k: v for k, v in folder.items() if k != "report"}
    mine_path = tmp_path / "mine.yaml"
    mine_path.write_text(yaml.safe_dump(mine))

    def top(commands):
        [cmd] = [c for c in commands if "facevoice.preprocess.report" in c]
        return int(cmd[cmd.index("--top") + 1])

    assert top(dry_run(tmp_path)[1]) == 7  # no --configfile: the folder's config.yaml
    assert yaml.safe_load(check_config(capsys, "-d", tmp_path, "--print")[1])["report"]["top_identities"] == 7
    assert top(dry_run(tmp_path, "--configfile", mine_path)[1]) == 40  # the schema's default
    assert yaml.safe_load(check_config(capsys, mine_path, "--print")[1])["report"]["top_identities"] == 40
    del mine["dataset"]
    mine_path.write_text(yaml.safe_dump(mine))
    res, _ = dry_run(tmp_path, "--configfile", mine_path)
    rc, _, err = check_config(capsys, mine_path)
    assert res.returncode != 0 and rc == 1
    assert "config key 'dataset' is required" in res.stdout + res.stderr and "config key 'dataset' is required" in err


def test_has_network_reads_each_plug_ins_declaration_without_importing_it():
    """The workflow's GPU resource: a plug-in's NETWORK, read from its file (no torch), equals the
    module's own; chance alone declares none."""
    code = ("import json, sys; from facevoice.common.config import has_network, method_names; "
            "print(json.dumps([{m: has_network(m) for m in method_names()}, 'torch' in sys.modules]))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG_S,
                         env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    declared, torch_imported = json.loads(res.stdout.splitlines()[-1])
    assert not torch_imported
    from facevoice.training.methods import get_method

    assert declared == {m: bool(getattr(get_method(m), "NETWORK", True)) for m in declared}
    assert [m for m, net in declared.items() if not net] == ["chance"]
    assert has_network("chance") is False and has_network("dje-rank_only") is True
