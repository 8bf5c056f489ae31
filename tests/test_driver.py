"""The driver environment (envs/driver.txt, envs/driver.yaml) plans a run by itself.

A venv with only the driver's packages from the package index (``pip install -r
envs/driver.txt -c requirements.lock``, then the project with ``--no-deps``): no PyTorch,
librosa, scikit-learn or matplotlib. Its Snakemake plans the workflow (``snakemake -n``) on a
tiny tree whose config names a method variant and an override, the settings that once made
planning import PyTorch. The venv is built once and kept under
``.cache/facevoice/driver-venv/<hash of driver.txt, requirements.lock and pyproject.toml>``
(pip's downloads under ``.cache/pip``); a cold build installs about 470 MB, measured at 2.5 to
4.5 minutes on the 2-core machine with others' jobs running (load average 13 to 17), most of it
unpacking pyarrow, pandas and numpy; later sessions reuse it (the tests then take seconds).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import HANG_S, REPO
from workflow_rules import SNAKEFILE, tiny_tree

DRIVER = REPO / "envs" / "driver.txt"
LOCK = REPO / "requirements.lock"
CACHE = REPO / ".cache"
HEAVY = ("torch", "torchvision", "librosa", "sklearn", "matplotlib", "facenet_pytorch")


def _run(cmd: list, src: bool = False, **kw) -> subprocess.CompletedProcess:
    """Run cmd outside the test's venv; ``src``: with this checkout's src/ first on the path (the
    driver's installed copy of the package is as old as the venv; the Snakefile finds src/ itself)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    if src:
        env["PYTHONPATH"] = str(REPO / "src")
    res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=HANG_S, env=env, **kw)
    assert res.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def _build(venv: Path) -> None:
    shutil.rmtree(venv, ignore_errors=True)
    _run([sys.executable, "-m", "venv", venv])
    pip = [venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--cache-dir", CACHE / "pip"]
    _run([*pip, "-r", DRIVER, "-c", LOCK])
    # the project itself, none of its dependencies (they are the jobs' environments'), built from
    # a copy (a build in the checkout would leave build/ there)
    project = venv / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, project / name)
    shutil.copytree(REPO / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    _run([*pip, "--no-deps", project])
    shutil.rmtree(project)


@pytest.fixture(scope="session")
def driver_venv() -> Path:
    """The driver venv, built when driver.txt, the lock or pyproject.toml changed (one builder at a
    time: the folder is shared by every checkout whose .cache is the same)."""
    key = hashlib.sha256(b"".join(p.read_bytes() for p in (DRIVER, LOCK, REPO / "pyproject.toml"))
                         + sys.version.encode()).hexdigest()[:16]
    root = CACHE / "facevoice" / "driver-venv"
    root.mkdir(parents=True, exist_ok=True)
    venv, stamp = root / key, root / f"{key}.done"
    with open(root / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists():
            _build(venv)
            stamp.touch()
    return venv


def test_the_driver_venv_plans_a_run_without_heavy_packages(driver_venv, tmp_path):
    py = driver_venv / "bin" / "python"
    missing = _run([py, "-c", f"import importlib.util as u; print([m for m in {HEAVY!r} if u.find_spec(m)])"])
    assert missing.stdout.strip() == "[]", f"the driver venv holds {missing.stdout}"
    tiny_tree(tmp_path, methods=["chance", "dje-rank_only", "fop"], overrides={"fop": {"dim": 32}})
    res = _run([driver_venv / "bin" / "snakemake", "-s", SNAKEFILE, "-d", tmp_path, "--configfile",
                tmp_path / "config.yaml", "-n", "--cores", "2"])
    out = res.stdout + res.stderr
    assert "train/dje-rank_only/model.pt" in out and "train/fop/model.pt" in out, out[-3000:]
    jobs = [ln.split() for ln in out.splitlines() if ln.split()[:1] in (["frames"], ["train"], ["total"])]
    assert {j[0] for j in jobs} == {"frames", "train", "total"} and all(j[1].isdigit() for j in jobs), out[-3000:]
    # the facevoice command of the driver is the project's (installed with --no-deps)
    assert "usage: facevoice" in _run([driver_venv / "bin" / "facevoice", "--help"], src=True).stdout


def test_check_config_in_the_driver_says_what_it_cannot_check(driver_venv, tmp_path):
    """Without PyTorch, check-config passes a config with a variant, saying it left it unchecked."""
    config = tiny_tree(tmp_path, methods=["chance", "dje-no_such_variant"])
    res = _run([driver_venv / "bin" / "facevoice", "check-config", config, "-d", tmp_path], src=True, cwd=REPO)
    assert "variant and overrides not checked (torch is not installed here)" in res.stderr, res.stderr
    assert res.stdout.strip().endswith(": valid"), res.stdout
