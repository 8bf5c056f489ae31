"""LICENSE and CITATION.cff: the license pyproject.toml names, and a valid citation file that
names the paper of every seed method."""

from __future__ import annotations

import re

import yaml
from helpers import REPO

from facevoice.training.methods import SEED_METHODS, run_names

# the keys CFF 1.2.0 requires of the file and of a reference
REQUIRED = {"cff-version", "message", "title", "authors"}
REFERENCE_REQUIRED = {"type", "title", "authors"}


def _project() -> dict:
    text = (REPO / "pyproject.toml").read_text()
    return {"version": re.search(r'^version = "([^"]+)"', text, re.M).group(1),
            "license": re.search(r'^license = \{ text = "([^"]+)" \}', text, re.M).group(1)}


def test_license_is_the_one_pyproject_names():
    text = (REPO / "LICENSE").read_text()
    assert _project()["license"] == "MIT" and text.startswith("MIT License")
    assert "Copyright (c) 2026 the facevoice authors" in text


def test_citation_file_is_cff_1_2_0_with_its_required_keys():
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text(encoding="utf-8"))
    assert REQUIRED <= set(cff), REQUIRED - set(cff)
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    assert cff["authors"] and all("name" in a or "family-names" in a for a in cff["authors"])
    assert cff["license"] == _project()["license"] and cff["version"] == _project()["version"]
    for ref in cff["references"]:
        assert REFERENCE_REQUIRED <= set(ref), (ref.get("title"), REFERENCE_REQUIRED - set(ref))
        assert ref["authors"] and all("family-names" in a or "name" in a for a in ref["authors"])


def test_every_seed_method_is_named_in_a_references_notes():
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text(encoding="utf-8"))
    notes = [set(re.findall(r"[a-z0-9_]+", ref.get("notes", ""))) for ref in cff["references"]]
    assert set(SEED_METHODS) <= set(run_names(include_variants=False))  # the plug-ins exist
    missing = [m for m in SEED_METHODS if not any(m in words for words in notes)]
    assert not missing, f"CITATION.cff names no paper for {missing}"
    assert len(cff["references"]) == len(SEED_METHODS)  # one paper per seed method


def test_readme_points_to_both_files():
    readme = (REPO / "README.md").read_text()
    assert "CITATION.cff" in readme and "LICENSE" in readme


def test_no_user_facing_text_names_a_paper_by_its_seed_number():
    """The papers are named by authors and year (README, config, schema, help, tables), never by
    the number of their source text."""
    files = [REPO / "README.md", REPO / "config.yaml", *(REPO / "workflow").rglob("*.*"), *(REPO / "src").rglob("*.*")]
    hits = [f"{p.relative_to(REPO)}:{i}" for p in files if p.suffix in (".md", ".yaml", ".py", ".smk", ".rst")
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
            if re.search(r"\b[Ss]eeds? 00[0-4]", line)]
    assert not hits, hits
