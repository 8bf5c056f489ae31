"""`facevoice check-config` and a run share one check (facevoice.check.check_run): a table of
configs, each through both `facevoice check-config` and `snakemake -n`, with the same verdict
and, when it fails, the same message in both outputs."""

import subprocess
import sys

import pytest
import yaml
from helpers import HANG_S, REPO, snakemake
from mavceleb_trees import config_for as mavceleb_config
from mavceleb_trees import make_tree as mavceleb_tree
from workflow_rules import tiny_tree

from facevoice.check import main as check_config
from facevoice.data.inputs import PINS_FILES, pins_file


def videos(root):
    """tiny_tree's three identities (train, val, test), one method to train."""
    return yaml.safe_load(tiny_tree(root, methods=["chance"]).read_text())


def voxceleb1(root):
    """The same identities in the VoxCeleb1 layout (wav tree, face frames under the names)."""
    cfg = videos(root)
    for clip in sorted((root / "data" / "videos").rglob("*.mp4")):
        wav = root / "data" / "wav" / clip.relative_to(root / "data" / "videos").with_suffix(".wav")
        wav.parent.mkdir(parents=True, exist_ok=True)
        wav.touch()
    (root / "data" / "faces").mkdir()
    cfg["input"].update(layout="voxceleb1", videos=None, wav=str(root / "data" / "wav"),
                        face_frames=str(root / "data" / "faces"))
    return cfg


def mavceleb(root):
    """The miniature MAV-Celeb tree, without input.meta (the layout's metadata is optional)."""
    mavceleb_tree(root)
    cfg = mavceleb_config(root)
    del cfg["input"]["meta"]
    cfg["train"]["methods"] = ["chance"]
    return cfg


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


def meta_unset(root, cfg):
    del cfg["input"]["meta"]


# (name, tree, change, the error's text; None: valid)
CASES = [
    ("videos", videos, None, None),
    ("voxceleb1", voxceleb1, None, None),
    ("mavceleb", mavceleb, None, None),
    ("unknown_variant", videos, unknown_variant, "method dje has no variant 'no_such_variant'"),
    ("unknown_hyperparameter", videos, unknown_hyperparameter, "unknown hyperparameter 'no_such_param'"),
    ("fame_on_videos", videos, fame_on_videos, "only input.layout 'mavceleb' gives clips a language"),
    ("two_splits", videos, two_splits, "identity Ann_A is in two splits (train and val)"),
    ("no_metadata_row", videos, no_metadata_row, "identity has clips but no row in"),
    ("pins_without_stratum_a", videos, pins_without_stratum_a, "lacks veriflist_test_A_unseenunheard.txt"),
    ("pins_folder_missing", videos, pins_folder_missing, "config key 'evaluation.pins.dir': folder not found"),
    ("nothing_held_out", videos, nothing_held_out, "generate.split is seenheard, but no video is held out"),
    ("meta_unset", voxceleb1, meta_unset, "input.layout is 'voxceleb1', so 'input.meta' must be set"),
]


@pytest.mark.parametrize("name, tree, change, error", CASES, ids=[c[0] for c in CASES])
def test_check_config_and_a_run_agree(tmp_path, capsys, name, tree, change, error):
    cfg = tree(tmp_path)
    if change:
        change(tmp_path, cfg)
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(cfg))

    rc = check_config([str(path), "-d", str(tmp_path)])
    checked = capsys.readouterr()
    run = snakemake("-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "--configfile", str(path), "-n")
    ran = run.stdout + run.stderr
    if error is None:
        assert rc == 0, checked.err
        assert run.returncode == 0, ran[-3000:]
        return
    assert rc == 1 and run.returncode != 0, (checked.out, ran[-3000:])
    assert error in checked.err, checked.err
    message = checked.err.split(": ", 1)[1]  # after "<path>: "
    for line in filter(None, map(str.strip, message.splitlines())):
        assert line in ran, f"{line!r} is not in the run's output:\n{ran[-3000:]}"
    assert not (tmp_path / "results").exists()


def test_a_config_without_variants_or_overrides_is_checked_without_torch(tmp_path):
    """Planning and check-config import PyTorch only for a method's variant or overrides."""
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(videos(tmp_path)))
    code = ("import sys; from facevoice.check import main; rc = main([sys.argv[1]]); "
            "print(rc, 'torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=HANG_S)
    assert res.stdout.split()[-2:] == ["0", "False"], res.stdout + res.stderr
