"""Benchmark: every protocol on a VoxCeleb1-sized test split (not run by the tests).

    python benchmarks/bench_evaluate.py [--items 30000] [--identities 250] [--dim 512]

Builds a synthetic manifest of ``--items`` test items (half faces, half voices) over
``--identities`` identities (VoxCeleb1's unseen-unheard test split: 250 identities,
30,496 face tracks), generates the trial lists with the default sizes, writes synthetic
``--dim``-D embeddings, and runs ``facevoice evaluate`` on them with the default bootstrap.
Prints the wall time and the peak traced memory of each stage (tracemalloc, which counts
numpy's buffers) and the process's peak resident memory. Retrieval scores blocks of
``--block-size`` probes, so the F-V score matrix (faces x voices) is never held whole:
compare its size, printed, with the evaluation's peak.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np


def _stage(name: str, fn, rows: list):
    tracemalloc.reset_peak()
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    rows.append((name, dt, peak))
    print(f"  {name:<28} {dt:8.2f} s   peak traced {peak / 2**20:8.1f} MiB", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=30000)
    p.add_argument("--identities", type=int, default=250)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--block-size", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=None, help="keep the files here (default: a temp folder)")
    a = p.parse_args(argv)

    from facevoice import __version__
    from facevoice.common.config import defaults
    from facevoice.evaluation import evaluate as E
    from facevoice.evaluation import protocol
    from facevoice.evaluation import trials as T
    from facevoice.testing import synthetic_embeddings, synthetic_manifest

    DCF = defaults("evaluation.dcf")
    per_identity = max(1, a.items // (2 * a.identities))  # faces = voices = per_identity
    clips = 10 if per_identity % 10 == 0 else per_identity
    videos = per_identity // clips
    tmp = tempfile.TemporaryDirectory() if a.workdir is None else None
    work = Path(a.workdir or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    print(f"facevoice {__version__}, numpy {np.__version__}; {a.identities} identities x "
          f"{per_identity} faces + {per_identity} voices = {2 * per_identity * a.identities} items, "
          f"{a.dim}-D, bootstrap {a.bootstrap}, retrieval block {a.block_size}", flush=True)
    tracemalloc.start()
    rows: list = []
    t_all = time.perf_counter()
    man = _stage("synthetic manifest", lambda: synthetic_manifest(
        {"test": a.identities}, videos=videos, clips=clips, frames=1, with_age=True,
        seed=a.seed), rows)
    lists = _stage("generate trial lists", lambda: T.generate(man, "test", a.seed), rows)
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
                          block_size=a.block_size, dcf=DCF)[0]

    res = {}
    for kind in ("verification", "matching", "retrieval"):
        res[kind] = _stage(f"evaluate {kind}", lambda k=kind: run_protocol(k), rows)[kind]
    _stage("evaluate, all (CLI path)", lambda: E.run(
        str(work / "emb.parquet"), str(work / "trials"), str(work / "bench.json"),
        str(work / "bench_roc.parquet"), n_boot=a.bootstrap, block_size=a.block_size,
        verbose=False, dcf=DCF), rows)
    total = time.perf_counter() - t_all
    tracemalloc.stop()
    n_f, n_v = emb.face.shape[0], emb.voice.shape[0]
    print(f"total {total:.1f} s; peak resident memory "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB")
    print(f"a whole F-V score matrix would be {n_f} x {n_v} float64 = "
          f"{n_f * n_v * 8 / 2**20:.0f} MiB; one block is {a.block_size} x {max(n_f, n_v)} = "
          f"{a.block_size * max(n_f, n_v) * 8 / 2**20:.0f} MiB")
    v = res["verification"]["U"]
    print(f"sanity: AUC U {v['auc']:.3f} [{v['ci95']['auc'][0]:.3f}, {v['ci95']['auc'][1]:.3f}], "
          f"1:2 F-V {res['matching']['F-V']['U']['2']:.3f}, "
          f"mAP F-V {res['retrieval']['F-V']['map']:.4f} (chance {res['retrieval']['F-V']['chance']:.4f})")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
