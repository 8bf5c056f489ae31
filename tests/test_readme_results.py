"""scripts/readme_results.py: README's results block is rewritten from a run's outputs, names the
code commit of the run, and a second rewrite from the same run changes nothing."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("readme_results", REPO / "scripts" / "readme_results.py")
rr = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rr)


def head(fmt: str = "%H", *paths: str) -> str:
    return subprocess.run(["git", "log", "-1", f"--format={fmt}", *paths], cwd=REPO, capture_output=True,
                          text=True, check=True).stdout.strip()


def fake_run(folder: Path, git: str, table: str = "| Method | AUC U (%) |\n|---|---:|\n| **dje** | 61.00 |\n") -> Path:
    """A run folder holding what the script reads: evaluation JSONs (their code version) and protocols.md."""
    for proto in ("unseenunheard", "seenheard"):
        p = folder / "evaluation" / proto / "dje.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({"meta": {"code_version": {"facevoice": "x", "git": git}}}))
    (folder / "comparison").mkdir(exist_ok=True)
    (folder / "comparison" / "protocols.md").write_text(table)
    gen = folder / "generated" / "voice2face" / "report.json"
    gen.parent.mkdir(parents=True, exist_ok=True)
    gen.write_text(json.dumps({"method": "voice2face", "split": "seenheard", "counts": {"identities": 23},
                               "matching_1v2": {"U": {"available": True, "accuracy": 0.725, "ci95": [0.595, 0.829]},
                                                "G": {"available": False, "accuracy": None}}}))
    return folder


@pytest.fixture
def readme(tmp_path):
    path = tmp_path / "README.md"
    path.write_text(f"# Title\n\n{rr.TOC_BEGIN}\n{rr.TOC_END}\n\nbefore\n\n{rr.BEGIN}\nold figures\n{rr.END}\n\n"
                    f"## After it\n\n```bash\n## not a heading\n```\n\n### Step 2: the `end`\n\nafter\n")
    return path


def test_block_is_the_run_and_a_second_rewrite_changes_nothing(tmp_path, readme):
    run = fake_run(tmp_path / "demo", head())
    args = ["--results", str(run), "--readme", str(readme)]
    assert rr.main(args + ["--check"]) == 1  # the old figures differ from the run
    assert rr.main(args) == 0
    text = readme.read_text()
    assert "old figures" not in text and text.endswith("\nafter\n")
    assert f"{rr.TOC_BEGIN}\n- [After it](#after-it)\n  - [Step 2: the `end`](#step-2-the-end)\n{rr.TOC_END}" in text
    # the commit named is the last one that changed code, not a commit that only touched the docs
    assert f"at commit `{head('%h', '--', '.', *rr.DOCS)}`" in text
    assert "| **dje** | 61.00 |" in text and "voice2face" in text and "U 72.5% [59.5, 82.9]" in text
    assert "G " not in text.split("voice2face")[1]  # an unavailable stratum is left out
    assert rr.main(args + ["--check"]) == 0 and rr.main(args) == 0 and readme.read_text() == text
    (run / "comparison" / "protocols.md").write_text("| Method | AUC U (%) |\n|---|---:|\n| **dje** | 62.00 |\n")
    assert rr.main(args + ["--check"]) == 1 and readme.read_text() == text  # --check writes nothing


def test_a_dirty_or_mixed_run_is_refused(tmp_path, readme):
    dirty = fake_run(tmp_path / "dirty", "abc1234-dirty")
    assert rr.main(["--results", str(dirty), "--readme", str(readme)]) == 2
    assert rr.main(["--results", str(dirty), "--readme", str(readme), "--dirty-ok"]) == 0
    assert "at commit `abc1234-dirty`" in readme.read_text()
    mixed = fake_run(tmp_path / "mixed", head())
    (mixed / "evaluation" / "seenheard" / "dje.json").write_text(
        json.dumps({"meta": {"code_version": {"git": "0000000"}}}))
    with pytest.raises(rr.ResultsError, match="2 code versions"):
        rr.block(mixed)
    with pytest.raises(rr.ResultsError, match="protocols.md is missing"):
        rr.block(tmp_path / "nothing")


def test_readme_has_the_block_and_its_table_of_contents_is_current():
    text = (REPO / "README.md").read_text()
    assert text.count(rr.BEGIN) == 1 and text.count(rr.END) == 1 and text.index(rr.BEGIN) < text.index(rr.END)
    current = text[text.index(rr.TOC_BEGIN):text.index(rr.TOC_END) + len(rr.TOC_END)]
    assert current == rr.toc(text), "README's table of contents is out of date: run `make readme-results`"
