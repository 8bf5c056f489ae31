"""Training benchmarks: prints figures as tables; asserts nothing, times no test.

    .venv/bin/python benchmarks/bench_train.py [--profile paper] [--P 4 --K 2] [--steps 2] [--smoke]

1. Training samples per second per method (and per stage) at full size: the ``paper``
   profile's networks (Inception-ResNet-V1 on 160 px faces, DIMNet-voice on 64-band
   log-mel, the single stream on 257-bin spectrograms), one optimizer step per batch of
   P identities x K faces x K voices held in memory. A sample is one face or one voice.
   On a CPU the default batch is small (P=4, K=2) so the run takes minutes; on CUDA the
   papers' 16 x 4 with mixed precision.
2. The data path: batches per second that the shard reader decodes and augments (PNG
   faces, voice crops) from synthetic shards of the same sizes, in one process.

The device is chosen as the trainer chooses it (CUDA when present).

``--smoke``: the same code paths at a tiny size (the ``debug`` profile's networks, P=2, K=2,
one step after one warm-up, two loader batches of 32 px faces) in seconds on a CPU;
``tests/test_benchmarks.py`` runs it.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import table  # noqa: E402

from facevoice.data.manifest import split_items
from facevoice.data.shard_reader import ShardReader
from facevoice.testing import synthetic_shards
from facevoice.training import train as tr  # noqa: E402
from facevoice.training.inference import autocast_dtype, choose_device
from facevoice.training.methods import get_method, resolve  # noqa: E402

BINS = {"logmel": 64, "spectrogram": 257, "mfcc": 25}




def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_method(name: str, profile: str, P: int, K: int, steps: int, warmup: int, device, amp: str,
                 n_classes: int = 901) -> list[list]:
    hp = resolve(name, profile)
    size = int(hp["face_size"] or 160)
    frames = int(sum(hp["crop_frames"]) // 2)
    bins = BINS[hp["voice_feature"]]
    torch.manual_seed(0)
    model = get_method(name).build(hp, n_classes, bins).to(device)
    dtype = autocast_dtype(device, amp)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    rows = []
    g = torch.Generator().manual_seed(0)
    faces = torch.rand(P * K, 3, size, size, generator=g).to(device)
    voices = torch.randn(P * K, bins, frames, generator=g).to(device)
    labels = torch.arange(P).repeat_interleave(K).to(device)
    for s, st in enumerate(model.stages()):
        model.set_stage(s)
        model.train()
        opt = tr.make_optimizer(model.stage_parameters(), st.optimizer)
        if st.cache:
            with torch.no_grad():
                model.eval()
                ff, fv = model.backbone_face(faces), model.backbone_voice(voices)
                model.train()

            def step():
                return model.loss_from_features(ff, fv, labels)[0]
            what = f"{st.name} (heads on cached features)"
        else:
            def step():
                return model.loss(faces, voices, labels)[0]
            what = st.name
        times = []
        for i in range(warmup + steps):
            sync(device)
            t0 = time.perf_counter()
            if dtype is not None:
                with torch.autocast("cuda", dtype=dtype):
                    loss = step()
            else:
                loss = step()
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
        sec = float(np.median(times))
        params = sum(p.numel() for p in model.stage_parameters()) / 1e6
        rows.append([name, what, f"{P}x{K}x{K}", f"{size}px / {bins}x{frames}", round(params, 2), f"{sec:.4f}",
                     2 * P * K / sec, 2 * P * K / min(times)])
    return rows


def bench_loader(P: int, K: int, profile: str, n_batches: int = 6) -> list[list]:
    rows = []
    hps = {name: resolve(name, profile) for name in ("dje", "ssnet_fop")}
    size = max(int(hp["face_size"] or 160) for hp in hps.values())
    longest = max(max(hp["crop_frames"]) for hp in hps.values())
    with tempfile.TemporaryDirectory() as d:
        manifest = synthetic_shards(d, identities={"train": max(P, 8)}, clips=2, faces_per_clip=8,
                                    image_size=size, frames=(int(longest * 4 // 3), int(longest * 8 // 3)),
                                    kinds=("logmel", "spectrogram"), clips_per_shard=64)
        items = split_items(pd.read_parquet(manifest), "train")
        for name, hp in hps.items():
            plan = tr.plan_epoch(items, P, K, n_batches, 0, 1)
            ds = tr.BatchDataset(plan, items.items, ShardReader(Path(d) / "shards"), hp, 0, 1)
            ds[0]
            t0 = time.perf_counter()
            for b in range(n_batches):
                ds[b]
            sec = (time.perf_counter() - t0) / n_batches
            rows.append([f"{hp['voice_feature']} + {size} px faces (as {name})", f"{P}x{K}x{K}", f"{sec:.4f}",
                         2 * P * K / sec])
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny: debug profile, P=2 K=2, one step; seconds on a CPU")
    ap.add_argument("--profile", default=None, help="default paper (smoke: debug)")
    ap.add_argument("--methods", default="ssnet_fop,dje,biq_mwrn")
    ap.add_argument("--P", type=int, default=None)
    ap.add_argument("--K", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--amp", default="auto")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-loader", action="store_true")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = choose_device(a.device)
    gpu = device.type == "cuda"
    a.profile = a.profile or ("debug" if a.smoke else "paper")
    P = a.P or (2 if a.smoke else 16 if gpu else 4)
    K = a.K or (2 if a.smoke else 4 if gpu else 2)
    steps = a.steps or (1 if a.smoke else 10 if gpu else 4)
    warmup = 1 if a.smoke or not gpu else 3
    name = torch.cuda.get_device_name(device) if gpu else f"{platform.processor() or platform.machine()} CPU"
    dtype = autocast_dtype(device, a.amp)
    print(f"device: {device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"precision {str(dtype).replace('torch.', '') if dtype else 'float32'}")
    rows = []
    for m in a.methods.split(","):
        rows += bench_method(m, a.profile, P, K, steps, warmup, device, a.amp)
    table(f"Training step, {a.profile} profile (median of {steps} steps after {warmup} warm-up)",
          ["method", "stage", "batch P x K x K", "inputs", "trainable M params", "s / step (median)",
           "samples / s (median)", "samples / s (best)"], rows)
    if not a.no_loader:
        table("Data path: decode + augment one batch from shards (one process)",
              ["batch", "P x K x K", "s / batch", "samples / s"],
              bench_loader(P, K, a.profile, 2 if a.smoke else 6))
    return 0


if __name__ == "__main__":
    sys.exit(main())
