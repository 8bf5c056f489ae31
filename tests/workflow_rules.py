"""What the workflow's rules declare, read through Snakemake's own API (for test_envs, test_lint).

``tiny_tree(root)`` writes a dataset that the workflow parses in a second (empty clip files:
nothing here runs a job) and a config with every training method on, so that every rule file
and every rule is loaded. ``rules(root)`` loads the workflow in a separate interpreter and
returns, per rule, its rule file, shell command, conda environment, log files and whether
it runs anything; ``python tests/workflow_rules.py DIR`` prints the same as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from helpers import HANG_S

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"


def tiny_tree(root: Path, **train) -> Path:
    """Three identities (train, val, test), one empty clip each (the training identity one in each
    of two videos, so that the seen-heard protocol holds one out); returns the config path.

    Keyword arguments replace keys of the config's train: section (e.g. methods=[]).
    """
    data = root / "data"
    rows, splits = [], []
    for i, (name, code) in enumerate((("Ann_A", 1), ("Bob_B", 2), ("Cid_C", 4))):
        ident = f"id1000{i}"
        for video in ("vidAAAAAAAA", "vidBBBBBBBB")[:2 if code == 1 else 1]:
            clip = data / "videos" / ident / video / "00001.mp4"
            clip.parent.mkdir(parents=True, exist_ok=True)
            clip.touch()
        rows.append(f"{ident}\t{name}\t{'mf'[i % 2]}\tUSA\tdev")
        splits.append(f"{name} {code}")
    (data / "vox1_meta.csv").write_text("VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet\n"
                                        + "\n".join(rows) + "\n")
    (data / "identity_splits.txt").write_text("\n".join(splits) + "\n")
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["dataset"] = "tiny"
    cfg["results"] = "results"
    cfg["input"].update(layout="videos", videos=str(data / "videos"), wav=None, face_frames=None,
                        meta=str(data / "vox1_meta.csv"), splits=str(data / "identity_splits.txt"))
    cfg["train"].update(train)
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _dump(root: Path) -> list[dict]:
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

    with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
        wf_api = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(configfiles=[root / "config.yaml"]),
            snakefile=SNAKEFILE,
            workdir=root,
        )
        workflow = wf_api._workflow  # parses the Snakefile and every rule file it includes
        out = []
        for rule in workflow.rules:
            conda = rule.conda_env
            if conda is not None and not isinstance(conda, str):
                conda = str(getattr(conda, "file", conda))
            out.append({
                "name": rule.name,
                "snakefile": str(rule.snakefile),
                "shell": rule.shellcmd,
                "script": str(rule.script) if getattr(rule, "script", None) else None,
                "is_run": bool(rule.is_run),
                "run_src": rule.run_func_src if rule.is_run else None,
                "norun": bool(rule.norun),
                "conda": conda,
                "basedir": str(rule.basedir) if getattr(rule, "basedir", None) else str(Path(rule.snakefile).parent),
                "log": [str(f) for f in rule.log],
                "group": rule.group if isinstance(rule.group, str) else None,
            })
        return out


def rules(root: Path) -> list[dict]:
    """The rules of the workflow run on the config in ``root`` (a separate interpreter)."""
    res = subprocess.run([sys.executable, __file__, str(root)], capture_output=True, text=True, timeout=HANG_S)
    if res.returncode != 0:
        raise AssertionError(f"loading the workflow failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    print(json.dumps(_dump(Path(sys.argv[1]).resolve())))
