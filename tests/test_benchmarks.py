"""The benchmarks still run: each at ``--smoke`` size, as a subprocess, as `make bench` runs it.

Benchmarks print figures; these tests check only that each one ran to the end and printed its
tables: the headings, the rows' names, and cells that parse as numbers. A figure's value (a
time, a rate, a memory size) is never asserted: it is the benchmark's business, and differs
from one machine and one load to the next.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import HANG_S

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"


def run(cmd: list[str], env: dict | None = None) -> str:
    """The command's stdout; its return code must be 0."""
    path = os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", **(env or {})}
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=HANG_S)
    assert res.returncode == 0, f"{' '.join(cmd)} exited {res.returncode}:\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    return res.stdout


def bench(script: str, *args: str) -> str:
    return run([sys.executable, str(BENCH / script), "--smoke", *args])


def tables(out: str) -> dict[str, tuple[list[str], list[list[str]]]]:
    """{heading: (header, rows)} of the Markdown tables ``benchmarks/common.table`` printed."""
    found: dict[str, tuple[list[str], list[list[str]]]] = {}
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("## "):
            continue
        end = next((k for k, ln in enumerate(lines[i + 2:]) if not ln.startswith("|")), len(lines) - i - 2)
        body = lines[i + 2:i + 2 + end]  # a blank line follows the heading, then the table
        assert len(body) >= 2 and re.fullmatch(r"\|(---\|)+", body[1]), f"no table under {line!r}:\n{out[-3000:]}"
        cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in body]
        assert all(len(r) == len(cells[0]) for r in cells[2:]), f"ragged table under {line!r}"
        found[line[3:]] = (cells[0], cells[2:])
    return found


def table(found: dict, heading_start: str) -> tuple[list[str], list[list[str]]]:
    titles = [t for t in found if t.startswith(heading_start)]
    assert len(titles) == 1, f"one table headed {heading_start!r} expected, found {list(found)}"
    return found[titles[0]]


def number(cell: str) -> float:
    """A figure as the benchmark printed it ('1,234.56', '7', '13%', 'nan' where there is no GPU)."""
    value = float(cell.replace(",", "").removesuffix("%"))
    assert math.isfinite(value) or cell == "nan", cell
    return value


def numbers(rows: list[list[str]], columns: list[int]) -> None:
    for r in rows:
        for c in columns:
            if r[c] != "-":
                number(r[c])


def names(rows: list[list[str]]) -> list[str]:
    return [r[0] for r in rows]


def test_bench_evaluate_smoke():
    out = bench("bench_evaluate.py")
    found = tables(out)
    header, rows = table(found, "Evaluation stages")
    assert header == ["stage", "wall s", "CPU s", "peak traced MiB"]
    assert names(rows) == ["synthetic manifest", "generate trial lists", "write trial lists", "synthetic embeddings",
                           "write embeddings", "load embeddings", "read trial lists", "evaluate verification",
                           "evaluate matching", "evaluate retrieval", "evaluate, all (CLI path)", "total"]
    numbers(rows, [1, 2, 3])
    _, rows = table(found, "Memory (MiB)")
    assert len(rows) == 3 and "peak resident memory" in rows[0][0]
    numbers(rows, [1])
    _, rows = table(found, "Sanity")
    auc = dict(rows)["verification AUC, stratum U"]
    assert 0.0 <= number(auc) <= 1.0
    numbers(rows, [1])
    for kind in ("verification", "matching", "retrieval"):
        assert int(re.search(rf"^\s+{kind}: (\d+) rows$", out, re.M).group(1)) > 0


def test_bench_train_smoke():
    found = tables(bench("bench_train.py"))
    header, rows = table(found, "Training step, debug profile")
    assert header[0] == "method" and header[-1] == "samples / s (best)"
    assert sorted(set(names(rows))) == ["biq_mwrn", "dje", "ssnet_fop"]
    assert any("cached features" in r[1] for r in rows)  # ssnet_fop's second stage: heads on cached features
    numbers(rows, [4, 5, 6, 7])
    _, rows = table(found, "Data path")
    assert len(rows) == 2 and all("px faces" in r[0] for r in rows)
    numbers(rows, [2, 3])


def test_bench_preprocess_smoke(demo_corpus):
    from facevoice.preprocess.speech import METHODS

    # relative, as `make bench` names data/demo: the memory section links its clips from a temporary folder
    found = tables(bench("bench_preprocess.py", "--corpus", os.path.relpath(demo_corpus, REPO)))
    _, rows = table(found, "MTCNN on ")
    assert {r[0] for r in rows} >= {"cpu"} and "one image per call" in [r[1] for r in rows]
    numbers(rows, [2, 3])
    _, rows = table(found, "Speech filtering")
    assert names(rows)[:3] == ["clips", "audio seconds", "real-time factor, in process (speech + features)"]
    numbers(rows, [1])
    _, rows = table(found, "Speech filters on")
    assert names(rows) == list(METHODS)
    numbers(rows, [1, 2, 3, 4, 5])
    _, rows = table(found, "Read throughput")
    assert names(rows) == ["faces (PNG bytes)", "voices (log-mel arrays)"]
    numbers(rows, [1, 2, 3])
    _, rows = table(found, "Peak memory per job")
    assert names(rows) == ["frames", "faces", "speech", "features", "shard writer", "shard writer"]
    for r in rows[:4]:  # each stage's job kept the clips it was given
        n, ok = re.fullmatch(r"a batch of (\d+) clips \((\d+) ok\)", r[1]).groups()
        assert int(ok) > 0 and int(n) == 2, r
    numbers(rows, [2])


@pytest.mark.slow  # runs Snakemake: a tiny planning tree, then one identity's media up to the manifest, 4 times
def test_bench_scale_smoke(demo_corpus):
    found = tables(bench("bench_scale.py", "--corpus", str(demo_corpus)))
    header, rows = table(found, "Planning")
    assert header[-2:] == ["CPU s", "peak MB"] and names(rows) == ["tiny"]
    assert number(rows[0][4]) > 0  # jobs: the plan's summary was read
    numbers(rows, [1, 2, 3, 5, 6])
    _, rows = table(found, "Preprocessing CPU per clip")
    assert names(rows)[0] == "Snakemake, frames to manifest, every process"
    numbers(rows, [1, 2, 3])
    _, rows = table(found, "Work after a change")
    assert names(rows) == ["edit one clip", "add one identity (2 clips)", "change features.logmel.n_mels"]
    for r in rows:
        assert number(r[1]) > 0 and number(r[2]) > 0, r  # jobs run and clips computed: the logs were read
        assert re.fullmatch(r"\d+ of \d+", r[3]), r
        number(r[4])


def test_gpu_check_smoke_runs_on_any_machine():
    """The GPU check's wrapper and steps, tiny, on the CPU (one method); no GPU needed."""
    out = run(["bash", str(BENCH / "gpu_check.sh"), "--smoke", "--methods", "dje"], env={"PYTHON": sys.executable})
    found = tables(out)
    _, rows = table(found, "MTCNN frames per second")
    assert {r[1] for r in rows} == {"224x224", "640x360"}
    numbers(rows, [2, 4])
    _, rows = table(found, "Training, debug profile")
    assert names(rows) == ["dje"] and "FAILED" not in rows[0][1]
    numbers(rows, [3, 4, 5, 6])
    _, rows = table(found, "Embedding throughput")
    assert names(rows) == ["dje"]
    numbers(rows, [1, 2])
    assert "gpu check done in" in out


def test_gpu_check_names_an_unknown_method():
    res = subprocess.run([sys.executable, str(BENCH / "gpu_check.py"), "--smoke", "--methods", "dje,nosuch"],
                         cwd=REPO, capture_output=True, text=True, timeout=HANG_S,
                         env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert res.returncode == 2 and "unknown nosuch" in res.stderr and "ssnet_fop" in res.stderr, res.stderr


@pytest.mark.slow  # builds the 8-identity control corpus (cached), then Snakemake up to its comparison
def test_bench_control_smoke():
    found = tables(bench("bench_control.py", "--cores", "2"))
    header, rows = table(found, "Positive control: unseen-unheard verification AUC")
    assert header == ["method", "AUC U", "95% CI U", "AUC G", "95% CI G", "U and G intervals above 50"]
    assert sorted(names(rows)) == ["chance", "dje"]
    for r in rows:
        number(r[1])  # stratum U always has trials; G may have none among 2 test identities
        assert re.fullmatch(r"\[\d+\.\d\d, \d+\.\d\d\]", r[2]), r
        assert r[3] == "n/a" or re.fullmatch(r"\[\d+\.\d\d, \d+\.\d\d\]", r[4]), r
        assert r[5] in ("yes", "no") and (r[3] != "n/a" or r[5] == "no"), r
    _, rows = table(found, "Positive control: time")
    assert names(rows)[:2] == ["build the corpus (facevoice demo)", "pipeline (Snakemake)"]
    numbers(rows[:2], [1])
