"""`snakemake --lint` finds nothing in the workflow (every rule file, on a test config).

Snakemake 9.27's command line accepts `--lint=json` but prints the text report either way, so
the test reads the exit status (1 when anything was linted) and shows whatever was printed;
if a later Snakemake prints JSON, its lint lists are checked to be empty too.
"""

from __future__ import annotations

import json

from helpers import snakemake
from workflow_rules import REPO, tiny_tree


def lint(root, *extra):
    res = snakemake("-s", str(REPO / "Snakefile"), "-d", str(root), "--configfile", str(root / "config.yaml"),
                    "--lint=json", *extra)
    try:
        report = json.loads(res.stdout)
    except ValueError:
        report = None
    return res, report


def test_lint_is_clean(tmp_path):
    tiny_tree(tmp_path)
    res, report = lint(tmp_path)
    assert res.returncode == 0, f"snakemake --lint found problems:\n{res.stdout[-6000:]}\n{res.stderr[-6000:]}"
    if report is not None:
        assert not report.get("snakefiles") and not report.get("rules"), json.dumps(report, indent=1)[:6000]
    else:
        assert "Congratulations" in res.stdout + res.stderr


def test_lint_is_clean_with_the_slurm_profile(tmp_path):
    """The cluster profile loads (its keys are valid options) and changes no lint."""
    tiny_tree(tmp_path)
    res, _ = lint(tmp_path, "--workflow-profile", str(REPO / "profiles" / "slurm"))
    assert res.returncode == 0, f"{res.stdout[-6000:]}\n{res.stderr[-6000:]}"
