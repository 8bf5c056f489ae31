"""A miniature valid tree and config of every input layout (facevoice.data.layouts.LAYOUTS), and
the check that `facevoice check-config` and `snakemake -n` give a config the same verdict and
message: shared by tests/test_check.py and tests/data/test_layouts.py."""

import yaml
from helpers import REPO, snakemake
from mavceleb_trees import config_for as mavceleb_config
from mavceleb_trees import make_tree as mavceleb_tree
from workflow_rules import tiny_tree

from facevoice.check import main as check_config


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


#: layout name -> a function of a folder that builds a valid tree there and returns its config
TREES = {"videos": videos, "voxceleb1": voxceleb1, "mavceleb": mavceleb}


def check_config_main(root, capsys, cfg):
    """(exit status, stderr) of `facevoice check-config` on ``cfg`` written to ``root``/mine.yaml."""
    path = root / "mine.yaml"
    path.write_text(yaml.safe_dump(cfg))
    rc = check_config([str(path), "-d", str(root)])
    return rc, capsys.readouterr().err


def check_both(root, capsys, cfg, error):
    """`facevoice check-config` and `snakemake -n` on ``cfg``: both pass (``error`` None), or both
    fail, check-config's message holds ``error`` and every line of it is in the run's output."""
    rc, err = check_config_main(root, capsys, cfg)
    run = snakemake("-s", str(REPO / "Snakefile"), "-d", str(root), "--configfile", str(root / "mine.yaml"), "-n")
    ran = run.stdout + run.stderr
    if error is None:
        assert rc == 0, err
        assert run.returncode == 0, ran[-3000:]
        return
    assert rc == 1 and run.returncode != 0, (err, ran[-3000:])
    assert error in err, err
    message = err.split(": ", 1)[1]  # after "<path>: "
    for line in filter(None, map(str.strip, message.splitlines())):
        assert line in ran, f"{line!r} is not in the run's output:\n{ran[-3000:]}"
    assert not (root / "results").exists()
