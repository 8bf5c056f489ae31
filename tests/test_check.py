"""`facevoice check-config` and a run share one check (facevoice.check.check_run): a table of
configs, each through both `facevoice check-config` and `snakemake -n`, with the same verdict
and, when it fails, the same message in both outputs. The methods' variants and overrides are
the exception: planning imports no PyTorch, so the train job checks them as it starts."""

import json
import subprocess
import sys

import pytest
import yaml
from helpers import HANG_S
from helpers import REPO, snakemake
from layout_trees import check_both, check_config_main, videos

from facevoice.check import check_run, method_section
from facevoice.data.inputs import PINS_FILES, pins_file


def add_line(path, line):
    path.write_text(path.read_text() + line + "\n")


def pins_folder(root, cfg, sets, leave_out=()):
    folder = root / "pins"
    folder.mkdir()
    for pins_set in sets:
        for stratum in cfg["evaluation"]["verification"]["strata"]:
            if stratum not in leave_out:
                (folder / pins_file(PINS_FILES[stratum], pins_set)).write_text("")
    cfg["evaluation"]["pins"] = {"dir": str(folder), "sets": list(sets)}


def unknown_variant(root, cfg):
    cfg["train"]["methods"] = ["dje-no_such_variant"]


def unknown_hyperparameter(root, cfg):
    cfg["train"]["overrides"] = {"chance": {"no_such_param": 1}}


def fame_on_videos(root, cfg):
    cfg["fame"] = {"train_language": "English"}


def two_splits(root, cfg):
    add_line(root / "data" / "identity_splits.txt", "Ann_A 2")


def no_metadata_row(root, cfg):
    clip = root / "data" / "videos" / "id10009" / "vidCCCCCCCC" / "00001.mp4"
    clip.parent.mkdir(parents=True)
    clip.touch()


def pins_without_stratum_a(root, cfg):
    pins_folder(root, cfg, ["unseenunheard"], leave_out=["A"])


def pins_folder_missing(root, cfg):
    cfg["evaluation"]["pins"] = {"dir": str(root / "no_pins"), "sets": ["unseenunheard"]}


def nothing_held_out(root, cfg):
    cfg["seenheard"]["videos"] = 0
    cfg["train"]["methods"] = ["voice2face"]
    cfg["generate"].update(methods=["voice2face"], split="seenheard")


def empty_generate_split(root, cfg):
    splits = root / "data" / "identity_splits.txt"
    splits.write_text(splits.read_text().replace(" 4\n", " 2\n"))  # the test identity goes to val
    cfg["train"]["methods"] = ["voice2face"]
    cfg["generate"].update(methods=["voice2face"], split="test")


# (name, tree, change, the error's text; None: valid). Each layout's valid config, a required
# key of it left unset and a path of it that does not exist: tests/data/test_layouts.py.
CASES = [
    ("fame_on_videos", videos, fame_on_videos, "only input.layout 'mavceleb' gives clips a language"),
    ("two_splits", videos, two_splits, "identity Ann_A is in two splits (train and val)"),
    ("no_metadata_row", videos, no_metadata_row, "identity has clips but no row in"),
    ("pins_without_stratum_a", videos, pins_without_stratum_a, "lacks veriflist_test_A_unseenunheard.txt"),
    ("pins_folder_missing", videos, pins_folder_missing, "config key 'evaluation.pins.dir': folder not found"),
    ("nothing_held_out", videos, nothing_held_out, "generate.split is seenheard, but no video is held out"),
    ("empty_generate_split", videos, empty_generate_split, "generate.split is test, but no identity of the split"),
]


@pytest.mark.parametrize("name, tree, change, error", CASES, ids=[c[0] for c in CASES])
def test_check_config_and_a_run_agree(tmp_path, capsys, name, tree, change, error):
    cfg = tree(tmp_path)
    if change:
        change(tmp_path, cfg)
    check_both(tmp_path, capsys, cfg, error)


METHOD_CASES = [
    (unknown_variant, "dje-no_such_variant", "method dje has no variant 'no_such_variant'"),
    (unknown_hyperparameter, "chance", "unknown hyperparameter 'no_such_param'"),
]


@pytest.mark.parametrize("change, method, error", METHOD_CASES, ids=[c[0].__name__ for c in METHOD_CASES])
def test_method_settings_are_checked_by_check_config_and_the_train_job(tmp_path, capsys, change, method, error):
    """A variant or an override that does not exist: check-config says so; planning (no PyTorch)
    plans the run; the train job, given the run's --params, stops first thing with the same line."""
    cfg = videos(tmp_path)
    change(tmp_path, cfg)
    rc, err = check_config_main(tmp_path, capsys, cfg)
    assert rc == 1 and error in err, err
    run = snakemake("-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "--configfile", str(tmp_path / "mine.yaml"), "-n")
    assert run.returncode == 0 and f"train/{method}/model.pt" in run.stdout, (run.stdout + run.stderr)[-3000:]
    check_run(cfg, tmp_path, methods=False)  # completes cfg
    params = json.dumps(method_section(cfg["train"], method))
    job = subprocess.run([sys.executable, "-m", "facevoice.training.train", "--method", method, "--manifest", "m",
                          "--shards-root", "s", "--out", str(tmp_path / "out"), "--params", params],
                         capture_output=True, text=True, timeout=HANG_S)
    line = next(ln.strip().removeprefix("- ") for ln in err.splitlines() if error in ln)
    assert job.returncode != 0 and line in job.stderr, job.stderr[-3000:]
    assert not (tmp_path / "out").exists()


def test_a_config_without_variants_or_overrides_is_checked_without_torch(tmp_path):
    """Planning and check-config import PyTorch only for a method's variant or overrides."""
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(videos(tmp_path)))
    code = ("import sys; from facevoice.check import main; rc = main([sys.argv[1]]); "
            "print(rc, 'torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=HANG_S)
    assert res.stdout.split()[-2:] == ["0", "False"], res.stdout + res.stderr
