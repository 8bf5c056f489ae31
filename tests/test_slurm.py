"""The pipeline submitted to a real SLURM cluster with the SLURM profile, as a user would.

``scripts/slurm-testbed.sh`` starts a single-node SLURM on this machine (Debian's slurmctld,
slurmd and munge, installed with apt-get when missing; started by hand, no systemd; one fake
GPU), then the tests run ``snakemake --workflow-profile profiles/slurm`` against it:

- ``test_pipeline_through_slurm_matches_a_local_run``: accounting on (slurmdbd on a MariaDB
  started by hand), so the executor plugin polls job states with ``sacct``, its default and
  what clusters normally have. A miniature corpus (2 train, 1 val, 1 test identity, one clip
  each) goes through the whole preprocessing and evaluation, plus one debug-profile training
  job, whose ``gpu`` resource goes through the scheduler as ``--gpus=1``. Every job must be
  in SLURM's accounting records, COMPLETED, in the partition and under the account that the
  profile's environment variables name; batch jobs only inside group jobs; and every
  output (batch files, shards, manifest, trial lists, report tables, comparison tables)
  equal, by content, to a local run of the same corpus.
- ``test_squeue_status_without_accounting``: no slurmdbd, ``--slurm-status-command squeue``:
  the mode for clusters without accounting. With ``sacct`` as the status command such a run
  never ends after its jobs finish (sacct answers nothing); with squeue it completes. One job.

Both are guarded by hard time limits (a hang fails the test) and stop every daemon they
started, whatever happens. They skip, saying why, where they cannot run: not root, or SLURM
missing and no apt-get. Measured on the 2-core dev machine: 25 s and 4.5 to 5 minutes (the
local run goes on beside the SLURM run), about 20 s more when the packages still have to be
installed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from helpers import HANG_S, REPO
from workflow_rules import tiny_tree

pytestmark = pytest.mark.slow

TESTBED = REPO / "scripts" / "slurm-testbed.sh"
PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge", "slurmdbd", "mariadb-server")
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
# the plugin polls after 40 s, then every 10 s more while nothing finishes; the testbed's
# jobs take seconds, so start at 2 s
FAST_POLL = ["--seconds-between-status-checks", "2", "--slurm-init-seconds-before-status-checks", "2",
             "--latency-wait", "5"]


def _installed(pkg: str) -> bool:
    res = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
    return res.returncode == 0 and "install ok installed" in res.stdout


def _skip_reason() -> str | None:
    if not sys.platform.startswith("linux") or not shutil.which("dpkg-query"):
        return "the SLURM testbed needs a Debian or Ubuntu machine (dpkg, apt-get)"
    if os.geteuid() != 0:
        return "the SLURM testbed starts slurmctld, slurmd and munged as root: run the tests as root"
    if not all(_installed(p) for p in PACKAGES) and not shutil.which("apt-get"):
        return f"SLURM is not installed ({', '.join(PACKAGES)}) and there is no apt-get to install it"
    return None


@pytest.fixture(autouse=True)
def _needs_testbed():
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)


@contextlib.contextmanager
def slurm_testbed(path: Path, accounting: bool = True):
    """A running single-node SLURM; yields the environment its commands need."""
    cmd = ["bash", str(TESTBED), "up", str(path)] + ([] if accounting else ["--no-accounting"])
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if res.returncode != 0:
            logs = "".join(f"\n--- {f.name}\n{f.read_text()[-2000:]}" for f in sorted((path / "log").glob("*.log")))
            pytest.fail(f"the SLURM testbed did not start:\n{res.stdout}\n{res.stderr}{logs}")
        yield dict(os.environ, SLURM_CONF=str(path / "slurm.conf"))
    finally:
        subprocess.run(["bash", str(TESTBED), "down", str(path)], capture_output=True, text=True, timeout=180)


def start(args: list[str], env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([SNAKEMAKE, *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def finish(proc: subprocess.Popen, timeout: float, what: str) -> str:
    """Wait for a Snakemake run; a run past its time limit is killed (its process group) and fails."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        pytest.fail(f"{what} did not finish in {timeout:.0f} s (a hang?):\n{out[-6000:]}")
    if proc.returncode != 0:
        pytest.fail(f"{what} failed:\n{out[-8000:]}")
    return out


def slurm_ids(output: str) -> dict[str, str]:
    """SLURM job id -> the plugin's log path (rule_<rule>/... or group_<group>_<rules>/...)."""
    return dict(re.findall(r"submitted with SLURM jobid (\d+) \(log: ([^)]+)\)", output))


def sacct(env: dict, ids) -> list[dict]:
    fields = ["JobIDRaw", "State", "Comment", "AllocTRES", "Account", "Partition", "Timelimit"]
    res = subprocess.run(["sacct", "-X", "-n", "-P", "-o", ",".join(fields), "-j", ",".join(ids)],
                         env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return [dict(zip(fields, line.split("|"))) for line in res.stdout.splitlines() if line.strip()]


def mini_corpus(root: Path, corpus: Path, ids: list[str], **overrides) -> Path:
    """The identities' first clip each, and test_pipeline's config for it."""
    from test_pipeline import write_config

    from facevoice.demo.export import copy_videos_subset

    copy_videos_subset(corpus, root / "data", ids)
    for ident in ids:
        for extra in sorted((root / "data" / "videos" / ident).glob("*/*.mp4"))[1:]:
            extra.unlink()
    return write_config(root, root / "data", **overrides)


def same_outputs(a: Path, b: Path) -> list[str]:
    """Differences between two results/<dataset> folders, by content (Parquet tables, text)."""
    diffs = []
    parquet = sorted(p.relative_to(a) for p in a.rglob("*.parquet")
                     if p.relative_to(a).parts[0] in ("frames", "faces", "speech", "features", "shards", "trials"))
    assert len(parquet) > 20, parquet
    for rel in parquet:
        if not (b / rel).exists():
            diffs.append(f"{rel}: missing")
        elif not pq.read_table(a / rel).equals(pq.read_table(b / rel)):
            diffs.append(f"{rel}: different content")
    for rel in ["report/identities.csv", "report/rejects.csv", "report/speech.csv",
                *(p.relative_to(a) for p in sorted(a.glob("comparison/**/*.csv")))]:
        if (a / rel).read_text() != (b / rel).read_text():
            diffs.append(f"{rel}: different content")
    return diffs


def test_squeue_status_without_accounting(tmp_path):
    """No slurmdbd: the plugin's squeue status mode finishes (sacct mode would poll forever)."""
    root = tmp_path / "run"
    root.mkdir()
    tiny_tree(root, methods=[])  # the one job (compare, no methods) reads no clip
    with slurm_testbed(tmp_path / "slurm", accounting=False) as env:
        env.pop("FACEVOICE_SLURM_ACCOUNT", None)  # no accounting, no accounts to check it against
        env["FACEVOICE_SLURM_PARTITION"] = "debug"
        assert subprocess.run(["sacct", "-n"], env=env, capture_output=True).returncode != 0  # no accounting
        t0 = time.monotonic()
        out = finish(start(["-s", "Snakefile", "-d", str(root), "--configfile", str(root / "config.yaml"),
                            "--workflow-profile", "profiles/slurm", "--cores", "2", *FAST_POLL,
                            "--slurm-status-command", "squeue", "results/tiny/comparison/unseenunheard/verification.md"], env), HANG_S, "snakemake (squeue status)")
        ids = slurm_ids(out)
        assert len(ids) == 1 and "rule_compare" in next(iter(ids.values())), out[-3000:]
        assert "Falling back to 'sacct'" not in out
        jobcomp = (tmp_path / "slurm" / "log" / "jobcomp.log").read_text()
        assert re.search(rf"JobId={next(iter(ids))} .*JobState=COMPLETED Partition=debug", jobcomp), jobcomp
        assert (root / "results" / "tiny" / "comparison" / "unseenunheard" / "verification.md").exists()
        print(f"squeue-mode run: {time.monotonic() - t0:.0f} s")


def test_pipeline_through_slurm_matches_a_local_run(demo_corpus, tmp_path):
    from test_pipeline import pick_identities

    ids = pick_identities(demo_corpus, {"train": 2, "val": 1, "test": 1})
    settings = {"train.profile": "debug", "train.mem_mb": 1000}
    runs = {}
    for name in ("local", "slurm"):
        runs[name] = tmp_path / name
        mini_corpus(runs[name], demo_corpus, ids, **settings)
    # the pipeline, plus one (debug) training job: a job with a gpu resource
    targets = ["all", "results/mini/train/dje/model.pt"]

    def args(root):
        return ["-s", "Snakefile", "-d", str(root), "--configfile", str(root / "config.yaml"), "--cores", "2"]

    t0 = time.monotonic()
    # the local run works while the SLURM run mostly waits for the scheduler
    local = start(args(runs["local"]) + targets)
    try:
        with slurm_testbed(tmp_path / "slurm-testbed") as env:
            env.update(FACEVOICE_SLURM_ACCOUNT="facevoice", FACEVOICE_SLURM_PARTITION="debug",
                       FACEVOICE_SLURM_GPU_PARTITION="debug")
            out = finish(start(args(runs["slurm"]) + ["--workflow-profile", "profiles/slurm", *FAST_POLL,
                                                      "--slurm-keep-successful-logs", *targets], env),
                         HANG_S, "snakemake --workflow-profile profiles/slurm")
            t_slurm = time.monotonic() - t0
            ids = slurm_ids(out)
            records = {r["JobIDRaw"]: r for r in sacct(env, ids)}
            jobcomp = (tmp_path / "slurm-testbed" / "log" / "jobcomp.log").read_text()
        finish(local, HANG_S, "the local run")
    finally:
        if local.poll() is None:
            os.killpg(local.pid, signal.SIGKILL)
            local.wait()

    # every job went through the scheduler: in SLURM's accounting, completed, where the
    # profile's environment variables put it
    assert set(records) == set(ids), (ids, records)
    for jid, rec in records.items():
        assert rec["State"] == "COMPLETED", rec
        assert rec["Account"] == "facevoice" and rec["Partition"] == "debug", rec
        assert f"JobId={jid} " in jobcomp
    kinds = sorted(rec["Comment"].split("_wildcards_")[0] for rec in records.values())
    batch_jobs = [k for k in kinds if k.startswith("rule_batches_")]
    assert [k for k in kinds if k not in batch_jobs] == [
        "rule_compare", "rule_data_report", "rule_manifest", "rule_shards_shard", "rule_train",
        "rule_trials"], kinds  # the test split's lists (one video per identity: nothing held out)
    # batch work ran only inside group jobs, two chains (frames->faces, speech->features) a job,
    # one CPU each: 4 identities of one clip -> 4 batches -> 8 chains -> 4 group jobs
    assert len(batch_jobs) == 4, kinds
    group = next(r for r in records.values() if r["Comment"].startswith("rule_batches"))
    assert "cpu=1," in group["AllocTRES"], group
    assert re.search(r"^\s*localrule (frames|faces|speech|features):", out, re.M) is None
    # the training job asked for the (fake) GPU
    train = next(r for r in records.values() if r["Comment"].startswith("rule_train"))
    assert "gres/gpu=1" in train["AllocTRES"], train
    # SLURM's own log of each job (kept with --slurm-keep-successful-logs)
    for jid, log in ids.items():
        assert Path(log).is_file() and "Finished" in Path(log).read_text(), log
    # the same results as the local run
    out_local, out_slurm = (runs[n] / "results" / "mini" for n in ("local", "slurm"))
    assert not same_outputs(out_local, out_slurm)
    run_json = json.loads((out_slurm / "train" / "dje" / "run.json").read_text())
    assert run_json and (out_slurm / "train" / "dje" / "model.pt").stat().st_size > 0
    print(f"SLURM run: {t_slurm:.0f} s, {len(ids)} SLURM jobs")
