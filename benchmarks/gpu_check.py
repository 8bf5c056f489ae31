"""The GPU check: what facevoice does on a CUDA machine, in one run of a few minutes.

    bash benchmarks/gpu_check.sh            # on a CUDA machine (run by it; see that file)
    .venv/bin/python benchmarks/gpu_check.py --smoke   # the same steps, tiny, on any machine

Prints, as tables:

1. MTCNN (the faces stage's detector) frames per second on the GPU against the CPU, on
   VoxCeleb-sized (224 x 224) and video-sized (640 x 360) frames, and whether both devices
   find the same faces (largest box difference in pixels);
2. for each method, the ``paper`` profile trained with mixed precision (``train.amp:
   auto``, bf16 where supported) on synthetic shards of paper sizes (160 px faces, 4-8 s
   of features): steps per second, the share of step time the GPU waited for data (the
   trainer's ``data_s``; its DataLoader workers as in a run), and peak GPU memory;
3. embedding throughput of each trained model (faces in batches, voices one by one, as the
   ``embed`` rule does).

Each section has a share of ``--budget`` seconds; a method that would overrun it is
listed as skipped. Asserts nothing; exits non-zero only when no GPU is visible (unless
``--smoke``) or a step fails.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import table  # noqa: E402

START = time.monotonic()




def elapsed() -> float:
    return time.monotonic() - START


# --------------------------------------------------------------------------- 1. MTCNN


def frames_of(size: tuple[int, int], n: int, seed: int = 0):
    """``n`` frames of ``size`` (w, h), each a sample portrait shifted and zoomed at random."""
    import matplotlib.cbook as cb
    from PIL import Image

    face = Image.open(cb.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    rng = np.random.default_rng(seed)
    out = []
    w, h = size
    for _ in range(n):
        scale = rng.uniform(0.45, 0.8) * h / face.height
        f = face.resize((max(1, int(face.width * scale)), max(1, int(face.height * scale))))
        canvas = Image.new("RGB", size, tuple(int(c) for c in rng.integers(40, 200, 3)))
        canvas.paste(f, (int(rng.integers(0, max(1, w - f.width))), int(rng.integers(0, max(1, h - f.height)))))
        out.append(canvas)
    return out


def rate(fn, n_frames: int, repeats: int = 2) -> float:
    import torch

    fn()  # warm-up (CUDA kernels, cuDNN autotuning)
    best = float("inf")
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return n_frames / best


def box_difference(a, b) -> float:
    """Largest difference between the boxes two devices found (inf when the counts differ)."""
    worst = 0.0
    for (ba, _, _), (bb, _, _) in zip(a, b):
        if (ba is None) != (bb is None) or (ba is not None and len(ba) != len(bb)):
            return float("inf")
        if ba is not None:
            worst = max(worst, float(np.abs(np.sort(ba, 0) - np.sort(bb, 0)).max()))
    return worst


def check_mtcnn(cfg: dict, gpu: bool, smoke: bool) -> None:
    import torch

    from facevoice.preprocess import faces

    rows = []
    n_cpu, n_gpu = (2, 4) if smoke else (32, 512)
    for size in ((224, 224), (640, 360)):
        images = frames_of(size, max(n_cpu, n_gpu))
        cpu = faces.make_detector(cfg, "cpu")
        found_cpu = faces.detect(cpu, images[:n_cpu], 8)
        rows.append(["cpu", f"{size[0]}x{size[1]}", 8, torch.get_num_threads(),
                     rate(lambda: faces.detect(cpu, images[:n_cpu], 8), n_cpu), "-"])
        if gpu:
            det = faces.make_detector(cfg, "cuda")
            diff = box_difference(found_cpu, faces.detect(det, images[:n_cpu], 8))
            for bs in (32, int(cfg["gpu_batch_size"])):
                rows.append(["cuda", f"{size[0]}x{size[1]}", bs, "-",
                             rate(lambda: faces.detect(det, images[:n_gpu], bs), n_gpu), f"{diff:.2f}"])
    table("MTCNN frames per second (best of 2 after a warm-up)",
          ["device", "frame", "batch", "CPU threads", "frames / s", "max box difference vs CPU (px)"], rows)


# --------------------------------------------------------------------------- 2. training


class StepClock:
    """A trainer callback: times of steps and epoch ends."""

    def __init__(self):
        self.steps: list[float] = []
        self.epochs: list[tuple[float, dict]] = []

    def __call__(self, event: str, info: dict) -> None:
        if event == "step":
            self.steps.append(time.perf_counter())
        elif event == "epoch":
            self.epochs.append((time.perf_counter(), info["row"]))


def train_one(name: str, manifest: Path, shards: Path, out: Path, profile: str, batches: int, threads: int):
    """Train one method for one epoch a stage; (row for the table, checkpoint path)."""
    import torch

    from facevoice.training import train as tr

    section = {"profile": profile, "seed": 0, "epochs": 1, "batch": {"batches_per_epoch": batches}, "amp": "auto",
               "num_workers": "auto", "threads": threads, "val": {"items_per_identity": 2}}
    hp, run = tr.settings(name, section)
    run["progress"] = False
    clock = StepClock()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    summary = tr.train(name, manifest, shards, out, hp, run, callbacks=[clock])
    total = time.perf_counter() - t0
    # steady-state rate: steps after the first of each stage (first steps pay for warm-up)
    rates, waits, busy = [], 0.0, 0.0
    start = t0
    for end, row in clock.epochs:
        times = [t for t in clock.steps if start < t <= end]
        if len(times) >= 3:
            rates.append((len(times) - 2) / (times[-1] - times[1]))
        if times:
            waits += float(row.get("data_s") or 0.0)
            busy += times[-1] - start
        start = end
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
    stages = ", ".join(s["name"] for s in summary["stages"])
    row = [name, stages, summary["precision"], float(np.median(rates)) if rates else "-",
           f"{100 * waits / busy:.0f}%" if busy else "-", peak, total]
    return row, out / "model.pt", hp


def embed_rate(checkpoint: Path, manifest: Path, shards: Path) -> list:
    import pandas as pd
    import torch

    from facevoice.data.shard_reader import ShardReader
    from facevoice.training.inference import embed_items, load_checkpoint, model_from_checkpoint

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ckpt = load_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt, device)
    items = pd.read_parquet(manifest)
    items = items[items["split"] == "test"].reset_index(drop=True)
    reader = ShardReader(shards)
    out = []
    for modality in ("face", "voice"):
        sub = items[items["modality"] == modality].reset_index(drop=True)
        embed_items(model, reader, sub.head(8), ckpt["hp"], device, 256)  # warm-up
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        embed_items(model, reader, sub, ckpt["hp"], device, 256)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        out.append(len(sub) / (time.perf_counter() - t))
    return out


def check_training(args, methods: list[str], work: Path) -> int:
    """The training and embedding tables; returns how many methods failed."""
    import torch

    from facevoice.testing import synthetic_shards

    t = time.perf_counter()
    ids = {"train": 8, "val": 4, "test": 4} if args.smoke else {"train": 64, "val": 8, "test": 64}
    manifest = synthetic_shards(work / "corpus", identities=ids, clips=2, faces_per_clip=4 if args.smoke else 8,
                                   image_size=32 if args.smoke else 160,
                                   frames=(80, 160) if args.smoke else (400, 800),
                                   kinds=("logmel", "spectrogram", "mfcc"), clips_per_shard=32, seed=0)
    print(f"\nsynthetic shards ({ids}) in {time.perf_counter() - t:.0f} s")
    shards = manifest.parent
    profile = "debug" if args.smoke else "paper"
    threads = min(16, os.cpu_count() or 1)
    rows, emb, spent = [], [], []
    deadline = args.budget - 20
    for name in methods:
        if deadline - elapsed() < max(15.0, float(np.mean(spent)) if spent else 0.0):
            rows.append([name, "skipped: time budget", "-", "-", "-", "-", "-"])
            continue
        t = time.perf_counter()
        try:
            row, ckpt, hp = train_one(name, manifest, shards, work / "runs" / name, profile, args.batches, threads)
            rows.append(row)
            emb.append([name, *embed_rate(ckpt, manifest, shards)])
        except Exception as exc:  # one method failing does not hide the others' figures
            traceback.print_exc()
            rows.append([name, f"FAILED: {type(exc).__name__}: {exc}"[:120], "-", "-", "-", "-", "-"])
        finally:
            spent.append(time.perf_counter() - t)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    table(f"Training, {profile} profile, {args.batches} batches an epoch, one epoch a stage (median over stages)",
          ["method", "stages", "precision", "steps / s", "waiting for data", "peak GPU memory (GiB)",
           "seconds in all"], rows)
    table("Embedding throughput (test split; faces in batches of 256, voices one by one)",
          ["method", "faces / s", "voices / s"], emb)
    return sum(1 for r in rows if str(r[1]).startswith("FAILED"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes and the debug profile; no GPU needed")
    ap.add_argument("--methods", default=None, help="comma-separated (default: every method)")
    ap.add_argument("--batches", type=int, default=None, help="batches per epoch (default 12; smoke 3)")
    ap.add_argument("--budget", type=float, default=420.0, help="seconds for the whole check")
    args = ap.parse_args(argv)
    args.batches = args.batches or (3 if args.smoke else 12)  # 3: a steady-state rate (steps after the first)
    from facevoice.common.config import method_names as known  # no torch import: a wrong name is told at once

    unknown = [m for m in (args.methods or "").split(",") if m and m not in known()]
    if unknown:
        ap.error(f"--methods: unknown {', '.join(unknown)}; the methods are {', '.join(known())}")
    import torch
    import yaml

    from facevoice.training.methods import method_names

    methods = args.methods.split(",") if args.methods else method_names()
    gpu = torch.cuda.is_available()
    name = torch.cuda.get_device_name(0) if gpu else "no GPU"
    print(f"# facevoice GPU check\n\ntorch {torch.__version__}, CUDA {torch.version.cuda}, {name}, "
          f"{os.cpu_count()} CPUs")
    if not gpu and not args.smoke:
        print("no CUDA device is visible: nothing to check (use --smoke to try the steps on the CPU)", file=sys.stderr)
        return 2
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    check_mtcnn(cfg["faces"], gpu, args.smoke)
    with tempfile.TemporaryDirectory() as tmp:
        failed = check_training(args, methods, Path(tmp))
    print(f"\ngpu check done in {elapsed():.0f} s")
    if failed:
        print(f"{failed} method(s) FAILED: see the traceback(s) above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
