"""The results layout (facevoice.data.paths): the files a stage writes are the layout's, and the
rules and stages name none of them themselves."""

import re
from pathlib import Path

import pytest
from helpers import REPO

from facevoice.common.config import section
from facevoice.data import paths
from facevoice.evaluation import protocol
from facevoice.evaluation import trials as T
from facevoice.testing import synthetic_manifest

#: The file names of the layout: spelled in facevoice.data.paths alone
NAMES = ("model.pt", "log.csv", "curve.png", "run.json", "summary.json", "verification.parquet",
         "matching.parquet", "retrieval.parquet", "_roc.parquet", "protocols.md", "tables.md")
RULES = ["trials", "evaluate", "compare", "train"]
STAGES = ["evaluation/trials.py", "evaluation/evaluate.py", "evaluation/compare.py", "evaluation/protocol.py",
          "training/train.py"]


def test_trial_lists_are_written_and_read_where_the_layout_says(tmp_path):
    man = synthetic_manifest({"test": 6}, videos=1, clips=2, frames=2, seed=1)
    sizes = section("evaluation", {"verification": {"n_trials": 20}, "matching": {"n_trials": 10}})
    protocol.write_trials(T.generate(man, "test", 1, sizes), tmp_path / "t")
    assert sorted(str(p) for p in (tmp_path / "t").iterdir()) == sorted(paths.trial_files(tmp_path / "t").values())
    assert set(protocol.read_trials(tmp_path / "t")) == set(paths.TRIAL_KINDS)


@pytest.mark.parametrize("rule", RULES)
def test_a_rule_names_its_outputs_through_the_layout(rule):
    text = (REPO / "workflow" / "rules" / f"{rule}.smk").read_text()
    spelled = [n for n in NAMES + ("/embeddings/", "/trials/", "/evaluation/", "/comparison/", "/train/") if n in text]
    assert not spelled, f"{rule}.smk spells {spelled}: name it in facevoice.data.paths"


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_builds_no_path_of_the_layout_itself(stage):
    code = (REPO / "src" / "facevoice" / stage).read_text()
    built = re.findall(r"""/ f?["']([^"']*)["']""", code)  # path / "name"
    assert not [b for b in built if any(b.endswith(n) or "{kind}.parquet" in b for n in NAMES)], built
