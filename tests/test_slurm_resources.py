"""What the SLURM profile asks for, per job, read from a dry run (`snakemake -n` with
`--workflow-profile profiles/slurm` prints every job's resources; no SLURM needed): a GPU, on the
GPU partition, only for the jobs of a method with a network (not chance); a train job's time
limit from the config's train.runtime (by profile, or the method's own). tests/test_slurm.py
submits to a real one-node SLURM (slow)."""

from __future__ import annotations

import os
import re

import yaml
from helpers import REPO, snakemake
from workflow_rules import SNAKEFILE, tiny_tree


def job_resources(out: str) -> dict[tuple[str, str], dict[str, str]]:
    """{(rule, wildcards): {resource: value}} of a dry run's job listing."""
    jobs = {}
    for block in re.split(r"^(?=(?:local)?rule \w+:$)", out, flags=re.M):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        res = re.search(r"^\s+resources: (.*)$", block, re.M)
        if rule and res:
            wildcards = re.search(r"^\s+wildcards: (.*)$", block, re.M)
            jobs[(rule.group(1), wildcards.group(1) if wildcards else "")] = dict(
                kv.split("=", 1) for kv in res.group(1).split(", "))
    return jobs


def test_gpu_partition_and_time_limit_follow_the_method(tmp_path):
    cfg_path = tiny_tree(tmp_path, methods=["chance", "fop", "voice2face"], profile="demo",
                         runtime={"paper": 1440, "demo": 77, "debug": 15, "methods": {"fop": 123}})
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["generate"].update(methods=["voice2face"], split="test")
    cfg_path.write_text(yaml.safe_dump(cfg))
    env = {"FACEVOICE_SLURM_PARTITION": "cpuq", "FACEVOICE_SLURM_GPU_PARTITION": "gpuq"}
    os.environ.update(env)
    try:
        run = snakemake("-s", str(SNAKEFILE), "-d", str(tmp_path), "--configfile", str(cfg_path), "-n",
                        "--workflow-profile", str(REPO / "profiles" / "slurm"))
    finally:
        for key in env:
            del os.environ[key]
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    jobs = job_resources(run.stdout + run.stderr)
    for (rule, wildcards), res in jobs.items():
        network = rule in ("train", "embed", "generate") and "method=chance" not in wildcards
        assert int(res.get("gpu", 0)) == int(network), (rule, wildcards, res)
        assert res["slurm_partition"] == ("gpuq" if network else "cpuq"), (rule, wildcards, res)
    runtime = {w: int(r["runtime"]) for (rule, w), r in jobs.items() if rule == "train"}
    assert runtime == {"method=chance": 77, "method=fop": 123, "method=voice2face": 77}, runtime
    assert {rule for rule, _ in jobs} >= {"manifest", "train", "embed", "generate", "evaluate"}, sorted(jobs)
    assert all(int(r["runtime"]) == 60 for (rule, _), r in jobs.items() if rule in ("embed", "generate"))
