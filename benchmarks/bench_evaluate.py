"""Benchmark: every protocol on a VoxCeleb1-sized test split; prints figures, asserts nothing.

    python benchmarks/bench_evaluate.py [--items 30000] [--identities 250] [--dim 512] [--smoke]

Builds a synthetic manifest of ``--items`` test items (half faces, half voices) over
``--identities`` identities (VoxCeleb1's unseen-unheard test split: 250 identities,
30,496 face tracks), generates the trial lists with the default sizes, writes synthetic
``--dim``-D embeddings, and runs ``facevoice evaluate`` on them with the default bootstrap.
Prints, as tables, the wall time, CPU seconds and peak traced memory of each stage
(tracemalloc, which counts numpy's buffers) and the process's peak resident memory. Retrieval scores blocks of
``--block-size`` probes, so the F-V score matrix (faces x voices) is never held whole:
compare its size, printed, with the evaluation's peak.

``--smoke``: the same stages at a tiny size (400 items, 20 identities, 32-D, bootstrap 20,
500 trials a list) in seconds; ``tests/test_benchmarks.py`` runs it.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import table  # noqa: E402

FULL = {"items": 30000, "identities": 250, "dim": 512, "bootstrap": 1000, "trials": None}
SMOKE = {"items": 400, "identities": 20, "dim": 32, "bootstrap": 20, "trials": 500}


def _stage(name: str, fn, rows: list):
    tracemalloc.reset_peak()
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = tracemalloc.get_traced_memory()[1]
    rows.append([name, dt, cpu, peak / 2**20])
    print(f"  {name:<28} {dt:8.2f} s   peak traced {peak / 2**20:8.1f} MiB", flush=True)
    return out


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="a tiny size: the same stages in seconds")
    p.add_argument("--items", type=int, default=None, help="default 30000")
    p.add_argument("--identities", type=int, default=None, help="default 250")
    p.add_argument("--dim", type=int, default=None, help="default 512")
    p.add_argument("--bootstrap", type=int, default=None, help="default 1000")
    p.add_argument("--trials", type=int, default=None,
                   help="verification and matching n_trials (default: the schema's evaluation defaults)")
    p.add_argument("--block-size", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=None, help="keep the files here (default: a temp folder)")
    a = p.parse_args(argv)
    for k, v in (SMOKE if a.smoke else FULL).items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    return a


def run_stages(a: argparse.Namespace, work: Path, rows: list) -> tuple[dict, object]:
    """Every stage, timed into ``rows``; (each protocol's results, the embeddings)."""
    from facevoice.evaluation import evaluate as E
    from facevoice.evaluation import protocol
    from facevoice.evaluation import trials as T
    from facevoice.testing import synthetic_embeddings, synthetic_manifest

    over = {} if a.trials is None else {"verification": {"n_trials": a.trials}, "matching": {"n_trials": a.trials}}
    cfg = protocol.load_config(None, json.dumps(over))  # the complete evaluation: section, schema defaults
    per_identity = max(1, a.items // (2 * a.identities))  # faces = voices = per_identity
    clips = 10 if per_identity % 10 == 0 else per_identity
    man = _stage("synthetic manifest", lambda: synthetic_manifest(
        {"test": a.identities}, videos=per_identity // clips, clips=clips, frames=1, with_age=True,
        seed=a.seed), rows)
    lists = _stage("generate trial lists", lambda: T.generate(man, "test", a.seed, cfg), rows)
    _stage("write trial lists", lambda: protocol.write_trials(lists, work / "trials"), rows)
    for kind, (df, meta) in lists.items():
        print(f"    {kind}: {len(df)} rows", flush=True)
    df = _stage("synthetic embeddings", lambda: synthetic_embeddings(
        man, "test", dim=a.dim, signal=0.25, seed=a.seed), rows)
    _stage("write embeddings", lambda: E.write_embeddings(
        work / "emb.parquet", df["id"], df["identity"], df["modality"], np.stack(df["embedding"])), rows)
    df = None  # free the frame before evaluating
    emb = _stage("load embeddings", lambda: E.load_embeddings(work / "emb.parquet"), rows)
    trials = _stage("read trial lists", lambda: protocol.read_trials(work / "trials"), rows)

    def run_protocol(kind):
        return E.evaluate(emb, {kind: trials[kind]}, n_boot=a.bootstrap, boot_seed=0,
                          block_size=a.block_size, dcf=cfg["dcf"])[0]

    res = {}
    for kind in ("verification", "matching", "retrieval"):
        res[kind] = _stage(f"evaluate {kind}", lambda k=kind: run_protocol(k), rows)[kind]
    _stage("evaluate, all (CLI path)", lambda: E.run(
        str(work / "emb.parquet"), str(work / "trials"), str(work / "bench.json"),
        str(work / "bench_roc.parquet"), n_boot=a.bootstrap, block_size=a.block_size,
        verbose=False, dcf=cfg["dcf"]), rows)
    return res, emb


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    from facevoice import __version__
    from facevoice.evaluation import evaluate, protocol, trials  # noqa: F401  (imported before tracing)
    from facevoice.testing import synthetic_manifest  # noqa: F401

    per_identity = max(1, a.items // (2 * a.identities))
    print(f"# facevoice evaluation benchmark\n\nfacevoice {__version__}, numpy {np.__version__}; {a.identities} "
          f"identities x {per_identity} faces + {per_identity} voices = {2 * per_identity * a.identities} items, "
          f"{a.dim}-D, bootstrap {a.bootstrap}, trials a list {a.trials or 'schema default'}, "
          f"retrieval block {a.block_size}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(a.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        tracemalloc.start()
        rows: list = []
        t_all, c_all = time.perf_counter(), time.process_time()
        res, emb = run_stages(a, work, rows)
        rows.append(["total", time.perf_counter() - t_all, time.process_time() - c_all, "-"])
        tracemalloc.stop()
    table("Evaluation stages", ["stage", "wall s", "CPU s", "peak traced MiB"], rows)
    n_f, n_v = emb.face.shape[0], emb.voice.shape[0]
    big = max(n_f, n_v)
    table("Memory (MiB)", ["what", "MiB"], [
        ["peak resident memory of the process", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10],
        [f"a whole F-V score matrix, {n_f} x {n_v} float64", n_f * n_v * 8 / 2**20],
        [f"one retrieval block, {a.block_size} x {big} float64", a.block_size * big * 8 / 2**20]])
    v = res["verification"]["U"]
    table("Sanity (synthetic embeddings, signal 0.25)", ["figure", "value"], [
        ["verification AUC, stratum U", f"{v['auc']:.3f}"],
        ["  its 95% CI, low", f"{v['ci95']['auc'][0]:.3f}"], ["  its 95% CI, high", f"{v['ci95']['auc'][1]:.3f}"],
        ["1:2 matching F-V, stratum U", f"{res['matching']['F-V']['U']['2']:.3f}"],
        ["retrieval mAP F-V", f"{res['retrieval']['F-V']['map']:.4f}"],
        ["  chance", f"{res['retrieval']['F-V']['chance']:.4f}"]])
    return 0


if __name__ == "__main__":
    sys.exit(main())
