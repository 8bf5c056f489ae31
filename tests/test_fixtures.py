"""tests/fixtures/ holds the lines of the build specification and the source papers that the
reference-figure tests check (tests/evaluation/test_compare.py, tests/training/test_baselines.py), so that those
tests run from a clone alone. Here: every fixture line is a verbatim line of its source, in
order, when the sources are beside the repository."""

from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED = Path(__file__).resolve().parents[2] / "shared"


def _in_order(excerpt: list[str], source: list[str]) -> bool:
    it = iter(source)
    return all(any(line == s for s in it) for line in excerpt)


@pytest.mark.parametrize("name", sorted(p.name for p in (FIXTURES / "seeds").glob("*.txt")) + ["methods.md"])
def test_fixture_lines_are_the_sources_lines(name):
    fixture = FIXTURES / "seeds" / name if name != "methods.md" else FIXTURES / name
    source = SHARED / "seeds" / name if name != "methods.md" else SHARED / name
    lines = fixture.read_text(encoding="utf-8").splitlines()
    assert lines, f"{fixture} is empty"
    if not source.exists():
        pytest.skip(f"{source} is not beside the repository (the fixture is used as it is)")
    assert _in_order(lines, source.read_text(encoding="utf-8").splitlines()), f"{fixture} differs from {source}"
