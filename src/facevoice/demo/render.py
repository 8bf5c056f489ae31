"""Rendering the demo's clips: each clip's look (a slow pan/zoom, brightness and gamma), its
frames from a face image or video, the MTCNN check of its first, middle and last frame, and
the deterministic H.264/AAC encoding; :func:`render_identity` makes all clips of one identity."""

from __future__ import annotations

import contextlib
import math
import subprocess
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from facevoice.common.io import atomic_path
from facevoice.common.version import file_sha256
from facevoice.demo.audio import ClipAudio, voice_clips
from facevoice.demo.base import DemoError, ffmpeg_exe, seeded_rng
from facevoice.demo.control import ControlIdentity, identity_seed, shift_voice, tint_frames
from facevoice.demo.plan import PlannedIdentity, clip_videos, video_id
from facevoice.demo.sources import Sources


class FaceRejected(Exception):
    """A face source cannot make the identity's clips (the builder drops it and plans again)."""


class VoiceRejected(Exception):
    """A voice source cannot make the identity's clips (the builder drops it and plans again)."""


# --------------------------------------------------------------------------------------
# frames


@dataclass(frozen=True)
class ClipLook:
    """Per-clip appearance: slow zoom/pan, brightness (gain with a drift) and gamma."""

    zoom0: float
    zoom1: float
    pan_x: float  # total pan over the clip, in units of the crop side
    pan_y: float
    gain: float
    drift: float
    gamma: float
    segment_u: float  # where in its time slot a video clip starts (0..1)


def clip_look(face_key: str, clip_index: int, seed: int) -> ClipLook:
    rng = seeded_rng(seed, "look", face_key, clip_index)
    zoom0 = float(rng.uniform(0.9, 1.05))
    zoom1 = float(np.clip(zoom0 + rng.choice([-1, 1]) * rng.uniform(0.05, 0.1), 0.85, 1.08))
    angle = float(rng.uniform(0, 2 * np.pi))
    amp = float(rng.uniform(0.03, 0.07))
    return ClipLook(zoom0=zoom0, zoom1=zoom1, pan_x=amp * math.cos(angle), pan_y=amp * math.sin(angle),
                    gain=float(rng.uniform(0.72, 1.25)), drift=float(rng.uniform(-0.12, 0.12)),
                    gamma=float(rng.uniform(0.78, 1.3)), segment_u=float(rng.uniform(0, 1)))


def _lut(gain: float, gamma: float) -> np.ndarray:
    v = np.arange(256, dtype=np.float64) / 255.0
    return np.clip(np.round(255.0 * gain * v ** gamma), 0, 255).astype(np.uint8)


class FaceSource:
    """A face image or video and the crop geometry around its face box."""

    def __init__(self, face: Mapping[str, Any], path: Path, size: int, fps: int = 25):
        self.face = face
        self.path = path
        self.size = size
        self.fps = fps
        x0, y0, x1, y1 = [float(v) for v in face["box"]]
        self.center = ((x0 + x1) / 2, (y0 + y1) / 2)
        self.side = float(face.get("context", 1.45)) * max(x1 - x0, y1 - y0)
        self._image = None
        self._scale = 1.0

    def image(self):
        from PIL import Image

        if self._image is None:
            im = Image.open(self.path)
            im.load()
            im = im.convert("RGB")
            # downscale large sources once, so the crop window is at most twice the output size
            r = min(1.0, 2.0 * self.size / self.side)
            if r < 1.0:
                im = im.resize((max(1, round(im.width * r)), max(1, round(im.height * r))),
                               Image.Resampling.LANCZOS)
            self._image, self._scale = im, r
        return self._image

    def _window(self, width: int, height: int, side: float, cx: float, cy: float) -> tuple[float, float, float, float]:
        side = min(side, width, height)
        cx = min(max(cx, side / 2), width - side / 2)
        cy = min(max(cy, side / 2), height - side / 2)
        return cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2

    def frames(self, clip_index: int, n_clips: int, n_frames: int, look: ClipLook) -> np.ndarray:
        """All frames of a clip, uint8 (n, size, size, 3)."""
        if self.face["kind"] == "video":
            frames = self._video_frames(clip_index, n_clips, n_frames, look)
        else:
            frames = self._image_frames(n_frames, look)
        t = np.linspace(0.0, 1.0, n_frames)
        for i in range(n_frames):
            frames[i] = _lut(look.gain * (1.0 + look.drift * (t[i] - 0.5)), look.gamma)[frames[i]]
        return frames

    def _image_frames(self, n_frames: int, look: ClipLook) -> np.ndarray:
        from PIL import Image

        im = self.image()
        r = self._scale
        out = np.empty((n_frames, self.size, self.size, 3), np.uint8)
        for i in range(n_frames):
            t = i / max(1, n_frames - 1)
            e = 0.5 - 0.5 * math.cos(math.pi * t)  # ease in and out
            side = self.side * r * (look.zoom0 + (look.zoom1 - look.zoom0) * e)
            cx = self.center[0] * r + look.pan_x * self.side * r * (e - 0.5)
            cy = self.center[1] * r + look.pan_y * self.side * r * (e - 0.5)
            box = self._window(im.width, im.height, side, cx, cy)
            frame = im.resize((self.size, self.size), Image.Resampling.BILINEAR, box=box)
            out[i] = np.asarray(frame)
        return out

    def _video_frames(self, clip_index: int, n_clips: int, n_frames: int, look: ClipLook) -> np.ndarray:
        a, b = [float(v) for v in self.face["segment"]]
        slot = (b - a) / n_clips
        dur = n_frames / self.fps
        if dur > slot:
            raise DemoError(f"face {self.face['key']}: {slot:.2f} s per clip is shorter than {dur:.2f} s")
        start = a + clip_index * slot + look.segment_u * (slot - dur)
        width, height = [int(v) for v in self.face["frame_size"]]
        zoom = (look.zoom0 + look.zoom1) / 2
        x0, y0, x1, y1 = self._window(width, height, self.side * zoom,
                                      self.center[0] + look.pan_x * self.side,
                                      self.center[1] + look.pan_y * self.side)
        side = int(round(x1 - x0)) // 2 * 2
        vf = (f"fps={self.fps},crop={side}:{side}:{int(round(x0))}:{int(round(y0))},"
              f"scale={self.size}:{self.size}:flags=bicubic")
        cmd = [ffmpeg_exe(), "-v", "error", "-ss", f"{start:.3f}", "-i", str(self.path), "-an", "-vf", vf,
               "-frames:v", str(n_frames), "-f", "rawvideo", "-pix_fmt", "rgb24", "-threads", "1", "-"]
        raw = subprocess.run(cmd, capture_output=True, check=True).stdout
        got = np.frombuffer(raw, np.uint8).reshape(-1, self.size, self.size, 3)
        if len(got) == 0:
            raise DemoError(f"face {self.face['key']}: no frames decoded at {start:.2f} s")
        if len(got) < n_frames:  # the last frames of a file: repeat the final one
            got = np.concatenate([got, np.repeat(got[-1:], n_frames - len(got), axis=0)])
        return got.copy()


# --------------------------------------------------------------------------------------
# MTCNN face checks


_MTCNN = None
_MTCNN_LOCK = threading.Lock()


def _mtcnn():
    global _MTCNN
    with _MTCNN_LOCK:
        if _MTCNN is None:
            from facenet_pytorch import MTCNN

            _MTCNN = MTCNN(keep_all=True, device="cpu", min_face_size=40)
    return _MTCNN


@contextlib.contextmanager
def torch_threads(n: int):
    """Run MTCNN with ``n`` intra-op threads (the build runs two identities at once), then
    restore the caller's setting (tests share the process with other torch code)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def warm_up() -> None:
    """Import the heavy modules and load MTCNN once, before worker threads start."""
    import librosa  # noqa: F401
    import librosa.effects  # noqa: F401
    import scipy.signal  # noqa: F401
    import soundfile  # noqa: F401

    librosa.resample(np.zeros(800, np.float32), orig_sr=8000, target_sr=16000, res_type="soxr_hq")
    _mtcnn()


def check_faces(frames: Sequence[np.ndarray], min_prob: float, min_px: int) -> tuple[bool, str, list[dict]]:
    """MTCNN on each frame: exactly one face with probability >= min_prob, >= min_px.

    Returns (ok, reason, per-frame measurements).
    """
    import torch
    from PIL import Image

    model = _mtcnn()
    with torch.no_grad():
        boxes, probs = model.detect([Image.fromarray(f) for f in frames])
    measures: list[dict] = []
    for b, p in zip(boxes, probs):
        if b is None:
            measures.append({"faces": 0})
            continue
        keep = [i for i, q in enumerate(p) if q is not None and q >= min_prob]
        if len(keep) != 1:
            measures.append({"faces": len(keep)})
            continue
        x0, y0, x1, y1 = b[keep[0]]
        measures.append({"faces": 1, "prob": round(float(p[keep[0]]), 4),
                         "px": int(round(max(x1 - x0, y1 - y0)))})
    for m in measures:
        if m["faces"] != 1:
            return False, f"{m['faces']} faces with probability >= {min_prob} in a checked frame", measures
        if m["px"] < min_px:
            return False, f"face of {m['px']} px (< {min_px})", measures
    return True, "", measures


# --------------------------------------------------------------------------------------
# encoding


def encode_clip(frames: np.ndarray, audio: np.ndarray, sample_rate: int, out: Path, fps: int = 25) -> None:
    """Write an MP4: H.264 yuv420p at ``fps`` and mono AAC at ``sample_rate``; deterministic."""
    import soundfile as sf

    n, h, w, _ = frames.shape
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".enc-", dir=out.parent) as tmp:
        wav = Path(tmp) / "audio.wav"
        sf.write(str(wav), audio, sample_rate, subtype="PCM_16")
        with atomic_path(out, suffix=".mp4") as target:
            cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
                   "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", str(fps), "-i", "pipe:0",
                   "-i", str(wav), "-map", "0:v:0", "-map", "1:a:0",
                   "-c:v", "libx264", "-preset", "veryfast", "-crf", "22", "-pix_fmt", "yuv420p",
                   "-threads", "1", "-x264-params", "threads=1:lookahead-threads=1", "-g", str(2 * fps), "-r", str(fps),
                   "-c:a", "aac", "-b:a", "64k", "-ar", str(sample_rate), "-ac", "1",
                   "-map_metadata", "-1", "-map_chapters", "-1",
                   "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
                   "-movflags", "+faststart", "-f", "mp4", str(target)]
            proc = subprocess.run(cmd, input=frames.tobytes(), capture_output=True)
            if proc.returncode != 0:
                raise DemoError(f"ffmpeg failed for {out}: {proc.stderr.decode(errors='replace')[-2000:]}")


# --------------------------------------------------------------------------------------
# one identity


@dataclass
class Rendered:
    identity: PlannedIdentity
    videos: list[str]
    clips: list[dict]


def render_identity(ident: PlannedIdentity, face: Mapping[str, Any], voice: Mapping[str, Any], src: Sources,
                    render: Mapping[str, Any], *, n_clips: int, n_videos: int, seed: int, videos_dir: Path,
                    verify: bool) -> Rendered:
    """Make the clips of one identity, in ``n_videos`` videos under ``videos_dir``.

    ``render`` is the catalog's ``render`` section. With ``verify``, MTCNN checks every
    clip. Raises :class:`FaceRejected` / :class:`VoiceRejected` when a source cannot be used.
    A :class:`~facevoice.demo.control.ControlIdentity` has its own seed and its attribute
    planted in its frames and speech (``render`` then holds ``face_shift`` and ``pitch_semitones``).
    """
    if isinstance(ident, ControlIdentity):
        seed = identity_seed(seed, ident)
    try:
        audio = voice_clips(voice, src.files[voice["package"]], n_clips, seed, render)
    except DemoError as exc:
        raise VoiceRejected(str(exc)) from None
    fsrc = FaceSource(face, src.files[face["package"]][face["file"]], int(render["frame_size"]), int(render["fps"]))
    looks = [clip_look(face["key"], k, seed) for k in range(n_clips)]
    try:
        frames = [fsrc.frames(k, n_clips, audio[k].frames, looks[k]) for k in range(n_clips)]
    except (DemoError, subprocess.CalledProcessError) as exc:
        raise FaceRejected(str(exc).splitlines()[0]) from None
    if isinstance(ident, ControlIdentity):
        _plant(ident, frames, audio, render)
    checks = _check_clips(frames, render) if verify else []
    vids = [video_id(face, voice, j) for j in range(n_videos)]
    clips = _encode_clips(ident, vids, frames, audio, looks, checks, render, n_clips, videos_dir)
    return Rendered(identity=ident, videos=vids, clips=clips)


def _plant(ident: ControlIdentity, frames: list[np.ndarray], audio: list[ClipAudio], render: Mapping[str, Any]) -> None:
    """The control's attribute: a colour balance in every frame, a pitch shift in every clip's speech."""
    for fr in frames:
        tint_frames(fr, ident.attribute, float(render["face_shift"]))
    for clip in audio:
        clip.samples = shift_voice(clip.samples, int(render["sample_rate"]), ident.attribute,
                                   float(render["pitch_semitones"]))


def _check_clips(frames: list[np.ndarray], render: Mapping[str, Any]) -> list[list[dict]]:
    """MTCNN on each clip's first, middle and last frame; the measurements per clip."""
    checks: list[list[dict]] = []
    for k, fr in enumerate(frames):
        picks = [fr[0], fr[len(fr) // 2], fr[-1]]
        ok, why, measures = check_faces(picks, float(render["min_face_prob"]), int(render["min_face_px"]))
        if not ok:
            raise FaceRejected(f"clip {k + 1}: {why}")
        checks.append(measures)
    return checks


def _encode_clips(ident: PlannedIdentity, vids: list[str], frames: list[np.ndarray], audio: list[ClipAudio],
                  looks: list[ClipLook], checks: list[list[dict]], render: Mapping[str, Any], n_clips: int,
                  videos_dir: Path) -> list[dict]:
    """Encode each clip into its video's folder; the clip records of corpus.json."""
    fps, sr = int(render["fps"]), int(render["sample_rate"])
    records = []
    for k, (j, number) in enumerate(clip_videos(n_clips, len(vids))):
        rel = Path("videos") / ident.id / vids[j] / f"{number:05d}.mp4"
        out = videos_dir / rel.relative_to("videos")
        encode_clip(frames[k], audio[k].samples, sr, out, fps)
        records.append({"identity": ident.id, "video": vids[j], "clip": f"{number:05d}",
                        "path": rel.as_posix(), "frames": audio[k].frames,
                        "duration_s": round(audio[k].frames / fps, 3),
                        "look": asdict(looks[k]), "face_check": checks[k] if checks else None,
                        "audio_sources": [list(s) for s in audio[k].sources], "sha256": file_sha256(out)})
    return records
