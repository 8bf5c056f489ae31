"""Small media makers for the tests: real files made with the real ffmpeg binary."""

from __future__ import annotations

import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# A hang guard for subprocesses, never a speed target: only a process that does not end reaches it,
# so a test passes on a loaded machine as on a quiet one (speed belongs in benchmarks/).
HANG_S = 3600


def ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def sample_face() -> str:
    """A real photograph of one face shipped with matplotlib."""
    import matplotlib.cbook as cb

    return str(cb.get_sample_data("grace_hopper.jpg", asfileobj=False))


def image_video(path: Path, image: str | None, seconds: float = 3.0, audio: str | None = "sine",
                size: str = "320:272", extra_vf: str = "") -> Path:
    """An H.264 mp4 of a still image (or black frames when image is None) with optional audio."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [ffmpeg(), "-y", "-loglevel", "error"]
    if image:
        cmd += ["-loop", "1", "-i", image]
    else:
        cmd += ["-f", "lavfi", "-i", f"color=c=gray:s=320x272:r=25:d={seconds}"]
    if audio == "sine":
        cmd += ["-f", "lavfi", "-i", f"sine=frequency=220:duration={seconds}"]
    elif audio:
        cmd += ["-i", audio]
    vf = f"scale={size}" + (f",{extra_vf}" if extra_vf else "")
    cmd += ["-t", str(seconds), "-r", "25", "-vf", vf, "-c:v", "libx264", "-pix_fmt", "yuv420p"]
    cmd += ["-c:a", "aac", "-ar", "16000"] if audio else ["-an"]
    subprocess.run(cmd + [str(path)], check=True)
    return path


def two_faces_image(out: Path) -> Path:
    """Two copies of the sample face side by side: a frame with several faces."""
    from PIL import Image

    im = Image.open(sample_face()).convert("RGB")
    both = Image.new("RGB", (im.width * 2, im.height))
    both.paste(im, (0, 0))
    both.paste(im, (im.width, 0))
    both.save(out)
    return out


def write_meta(root: Path, rows: list[tuple[str, str, str, str, str]], splits: list[tuple[str, int]]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    lines = ["VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet"] + ["\t".join(r) for r in rows]
    (root / "vox1_meta.csv").write_text("\n".join(lines) + "\n")
    (root / "identity_splits.txt").write_text("".join(f"{n} {s}\n" for n, s in splits))


def snakemake(*args: str, cwd: Path = REPO, timeout: float = HANG_S) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("snakemake")
    cmd = [str(exe) if exe.exists() else shutil.which("snakemake"), *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


# --------------------------------------------------------------------------- training tests


def random_batch(n_bins: int, P: int = 4, K: int = 2, size: int = 32, frames: int = 40, seed: int = 0):
    """A P x K batch of random faces (B, 3, size, size) in [0, 1], voices (B, n_bins, frames), labels."""
    import torch

    g = torch.Generator().manual_seed(seed)
    faces = torch.rand(P * K, 3, size, size, generator=g)
    voices = torch.randn(P * K, n_bins, frames, generator=g)
    labels = torch.arange(P).repeat_interleave(K)
    return faces, voices, labels


def n_bins_of(hp: dict) -> int:
    """Bins of the voice feature a method reads (the synthetic corpus's and the pipeline's sizes)."""
    return {"logmel": 64, "spectrogram": 257, "mfcc": 25}[hp["voice_feature"]]


def grads_of(model, loss) -> dict:
    """Gradients of ``loss`` at every trainable parameter of ``model`` (by name)."""
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad for n, p in model.named_parameters() if p.requires_grad}


class Cells(HTMLParser):
    """An HTML page read with the standard library's parser: the text of every header and data
    cell, row by row, and of every list item (the notes)."""

    def __init__(self, text: str):
        super().__init__()
        self.rows, self.notes, self._into = [], [], None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        if tag in ("td", "th"):
            self.rows[-1].append("")
            self._into = self.rows[-1]
        if tag == "li":
            self.notes.append("")
            self._into = self.notes

    def handle_endtag(self, tag):
        if tag in ("td", "th", "li"):
            self._into = None

    def handle_data(self, data):
        if self._into is not None:
            self._into[-1] += data
