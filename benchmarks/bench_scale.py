"""Scale benchmarks: prints figures as tables; asserts nothing, times no test.

    .venv/bin/python benchmarks/bench_scale.py [--identities 6] [--clips 120] [--plan-sizes 10k,40k,vox1] [--smoke]

1. **Planning**: CPU seconds and peak memory of ``snakemake -n`` (the whole workflow, every
   method trained and evaluated) on placeholder trees (empty clip files) of about 10,000 and
   40,000 clips and of VoxCeleb1's size (1,251 identities x 17 videos x 7 clips).
2. **Preprocessing CPU per clip**: real demo media copied under new identities of
   ``--clips`` clips each (VoxCeleb1 has 119 a identity on average), every copy's bytes
   made unique (remuxed with its own metadata tag, so no cache can recognise it); the
   pipeline up to the manifest (frames, faces, speech, features, shards) through Snakemake,
   every process counted (``/usr/bin/time`` of the Snakemake run: its own CPU and its jobs'),
   against the same stage calls made in one warm process over the same clips.
3. **Incremental work**: after editing one clip, adding one identity, and changing a features
   parameter: jobs run, clips computed (not reused from the cache), shards rewritten.

Needs the demo corpus (`facevoice demo`). Wall time on a shared machine is noise; CPU
seconds and memory are the figures. ``--smoke``: the same three sections at a tiny size
(planning a tree of 24 clips; one identity of 2 clips of real media, then one more) in about a
minute of CPU (each Snakemake job pays its Python start-up);
``tests/test_benchmarks.py`` runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import table  # noqa: E402

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
PLAN_SIZES = {"tiny": (6, 2, 2), "10k": (84, 17, 7), "40k": (336, 17, 7), "vox1": (1251, 17, 7)}




def write_meta(data: Path, idents: list[str], splits: dict[str, str]) -> None:
    codes = {"train": 1, "val": 2, "test": 4}
    rows = [f"{i}\tPerson_{i}\t{'mf'[n % 2]}\tUSA\tdev" for n, i in enumerate(idents)]
    (data / "vox1_meta.csv").write_text("VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet\n" + "\n".join(rows) + "\n")
    (data / "identity_splits.txt").write_text("".join(f"Person_{i} {codes[splits[i]]}\n" for i in idents))


def split_of(n: int, total: int) -> str:
    return "test" if n < max(1, total // 6) else ("val" if n < max(2, total // 3) else "train")


def write_config(root: Path, data: Path, dataset: str, buckets: int, methods: bool) -> Path:
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg.update(dataset=dataset, results=str(root / "results"))
    cfg["input"].update(layout="videos", videos=str(data / "videos"), meta=str(data / "vox1_meta.csv"),
                        splits=str(data / "identity_splits.txt"))
    cfg["shards"]["buckets"] = buckets
    if not methods:
        cfg["train"]["methods"] = []
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def timed(cmd: list[str], cwd: Path) -> tuple[float, float, str]:
    """(CPU seconds of the command and every process it waited for, peak RSS in MB, output)."""
    res = subprocess.run(["/usr/bin/time", "-f", "TIME %U %S %M", *cmd], cwd=cwd, capture_output=True, text=True)
    line = [ln for ln in res.stderr.splitlines() if ln.startswith("TIME ")]
    if res.returncode != 0 or not line:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    _, user, system, rss = line[-1].split()
    return float(user) + float(system), int(rss) / 1024.0, res.stdout + res.stderr


def snakemake(root: Path, *args: str) -> list[str]:
    return [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(root), "--configfile", str(root / "config.yaml"),
            "--cores", "2", *args]


# --------------------------------------------------------------------------- 1. planning


def bench_planning(work: Path, sizes: list[str]) -> None:
    rows = []
    for name in sizes:
        n_id, n_vid, n_clip = PLAN_SIZES[name]
        root = work / f"plan-{name}"
        data = root / "data"
        idents = [f"id{10001 + i}" for i in range(n_id)]
        for ident in idents:
            for v in range(n_vid):
                d = data / "videos" / ident / f"vid{v:08d}"
                d.mkdir(parents=True, exist_ok=True)
                for c in range(n_clip):
                    (d / f"{c + 1:05d}.mp4").touch()
        write_meta(data, idents, {i: split_of(n, n_id) for n, i in enumerate(idents)})
        buckets = max(4, n_id // 10)
        write_config(root, data, name, buckets, methods=True)
        cpu, rss, out = timed(snakemake(root, "-n"), root)
        jobs = re.search(r"^total\s+(\d+)", out, re.M)
        rows.append([name, n_id * n_vid * n_clip, n_id, buckets, int(jobs.group(1)) if jobs else "?", cpu, rss])
        shutil.rmtree(root)
    table("Planning (`snakemake -n`, every method trained and evaluated; placeholder clips)",
          ["tree", "clips", "identities", "shards.buckets", "jobs", "CPU s", "peak MB"], rows)


# --------------------------------------------------------------------------- 2. real media


def unique_copy(ffmpeg: str, src: Path, dst: Path, tag: str) -> None:
    """The same media with a metadata tag of its own: other bytes, same frames and audio."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([ffmpeg, "-y", "-loglevel", "error", "-i", str(src), "-map", "0", "-c", "copy",
                    "-metadata", f"comment={tag}", str(dst)], check=True)


def build_corpus(corpus: Path, data: Path, n_id: int, n_clip: int, first: int = 0) -> list[str]:
    import imageio_ffmpeg

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    clips = sorted(corpus.glob("videos/*/*/*.mp4"))
    idents = []
    for i in range(first, first + n_id):
        ident = f"id{20001 + i}"
        idents.append(ident)
        for c in range(n_clip):
            src = clips[(i * n_clip + c) % len(clips)]
            unique_copy(ffmpeg, src, data / "videos" / ident / f"v{c // 7:04d}" / f"{c % 7 + 1:05d}.mp4",
                        f"{ident}-{c}")
    return idents


def warm_reference(data: Path, cfg: dict) -> tuple[float, float, int]:
    """CPU seconds of the same stage calls in one process: (after start-up, start-up, clips)."""
    code = f"""
import json, resource, sys, io
sys.path.insert(0, {str(REPO / 'src')!r})
def cpu():
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime
from pathlib import Path
from facevoice.preprocess import frames
from facevoice.preprocess import faces
from facevoice.preprocess import speech
from facevoice.preprocess import features
cfg = json.loads({json.dumps(json.dumps(cfg))})
fp, sp, fe = frames.check(cfg["frames"]), speech.check_params(cfg["speech"]), features.check_params(cfg["features"])
fa = faces.Processor(faces.check(cfg["faces"])); fa._load()
features.compute(__import__("numpy").zeros(16000, "float32"), 16000, fe)  # librosa warm
start = cpu()
clips = sorted(Path({str(data)!r}).glob("videos/*/*/*.mp4"))
for clip in clips:
    fr = frames.decode_clip(str(clip), fp)
    if fr.status == "ok":
        fa.process([fr.table])
    s = speech.filter_clip(str(clip), sp)
    if s.status == "ok":
        features.features_of(s.table, fe)
print("WARM", cpu() - start, start, len(clips))
"""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("WARM")]
    if not line:
        raise RuntimeError(res.stderr[-3000:])
    _, work, startup, n = line[-1].split()
    return float(work), float(startup), int(n)


def run_counts(root: Path, dataset: str, since: float) -> tuple[int, int]:
    """(jobs run, clips computed) of the run that began at ``since``, from the jobs' logs."""
    jobs, computed = 0, 0
    for log in (root / "results" / dataset / "logs").rglob("*.log"):
        if log.stat().st_mtime < since:
            continue
        jobs += 1
        for m in re.finditer(r"(\d+) computed", log.read_text(errors="replace")):
            computed += int(m.group(1))
    return jobs, computed


def shard_state(root: Path, dataset: str) -> dict[str, tuple[int, int]]:
    """Each shard's (inode, mtime): a file deleted and written again may get its inode back."""
    return {str(p): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in (root / "results" / dataset / "shards").glob("*/*.parquet")}


def bench_preprocessing(work: Path, corpus: Path, n_id: int, n_clip: int) -> None:
    root = work / "media"
    data = root / "data"
    idents = build_corpus(corpus, data, n_id, n_clip)
    write_meta(data, idents, {i: split_of(n, n_id) for n, i in enumerate(idents)})
    cfg_path = write_config(root, data, "scale", buckets=4, methods=False)
    cfg = yaml.safe_load(cfg_path.read_text())
    n = n_id * n_clip
    cpu, rss, _ = timed(snakemake(root, "manifest"), root)
    warm, startup, n_warm = warm_reference(data, cfg)
    table(f"Preprocessing CPU per clip: {n} clips of real media, {n_id} identities of {n_clip} clips",
          ["what", "CPU s", "CPU s per clip", "peak MB"],
          [["Snakemake, frames to manifest, every process", cpu, cpu / n, rss],
           ["one warm process, the same stage calls (start-up not counted)", warm, warm / n_warm, "-"],
           ["  its start-up (imports, MTCNN, librosa), once", startup, "-", "-"],
           ["ratio pipeline / warm", cpu / warm, "-", "-"]])
    bench_incremental(root, data, corpus, cfg_path, idents, n_clip)


def bench_incremental(root: Path, data: Path, corpus: Path, cfg_path: Path, idents: list[str], n_clip: int) -> None:
    import imageio_ffmpeg

    rows = []

    def step(what: str, change) -> None:
        before = shard_state(root, "scale")
        change()
        time.sleep(1.1)
        since = time.time()
        cpu, _, _ = timed(snakemake(root, "manifest"), root)
        jobs, computed = run_counts(root, "scale", since)
        after = shard_state(root, "scale")
        rewritten = sum(1 for p, state in after.items() if before.get(p) != state)
        rows.append([what, jobs, computed, f"{rewritten} of {len(after)}", cpu])

    clip = sorted((data / "videos" / idents[-1]).glob("*/*.mp4"))[0]

    def edit() -> None:
        tmp = clip.with_name(".edited.mp4")  # hidden: not a clip of the tree
        unique_copy(imageio_ffmpeg.get_ffmpeg_exe(), clip, tmp, "edited")
        os.replace(tmp, clip)

    def add() -> None:
        new = build_corpus(corpus, data, 1, n_clip, first=len(idents))
        write_meta(data, idents + new, {i: split_of(n, len(idents)) if i in idents else "train"
                                        for n, i in enumerate(idents + new)})

    def feature_param() -> None:
        cfg = yaml.safe_load(cfg_path.read_text())
        cfg["features"]["logmel"]["n_mels"] = 40
        cfg_path.write_text(yaml.safe_dump(cfg))

    step("edit one clip", edit)
    step(f"add one identity ({n_clip} clips)", add)
    step("change features.logmel.n_mels", feature_param)
    table("Work after a change (up to the manifest)",
          ["change", "jobs run", "clips computed", "shards rewritten", "CPU s"], rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=str(REPO / "data" / "demo"), help="the demo corpus (facevoice demo)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (tiny tree; 1 identity x 2 clips)")
    ap.add_argument("--identities", type=int, default=None, help="default 6 (smoke: 1)")
    ap.add_argument("--clips", type=int, default=None, help="clips per identity: default 120 (smoke: 2)")
    ap.add_argument("--plan-sizes", default=None, help=f"of {', '.join(PLAN_SIZES)}: default 10k,40k,vox1 "
                                                       "(smoke: tiny)")
    ap.add_argument("--skip-media", action="store_true")
    ap.add_argument("--work", default=None, help="a scratch folder (default: a temporary one)")
    args = ap.parse_args()
    args.identities = args.identities or (1 if args.smoke else 6)
    args.clips = args.clips or (2 if args.smoke else 120)
    args.plan_sizes = args.plan_sizes if args.plan_sizes is not None else ("tiny" if args.smoke else "10k,40k,vox1")
    unknown = [s for s in args.plan_sizes.split(",") if s and s not in PLAN_SIZES]
    if unknown:
        ap.error(f"--plan-sizes: unknown {', '.join(unknown)}; the sizes are {', '.join(PLAN_SIZES)}")
    corpus = Path(args.corpus)
    if not args.skip_media and not list(corpus.glob("videos/*/*/*.mp4")):
        print(f"no demo corpus at {corpus}: run `facevoice demo` first", file=sys.stderr)
        return 1
    print(f"# facevoice scale benchmarks\n\n{os.cpu_count()} CPUs; CPU seconds are user + system of every process")
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        sizes = [s for s in args.plan_sizes.split(",") if s]
        if sizes:
            bench_planning(work, sizes)
        if not args.skip_media:
            bench_preprocessing(work, corpus, args.identities, args.clips)
    return 0


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sys.exit(main())
