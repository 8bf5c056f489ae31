"""Preprocessing benchmarks: prints figures as tables; asserts nothing, times no test.

    .venv/bin/python benchmarks/bench_preprocess.py [--corpus data/demo] [--clips 12] [--smoke]

1. MTCNN frames per second, batched vs one image per call (same frames, same detector), on
   the CPU and, where there is one, on the GPU.
2. Real-time factor of speech filtering + features (in-process, and per job with the
   Python start-up a Snakemake job pays); the three speech filters (webrtcvad, energy,
   Silero VAD) side by side: real-time factor, and frame-level precision and recall of
   speech on demo voices with silence and noise spliced in at known places.
3. Parquet shard read throughput vs reading the same items from individual files.
4. Peak memory (max RSS) of each stage's job on one batch, and of the shard writer at two
   corpus sizes (a writer that streams stays flat).

The whole pipeline's CPU per clip against a warm process, planning at VoxCeleb size and the
work after a change: `benchmarks/bench_scale.py`.

Needs the demo corpus (`facevoice demo`). ``--smoke``: every section at a tiny size (2 clips,
8 MTCNN frames, one repeat, shards of a few copies) in tens of seconds on a CPU;
``tests/test_benchmarks.py`` runs it.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pyarrow as pa  # noqa: E402
import yaml  # noqa: E402
from common import table  # noqa: E402

from facevoice.data import batch
from facevoice.preprocess import faces, features, frames, shards, speech


def bench_mtcnn(frame_files: list[Path], cfg: dict, repeats: int = 3, most: int = 64) -> None:
    import torch
    from PIL import Image

    images = []
    for f in frame_files:
        for row in pq.read_table(f).to_pylist():
            images.append(Image.open(io.BytesIO(row["image"])).convert("RGB"))
    size = images[0].size
    images = [im for im in images if im.size == size][:most]
    rows = []
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        det = faces.make_detector(cfg, device)
        for bs in sorted({b for b in (1, 8, 16) if b < len(images)} | {len(images)}):
            best = float("inf")
            for _ in range(repeats):
                t = time.perf_counter()
                if bs == 1:
                    for im in images:
                        det.detect(im, landmarks=True)
                else:
                    faces.detect(det, images, bs)
                if device == "cuda":
                    torch.cuda.synchronize()
                best = min(best, time.perf_counter() - t)
            rows.append([device, "one image per call" if bs == 1 else f"batch of {bs}", len(images), len(images) / best])
    table(f"MTCNN on {size[0]}x{size[1]} frames, best of {repeats} (CPU torch threads: {torch.get_num_threads()})",
          ["device", "mode", "frames", "frames/s"], rows)


def bench_speech(videos: list[Path], cfg: dict, work: Path) -> None:
    audio_s, t_speech, t_feat = 0.0, 0.0, 0.0
    for i, v in enumerate(videos):
        sp, ft = work / f"s{i}.parquet", work / f"f{i}.parquet"
        t = time.perf_counter()
        meta = speech.run(str(v), str(sp), cfg["speech"])
        t_speech += time.perf_counter() - t
        t = time.perf_counter()
        features.run(str(sp), str(ft), cfg["features"])
        t_feat += time.perf_counter() - t
        if meta.get("status") == "ok":
            audio_s += pq.read_table(sp, columns=["total_s"]).column(0)[0].as_py()
    t = time.perf_counter()
    py = [sys.executable, "-m"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    subprocess.run(py + ["facevoice.preprocess.speech", "--input", str(videos[0]), "--output", str(work / "j.parquet"),
                         "--params", json.dumps(cfg["speech"])], check=True, env=env, capture_output=True)
    subprocess.run(py + ["facevoice.preprocess.features", "--input", str(work / "j.parquet"), "--output", str(work / "k.parquet"),
                         "--params", json.dumps(cfg["features"])], check=True, env=env, capture_output=True)
    per_job = time.perf_counter() - t
    n = len(videos)
    table(f"Speech filtering ({cfg['speech']['method']}) + features ({', '.join(cfg['features']['kinds'])})",
          ["measure", "value"],
          [["clips", n], ["audio seconds", audio_s],
           ["real-time factor, in process (speech + features)", (t_speech + t_feat) / audio_s],
           ["  of which speech", t_speech / audio_s], ["  of which features", t_feat / audio_s],
           ["seconds per clip as two jobs (with Python start-up)", per_job]])


def repeated_batch(path: Path, out: Path, repeat: int) -> Path:
    """A batch file holding every clip of ``path`` ``repeat`` times under new clip names."""
    reader = batch.BatchReader(path)
    schema = pa.schema([f for f in reader.file.schema_arrow if f.name != "clip"])
    with batch.batch_writer(out, schema, {"stage": reader.meta["stage"]}) as w:
        for r in range(repeat):
            for i, rec in enumerate(reader.records):
                res = batch.Result(rec["status"], rec.get("reason"), reader.rows(rec) if rec["rows"] else None)
                w.add(f"id/v{r:03d}/{i:05d}", f"{r}-{i}", res)
    reader.close()
    return out


def bench_vad(videos: list[Path], cfg: dict) -> None:
    """Each speech filter on the same labelled signal (facevoice.testing.spliced_speech)."""
    from facevoice.testing import GAPS, speech_scores, spliced_speech

    sr = 16000
    voices = [speech.decode(v, sr)["audio"] for v in videos]
    y, labels = spliced_speech([v for v in voices if v is not None], sr, seed=0)
    rows = []
    for method in speech.METHODS:
        p = speech.check_params({**cfg["speech"], "sample_rate": sr, "method": method})
        t = time.process_time()
        speech._ranges(y[:sr], sr, p)  # loads the method's model, if any
        load = time.process_time() - t
        t = time.process_time()
        ranges = speech._ranges(y, sr, p)
        rtf = (time.process_time() - t) / (len(y) / sr)
        sc = speech_scores(ranges, labels, sr)
        rows.append([method, f"{rtf:.4f}", load, sc["precision"], sc["recall"], sc["kept_of_gaps"]])
    gaps = ", ".join(f"{k}{'' if lv is None else f' {lv:g} dBFS'} {s:g} s" for k, s, lv in GAPS)
    table(f"Speech filters on {len(voices)} demo voices with gaps spliced in ({gaps}); 10 ms frames, CPU seconds",
          ["method", "real-time factor", "model load s", "precision", "recall", "share of gaps kept"], rows)


def bench_shard_read(face_batch: Path, feat_batch: Path, work: Path, repeat: int = 40) -> None:
    """The same items read from shards and from one file per item, into the same objects."""
    shard = work / "face-00000.parquet"
    shards.write_shard([str(repeated_batch(face_batch, work / "faces-x.parquet", repeat))], str(shard), "face", "train")
    kinds = ["spectrogram", "logmel", "mfcc"]
    vshard = work / "voice-00000.parquet"
    shards.write_shard([str(repeated_batch(feat_batch, work / "features-x.parquet", repeat))], str(vshard), "voice",
                       "train", kinds)
    single = work / "single"
    single.mkdir()
    images = pq.read_table(shard, columns=["image"]).column("image").to_pylist()
    for i, img in enumerate(images):
        (single / f"face{i:06d}.png").write_bytes(img)
    vt = pq.read_table(vshard, columns=["logmel", "logmel_bins"])
    for i, (vals, bins) in enumerate(zip(vt.column("logmel").to_pylist(), vt.column("logmel_bins").to_pylist())):
        np.save(single / f"voice{i:06d}.npy", np.asarray(vals, np.float32).reshape(bins, -1))
    os.sync()

    def timed(fn):
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        return best

    def voices_from_shard():
        t = pq.read_table(vshard, columns=["logmel", "logmel_bins"])
        col = t.column("logmel").combine_chunks()
        flat, offs = col.values.to_numpy(), col.offsets.to_numpy()
        bins = t.column("logmel_bins").to_numpy()
        return [flat[offs[i]:offs[i + 1]].reshape(bins[i], -1) for i in range(len(bins))]

    rows = []
    t_shard = timed(lambda: pq.read_table(shard, columns=["image"]).column("image").to_pylist())
    t_files = timed(lambda: [p.read_bytes() for p in sorted(single.glob("face*.png"))])
    rows.append(["faces (PNG bytes)", len(images), len(images) / t_shard, len(images) / t_files])
    t_shard = timed(voices_from_shard)
    t_files = timed(lambda: [np.load(p) for p in sorted(single.glob("voice*.npy"))])
    rows.append(["voices (log-mel arrays)", vt.num_rows, vt.num_rows / t_shard, vt.num_rows / t_files])
    table("Read throughput, warm page cache (best of 3)", ["items", "n", "shard items/s", "one file per item, items/s"],
          rows)


def peak_rss_mb(module: str, args: list[str]) -> float:
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['x'] + {args!r}\n"
        "code = 0\n"
        "try:\n"
        f"    runpy.run_module({module!r}, run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    code = e.code\n"
        # VmHWM: this process's own peak (ru_maxrss would carry over the forking parent's)
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "print('MAXRSS', hwm, code, file=sys.stderr)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    line = [ln for ln in res.stderr.splitlines() if ln.startswith("MAXRSS")]
    # a job that stopped early (a bad argument, an error it reported) would show a small, false peak
    if not line or line[-1].split()[2] not in ("0", "None"):
        raise RuntimeError(f"{module} failed: {res.stderr[-2000:]}")
    return int(line[-1].split()[1]) / 1024.0


def bench_memory(videos: list[Path], cfg: dict, work: Path, face_batch: Path, repeats=(2, 8)) -> None:
    """Peak memory of each stage's job on one batch of the given clips, and of the shard writer."""
    j = lambda d: json.dumps(d)  # noqa: E731
    data = work / "mem-videos" / "idmem" / "v"
    data.mkdir(parents=True)
    for i, v in enumerate(videos):
        os.symlink(v, data / f"{i:05d}.mp4")
    source = j({**cfg["input"], "layout": "videos", "videos": str(work / "mem-videos")})
    batch_args = ["--source", source, "--identity", "idmem", "--no-progress"]
    rows = []
    steps = [
        ("frames", "facevoice.preprocess.frames", batch_args + ["--output", str(work / "m_fr.parquet"), "--params", j(cfg["frames"])]),
        ("faces", "facevoice.preprocess.faces", ["--input", str(work / "m_fr.parquet"), "--output", str(work / "m_fa.parquet"),
                                      "--params", j(cfg["faces"]), "--no-progress"]),
        ("speech", "facevoice.preprocess.speech", batch_args + ["--output", str(work / "m_sp.parquet"), "--params", j(cfg["speech"])]),
        ("features", "facevoice.preprocess.features", ["--input", str(work / "m_sp.parquet"), "--output", str(work / "m_ft.parquet"),
                                            "--params", j(cfg["features"]), "--no-progress"]),
    ]
    for name, mod, args in steps:
        mb = peak_rss_mb(mod, args)
        out = batch.BatchReader(args[args.index("--output") + 1])
        ok = sum(1 for r in out.records if r["status"] == "ok")
        out.close()
        if not ok:  # a batch of failed clips costs little memory: its figure would mislead
            raise RuntimeError(f"the {name} job kept no clip of {len(videos)}: see its batch file's reasons")
        rows.append([name, f"a batch of {len(videos)} clips ({ok} ok)", mb])
    for repeat in repeats:
        big = repeated_batch(face_batch, work / f"m_rep{repeat}.parquet", repeat)
        args = ["write", "--modality", "face", "--split", "train", "--compression", cfg["shards"]["compression"],
                "--output", str(work / f"m_sh{repeat}.parquet"), str(big)]
        n = len(batch.BatchReader(big).records)
        rows.append(["shard writer", f"{n} clips", peak_rss_mb("facevoice.preprocess.shards", args)])
    table("Peak memory per job (max RSS, MB)", ["stage", "input", "MB"], rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "config.yaml"))
    ap.add_argument("--corpus", default=None, help="demo corpus folder (default: the config's demo.out)")
    ap.add_argument("--clips", type=int, default=None, help="default 12 (smoke: 2)")
    ap.add_argument("--smoke", action="store_true", help="every section at a tiny size: tens of seconds on a CPU")
    args = ap.parse_args()
    args.clips = args.clips or (2 if args.smoke else 12)
    cfg = yaml.safe_load(Path(args.config).read_text())
    # absolute: bench_memory links the clips from a temporary folder (a relative link would dangle)
    corpus = Path(args.corpus or cfg["demo"]["out"]).resolve()
    videos = sorted(corpus.glob("videos/*/*/*.mp4"))
    if not videos:
        print(f"no demo corpus at {corpus}: run `facevoice demo` first", file=sys.stderr)
        return 1
    random.Random(0).shuffle(videos)
    videos = videos[: args.clips]
    print(f"# facevoice preprocessing benchmarks\n\n{len(videos)} demo clips from {corpus}; "
          f"{os.cpu_count()} CPUs; torch threads default")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        frame_files = []
        face_batch, speech_batch, feat_batch = work / "faces.parquet", work / "speech.parquet", work / "features.parquet"
        for i, v in enumerate(videos):
            fr = work / f"fr{i}.parquet"
            frames.run(str(v), str(fr), cfg["frames"])
            frame_files.append(fr)
        bench_mtcnn(frame_files, cfg["faces"], *((1, 8) if args.smoke else (3, 64)))
        bench_speech(videos, cfg, work)
        bench_vad(videos, cfg)
        frames.run(str(videos[0]), str(work / "one.parquet"), cfg["frames"])
        faces.run(str(repeated_batch(work / "one.parquet", work / "frames.parquet", len(videos))), str(face_batch),
                  {**cfg["faces"], "device": "cpu"})
        speech.run(str(videos[0]), str(speech_batch), cfg["speech"])
        features.run(str(speech_batch), str(feat_batch), cfg["features"])
        bench_shard_read(face_batch, feat_batch, work, 2 if args.smoke else 40)
        bench_memory(videos, cfg, work, face_batch, (1, 2) if args.smoke else (2, 8))
    return 0


if __name__ == "__main__":
    sys.exit(main())
