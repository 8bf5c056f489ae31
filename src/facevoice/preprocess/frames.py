"""Frames stage: decode each clip's frames at ``frames.fps``, at most ``frames.max_per_clip``.

A job decodes one batch of clips (:mod:`facevoice.data.batch`): ``facevoice frames --source JSON
--identity ID --part N --output OUT.parquet``, or one media file: ``--input CLIP.mp4``.

Input is a video file (decoded with the ffmpeg binary of imageio-ffmpeg, through its
``read_frames`` reader and ffmpeg's ``fps`` filter) or, for the VoxCeleb1 layout, a folder of
face-track JPEGs (VoxCeleb1 ships them at 1 frame per second; they are taken as they are,
sub-sampled only when ``frames.fps`` is below 1), or one image file (``.jpg``, ``.jpeg``,
``.png``: the FAME challenge's official test faces, one frame each, frame index 0).

When more frames than the cap are available, the kept ones are spread evenly over the clip
(indices ``round(linspace(0, n - 1, cap))``), so the cap never favours the clip's start.

Output: a batch file with one row per kept frame: ``clip``, ``frame_index`` (index among the frames sampled
at ``fps``), ``time_s``, ``width``, ``height`` and ``image`` (JPEG, quality 95). A corrupt or
truncated video (one whose frames stop more than a frame short of the duration in its
header), or one with no decodable frame, is rejected with the reason.
"""

from __future__ import annotations

import io
import math
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
from PIL import Image

from facevoice.common.config import check_section
from facevoice.data import batch
from facevoice.data.batch import Result

STAGE = "frames"
SCHEMA = pa.schema([
    ("frame_index", pa.int32()),
    ("time_s", pa.float64()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("image", pa.binary()),
])
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png"}


def select_indices(n_available: int, cap: int) -> list[int]:
    """Indices of at most ``cap`` frames spread evenly over ``n_available``."""
    if n_available <= cap:
        return list(range(n_available))
    return sorted({int(round(x)) for x in np.linspace(0, n_available - 1, cap)})


def _jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _ffmpeg_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    useful = [ln for ln in text if any(k in ln.lower() for k in ("invalid", "error", "moov", "not found", "could not"))]
    return (useful or text or [type(exc).__name__])[-1].strip()[:300]


class TruncatedVideo(RuntimeError):
    """The video decodes, but stops early."""


class ShortVideo(Exception):
    """The video is shorter than one frame interval at the configured rate."""


def _video_frames(path: str, fps: float, cap: int) -> Iterator[tuple[int, float, np.ndarray]]:
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(
        path, pix_fmt="rgb24", output_params=["-vf", f"fps={fps}"], bits_per_pixel=24
    )
    meta = next(reader)
    w, h = meta["size"]
    duration = float(meta.get("duration") or 0.0)
    n_expected = max(1, int(math.floor(duration * fps + 1e-6))) if duration > 0 else None
    keep = set(select_indices(n_expected, cap)) if n_expected else None
    last = -1
    try:
        for i, raw in enumerate(reader):
            last = i
            if keep is not None and i not in keep:
                if i > max(keep):
                    break
                continue
            frame = np.frombuffer(raw, dtype=np.uint8).reshape(h, w, 3)
            yield i, i / fps, frame
            if keep is None and i + 1 >= cap:
                break
    finally:
        reader.close()
    if last < 0 and 0 < duration * fps < 1:
        raise ShortVideo(f"the video is {duration:.2f} s long, shorter than one frame interval at frames.fps "
                         f"{fps:g} ({1 / fps:.2f} s): no frame to take")
    # A truncated file often decodes without an error, just short: its frames stop well
    # before the duration its header announces (one frame of slack for rounding).
    if n_expected and last < n_expected - 2:
        raise TruncatedVideo(f"frames end at {max(last, 0) / fps:.1f} s of the {duration:.1f} s announced")


def _folder_frames(path: Path, fps: float, cap: int) -> Iterator[tuple[int, float, np.ndarray]]:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    step = max(1, int(round(1.0 / fps))) if fps < 1 else 1
    files = files[::step]
    for i in select_indices(len(files), cap):
        with Image.open(files[i]) as im:
            yield i, i * step / 1.0, np.asarray(im.convert("RGB"))


def _image_frames(path: Path) -> Iterator[tuple[int, float, np.ndarray]]:
    """A single face image (the FAME challenge's official test items) as one frame."""
    with Image.open(path) as im:
        yield 0, 0.0, np.asarray(im.convert("RGB"))


def _frames(src: Path, fps: float, cap: int) -> Iterator[tuple[int, float, np.ndarray]]:
    """The frames of a source: a folder of face-track images, one image file, or a video."""
    if src.is_dir():
        return _folder_frames(src, fps, cap)
    if src.suffix.lower() in IMAGE_EXTENSIONS:
        return _image_frames(src)
    return _video_frames(str(src), fps, cap)


def check(params: dict[str, Any]) -> dict[str, Any]:
    """Config's complete ``frames:`` section, checked against the schema (a key left out is an
    error naming it, never a default); returns a copy."""
    return check_section(STAGE, params)


def decode_clip(source: str, params: dict[str, Any]) -> Result:
    """One clip's frames (a video file, a folder of face-track images, or one image) as a Result."""
    fps = float(params["fps"])
    cap = int(params["max_per_clip"])
    src = Path(source)
    if not src.exists():
        # VoxCeleb1 ships no face track for some utterances; that is a reject, not an error.
        return Result.rejected(f"no face frames at {src}")
    rows: dict[str, list] = {k: [] for k in SCHEMA.names}
    try:
        for idx, t, rgb in _frames(src, fps, cap):
            rows["frame_index"].append(idx)
            rows["time_s"].append(t)
            rows["height"].append(rgb.shape[0])
            rows["width"].append(rgb.shape[1])
            rows["image"].append(_jpeg(rgb))
    except ShortVideo as exc:
        return Result.rejected(str(exc))
    except (OSError, RuntimeError, StopIteration, ValueError) as exc:
        what = "unreadable face frames" if src.is_dir() else "corrupt or truncated video"
        return Result.rejected(f"{what}: {_ffmpeg_error(exc)}")
    if not rows["image"]:
        what = "no face frames in the folder" if src.is_dir() else "no decodable frame in the video"
        return Result.rejected(what)
    return Result("ok", None, pa.table(rows, schema=SCHEMA), {"n_frames": len(rows["image"])})


def processor(params: dict[str, Any]) -> batch.PerClip:
    """Clips one at a time, the way :func:`decode_clip` does one."""
    return batch.PerClip(decode_clip, params)


CODE = batch.code_key(__file__, ["imageio-ffmpeg", "pillow", "numpy"])


def run(input_path: str, output_path: str, params: dict[str, Any]) -> dict[str, Any]:
    """One clip (a media file or frames folder) as a batch file of one clip; returns its record."""
    params = check(params)
    items = batch.source_items([(Path(input_path).stem, str(input_path))], STAGE, params, CODE)
    return batch.run_job(STAGE, items, processor(params), SCHEMA, output_path,
                         {"params": params, "code": CODE}, progress=False)[0]


def main(argv: list[str] | None = None) -> int:
    return batch.main(STAGE, __doc__, argv, SCHEMA, CODE, check, processor, source_column=1)


if __name__ == "__main__":
    sys.exit(main())
