"""The positive control (README, Positive control): build the control corpus, run the pipeline
on it with Snakemake, and print each method's unseen-unheard verification AUC with its 95%
bootstrap interval over test identities (strata U and G), beside the time each step took.

    python benchmarks/bench_control.py                       # config/control.yaml -> results/control/
    python benchmarks/bench_control.py --smoke               # 8 identities, dje and chance, debug profile

The full run is what `make control` runs (its corpus in data/control/, its results in
results/control/). ``--smoke`` builds its 8-identity corpus in
.cache/facevoice/control-smoke/ (reused while up to date) and runs in a temporary folder: the
same code paths, too few identities to show anything (the test suite runs it).
A method has learned the planted attribute when its whole intervals of strata U and G lie
above 50%; ``chance``'s must not.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from common import table

REPO = Path(__file__).resolve().parents[1]
#: the smoke size: what changes from config/control.yaml
SMOKE = {"identities": 8, "methods": ["dje", "chance"], "profile": "debug"}


def control_config(config: Path, smoke: bool, workdir: Path) -> tuple[dict, Path]:
    """(the config, the file Snakemake reads): config/control.yaml, or its smoke-size copy."""
    cfg = yaml.safe_load(config.read_text(encoding="utf-8"))
    if not smoke:
        return cfg, config
    out = REPO / ".cache" / "facevoice" / "control-smoke"
    cfg["dataset"] = "control-smoke"
    cfg["results"] = str(workdir / "results")
    cfg["input"].update(videos=str(out / "videos"), meta=str(out / "vox1_meta.csv"),
                        splits=str(out / "identity_splits.txt"))
    cfg["demo"]["out"] = str(out)
    cfg["demo"]["control"]["identities"] = SMOKE["identities"]
    cfg.setdefault("train", {}).update(methods=SMOKE["methods"], profile=SMOKE["profile"])
    path = workdir / "control-smoke.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return cfg, path


def build(config: Path) -> float:
    """`facevoice demo --config` (the control corpus), from the repository root as
    `make control` runs it; its wall seconds."""
    from facevoice.common.io import working_in
    from facevoice.demo.build import build_demo, demo_settings

    t0 = time.monotonic()
    with working_in(REPO):
        build_demo(demo_settings(config), progress=False)
    return time.monotonic() - t0


def run_pipeline(config: Path, cores: str) -> float:
    """Snakemake on the config, from the repository root; its wall seconds."""
    exe = Path(sys.executable).with_name("snakemake")
    cmd = [str(exe), "--cores", cores, "--configfile", str(config), "--quiet", "rules"]
    t0 = time.monotonic()
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"snakemake failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-5000:]}")
    return time.monotonic() - t0


def auc_rows(cfg: dict) -> list[list]:
    """One row per method: AUC of stratum U and G with their intervals, in percent, and whether
    both whole intervals lie above 50% (a stratum without trials: no)."""
    from facevoice.evaluation.results import load

    folder = REPO / cfg.get("results", "results") / cfg["dataset"] / "evaluation" / "unseenunheard"
    rows = []
    for path in sorted(folder.glob("*.json")):
        res = load(path)
        row, above = [path.stem], True
        for stratum in ("U", "G"):
            v = res.verification_at(stratum)
            if v is None or not v.available:  # e.g. no same-gender negative among few test identities
                row += ["n/a", "n/a"]
                above = False
                continue
            lo, hi = (v.ci95 or {}).get("auc") or (float("nan"), float("nan"))
            row += [100 * v.auc, f"[{100 * lo:.2f}, {100 * hi:.2f}]"]
            above = above and lo > 0.5
        rows.append(row + ["yes" if above else "no"])
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="8 identities, dje and chance, debug profile")
    ap.add_argument("--config", type=Path, default=REPO / "config" / "control.yaml")
    ap.add_argument("--cores", default=str(os.cpu_count() or 1))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-control-") as tmp:
        cfg, path = control_config(args.config.resolve(), args.smoke, Path(tmp))
        build_s = build(path)
        run_s = run_pipeline(path, args.cores)
        control = cfg["demo"]["control"]
        table(f"Positive control: unseen-unheard verification AUC (%), {control['identities']} identities",
              ["method", "AUC U", "95% CI U", "AUC G", "95% CI G", "U and G intervals above 50"], auc_rows(cfg))
    load = os.getloadavg()
    table("Positive control: time", ["step", "wall s"],
          [["build the corpus (facevoice demo)", build_s], ["pipeline (Snakemake)", run_s],
           [f"load average at the end (1, 5, 15 min), {os.cpu_count()} cores", f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"]])
    return 0


if __name__ == "__main__":
    sys.exit(main())
