"""``facevoice report``'s command line: --top defaults to the schema's report.top_identities."""

from __future__ import annotations

import pytest

from facevoice.common.config import defaults
from facevoice.preprocess import report

REQUIRED = ["--clips", "c.parquet", "--manifest", "m.parquet", "--results", "r", "--out", "o"]


def test_top_defaults_to_the_schemas_value():
    top = defaults("report")["top_identities"]
    assert report.parser().parse_args(REQUIRED).top == top
    assert report.parser().parse_args([*REQUIRED, "--top", str(top + 3)]).top == top + 3
    assert f"report.top_identities, {top}" in " ".join(report.parser().format_help().split())


def test_top_below_one_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        report.main([*REQUIRED, "--top", "0"])
    assert e.value.code == 2 and "--top must be at least 1" in capsys.readouterr().err
