"""Pipeline stage ``speech``: each clip's audio, decoded to mono and speech-filtered.

A job filters one batch of clips (:mod:`facevoice.data.batch`) in one process.

Input is any media file ffmpeg reads: an ``.mp4`` with an audio track (the ``videos``
layout) or a ``.wav`` / ``.flac`` / ``.m4a`` (the VoxCeleb1 layout).

What is computed
----------------
1. **Decode.** One call of the ffmpeg binary (``imageio_ffmpeg.get_ffmpeg_exe()``) maps the
   input's *first* audio stream, down-mixes it to mono (ffmpeg ``-ac 1``) and resamples it
   to ``sample_rate`` (ffmpeg's default ``swresample`` resampler, ``-ar``), piping raw
   32-bit float samples (``f32le``).  The same call's stderr, at log level ``info`` with
   level tags, is the probe: the ``Input #0`` stream dump says whether the file has an
   audio stream and its original rate (``Audio: ..., NNNNN Hz``); ``error``/``fatal``
   lines say the file is corrupt or truncated.  No second decoder or resampler runs in
   Python.
2. **Speech filtering** (``method``):

   * ``webrtcvad``: the signal is converted to 16-bit PCM (clip to [-1, 1], times 32767)
     and cut into non-overlapping ``frame_ms`` frames (a trailing partial frame is never
     voiced); ``webrtcvad.Vad(mode).is_speech`` classifies each frame.  Every run of voiced
     frames is widened by ``padding_ms`` on both sides (clipped to the signal) and
     overlapping or touching runs are merged.  webrtcvad accepts 8, 16, 32 and 48 kHz, so
     ``sample_rate`` must be one of those.
   * ``energy`` (Zhong et al. 2025): frames of ``window_ms`` every ``hop_ms``
     (``numpy.lib.stride_tricks.sliding_window_view``; no padding, so
     ``1 + (n - win) // hop`` frames); energy = sum of squares of the frame's samples.
     Rule ``relative_db``: a frame is kept when ``10*log10(E) >= 10*log10(max E) +
     threshold`` (threshold <= 0 dB).  Rule ``percentile``: a frame is kept when
     ``E >= numpy.percentile(E, threshold)`` (threshold in [0, 100]).  Under both rules a
     frame whose mean power ``E / win`` is below ``SILENCE_FLOOR_DBFS`` (-90 dBFS, under
     any real recording's noise floor) is digital silence and always dropped; without this
     floor an all-zero clip would be "all speech" under a relative rule.  Each sample
     belongs to the frame whose centre is nearest (frame ``i`` owns samples
     ``[i*hop + (win-hop)//2, (i+1)*hop + (win-hop)//2)``; the first frame also owns the
     head of the signal and the last frame its tail), so kept frames map to disjoint
     sample ranges.  (The framing is numpy's, not ``librosa.util.frame``, which is the same
     strided view but costs over a second of imports in every per-clip process.)
   * ``silero``: Silero VAD (the ``silero-vad`` package's JIT model, loaded from the
     installed package, never downloaded; once per job) gives a speech probability per
     32 ms window; ``silero_vad.get_speech_timestamps`` turns them into segments with its
     ``threshold``, ``min_speech_duration_ms`` (``min_speech_ms``),
     ``min_silence_duration_ms`` (``min_silence_ms``) and ``speech_pad_ms`` (``pad_ms``);
     overlapping segments are merged.  Silero works at 8 or 16 kHz (and multiples of
     16 kHz, which it decimates).

   The kept ranges (``segments``, seconds on the decoded signal's timeline) are re-joined
   in order.
3. **Output.** A batch file with one row per clip: ``clip``, ``audio`` (list<float32>, the
   re-joined speech at ``sample_rate``), ``sample_rate`` (int32), ``total_s`` (float64,
   duration of the decoded audio stream) and ``kept_s`` (float64); each clip's record holds
   ``status``, ``reason``, ``input_rate``, ``segments``, ``total_s`` and ``kept_s``.

Bad input never raises: the clip is *rejected* (no row; its record says ``status``
"rejected") with one of these reasons: ``no audio track``;
``unreadable media: <first ffmpeg error line>`` (corrupt or truncated file: any ffmpeg
``error``/``fatal`` line, or a non-zero exit); ``no audio samples decoded``; ``audio rate
N Hz below the minimum M Hz`` (``min_input_rate``); ``speech filtered away entirely (0.00 s
kept of X s)``; ``too little speech (X s kept, minimum Y s)`` (``min_speech_s``).  Only
bad usage (bad params, a batch that differs from the planned one) raises ``ValueError``;
the command line turns those into exit status 2.

Params are config's complete ``speech:`` section (its keys and their defaults are in
``workflow/schemas/config.schema.yaml``; ``facevoice.common.config.defaults("speech")`` gives them).

Usage::

    python -m facevoice.preprocess.speech --input CLIP.mp4 --output OUT.parquet --params '{"sample_rate": 16000, ...}'
    python -m facevoice.preprocess.speech --source '{"layout": "videos", "videos": "data/demo/videos", \
        "video_extensions": [".mp4"], "wav": null, "face_frames": null, "voices": null, "faces": null}' \
        --identity id10001 --part 000 --output OUT.parquet --params @speech.json --cache CACHE/
"""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from facevoice.common.config import check_section
from facevoice.common.io import arrow_array, arrow_list
from facevoice.data import batch
from facevoice.data.batch import Result

STAGE = "speech"

#: Frames whose mean power is below this (dB re full scale 1.0) count as digital silence
#: under the energy method, whatever the rule.
SILENCE_FLOOR_DBFS = -90.0

METHODS = ("webrtcvad", "energy", "silero")

SCHEMA = pa.schema(
    [
        ("audio", pa.list_(pa.float32())),
        ("sample_rate", pa.int32()),
        ("total_s", pa.float64()),
        ("kept_s", pa.float64()),
    ]
)


# --------------------------------------------------------------------------- params


def check_params(params: dict[str, Any]) -> dict[str, Any]:
    """Check config's complete ``speech:`` section; return a copy.

    The schema checks every key (:func:`facevoice.common.config.check_section`: a key left out is an
    error, never a default); here only what it cannot say: energy windows of at least one
    sample at ``sample_rate``. Raises ``ValueError`` naming the offending key.
    """
    p = check_section(STAGE, params)
    if p["method"] == "energy":
        e = p["energy"]
        for k in ("window_ms", "hop_ms"):
            if round(e[k] * p["sample_rate"] / 1000) < 1:
                raise ValueError(f"speech params: energy.{k} must be at least one sample at "
                                 f"{p['sample_rate']} Hz, got {e[k]!r}")
    return p


# --------------------------------------------------------------------------- decoding


def ffmpeg_exe() -> str:
    """The ffmpeg binary (imageio-ffmpeg's; honours ``IMAGEIO_FFMPEG_EXE``)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


_LEVEL_RE = re.compile(r"\[(panic|fatal|error|warning|info|verbose|debug|trace)\] ")
_ADDR_RE = re.compile(r" @ 0x[0-9a-fA-F]+")
_AUDIO_RE = re.compile(r"Stream #\d+:\d+\S*: Audio: .*?(\d+) Hz")


def _parse_stderr(text: str) -> tuple[bool, int | None, list[str], bool]:
    """(input opened, first audio stream's rate or None, error lines, has audio stream)."""
    opened = False
    in_input = False
    has_audio = False
    rate: int | None = None
    errors: list[str] = []
    for raw in text.splitlines():
        m = _LEVEL_RE.search(raw)
        if not m:
            continue  # continuation lines carry no level tag
        level = m.group(1)
        msg = raw[m.end():].strip()
        if level in ("panic", "fatal", "error"):
            context = _ADDR_RE.sub("", raw[: m.start()]).strip()
            errors.append(f"{context} {msg}".strip())
            continue
        if msg.startswith("Input #0"):
            opened = in_input = True
        elif msg.startswith(("Output #", "Stream mapping")):
            in_input = False
        elif in_input and not has_audio:
            a = _AUDIO_RE.search(msg)
            if a:
                has_audio = True
                rate = int(a.group(1))
            elif ": Audio: " in msg and msg.startswith("Stream #"):
                has_audio = True  # an audio stream without a parsable rate
    return opened, rate, errors, has_audio


def decode(path: str | Path, sample_rate: int) -> dict[str, Any]:
    """Decode the first audio stream of ``path`` to mono float32 at ``sample_rate``.

    Returns ``{"audio": ndarray | None, "input_rate": int | None, "reason": str | None}``;
    ``reason`` is set (and ``audio`` None) when the file has no usable audio.
    """
    cmd = [
        ffmpeg_exe(), "-nostdin", "-hide_banner", "-nostats", "-loglevel", "level+info",
        "-i", str(path), "-map", "0:a:0", "-vn", "-sn", "-dn",
        "-ac", "1", "-ar", str(int(sample_rate)), "-f", "f32le", "pipe:1",
    ]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True)
    stderr = proc.stderr.decode("utf-8", errors="replace")
    opened, rate, errors, has_audio = _parse_stderr(stderr)
    out: dict[str, Any] = {"audio": None, "input_rate": rate, "reason": None}
    if opened and not has_audio:
        out["reason"] = "no audio track"
    elif errors or proc.returncode != 0:
        first = errors[0] if errors else f"ffmpeg exited with status {proc.returncode}"
        out["reason"] = f"unreadable media: {first}"
    else:
        audio = np.frombuffer(proc.stdout, dtype="<f4")
        if audio.size == 0:
            out["reason"] = "no audio samples decoded"
        else:
            out["audio"] = audio.astype(np.float32, copy=True)
    return out


# --------------------------------------------------------------------------- filtering


def _runs(mask: np.ndarray) -> np.ndarray:
    """(k, 2) array of [start, end) index pairs of the True runs of a boolean mask."""
    m = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    edges = np.flatnonzero(m[1:] != m[:-1])
    return edges.reshape(-1, 2)


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge overlapping or touching [start, end) ranges (input sorted by start)."""
    merged: list[tuple[int, int]] = []
    for s, e in ranges:
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def vad_ranges(audio: np.ndarray, sample_rate: int, mode: int, frame_ms: int,
               padding_ms: float) -> list[tuple[int, int]]:
    """Sample ranges kept by webrtcvad (voiced runs widened by ``padding_ms``, merged)."""
    import webrtcvad

    flen = sample_rate * frame_ms // 1000
    n_frames = audio.size // flen
    if n_frames == 0:
        return []
    pcm = (np.clip(audio[: n_frames * flen], -1.0, 1.0) * 32767.0).astype("<i2")
    frames = pcm.reshape(n_frames, flen)
    vad = webrtcvad.Vad(int(mode))
    voiced = np.fromiter(
        (vad.is_speech(f.tobytes(), sample_rate) for f in frames), dtype=bool, count=n_frames
    )
    pad = int(round(padding_ms * sample_rate / 1000.0))
    ranges = [
        (max(0, int(a) * flen - pad), min(audio.size, int(b) * flen + pad))
        for a, b in _runs(voiced)
    ]
    return _merge(ranges)


def energy_ranges(audio: np.ndarray, sample_rate: int, window_ms: float, hop_ms: float,
                  rule: str, threshold: float) -> list[tuple[int, int]]:
    """Sample ranges kept by the short-time energy rule (see the module docstring)."""
    n = audio.size
    win = int(round(window_ms * sample_rate / 1000.0))
    hop = int(round(hop_ms * sample_rate / 1000.0))
    if n < win:
        return []
    frames = np.lib.stride_tricks.sliding_window_view(audio.astype(np.float64), win)[::hop]
    energy = np.einsum("ij,ij->i", frames, frames)
    floor = win * 10.0 ** (SILENCE_FLOOR_DBFS / 10.0)
    audible = energy >= floor
    if not audible.any():
        return []
    if rule == "relative_db":
        db = 10.0 * np.log10(np.maximum(energy, floor))
        keep = db >= db.max() + threshold
    else:  # percentile
        keep = energy >= np.percentile(energy, threshold)
    keep &= audible
    n_frames = energy.size
    bounds = np.arange(n_frames + 1) * hop + (win - hop) // 2
    bounds[0] = 0
    bounds[-1] = n
    bounds = np.clip(bounds, 0, n)
    return [(int(bounds[a]), int(bounds[b])) for a, b in _runs(keep) if bounds[b] > bounds[a]]


# --------------------------------------------------------------------------- stage


def _table(audio: np.ndarray, sample_rate: int, total_s: float, kept_s: float) -> pa.Table:
    return pa.Table.from_arrays(
        [
            arrow_list([audio], pa.float32()),
            arrow_array([sample_rate], pa.int32()),
            arrow_array([total_s], pa.float64()),
            arrow_array([kept_s], pa.float64()),
        ],
        schema=SCHEMA,
    )


@functools.lru_cache(maxsize=1)
def silero_model():
    """Silero VAD's JIT model from the installed ``silero-vad`` package (once per process)."""
    import warnings

    from silero_vad import load_silero_vad

    with warnings.catch_warnings():  # deprecation notices of torch.jit.load and importlib.resources
        warnings.simplefilter("ignore", (FutureWarning, DeprecationWarning))
        return load_silero_vad()


def silero_ranges(audio: np.ndarray, sample_rate: int, threshold: float, min_speech_ms: float,
                  min_silence_ms: float, pad_ms: float) -> list[tuple[int, int]]:
    """Sample ranges Silero VAD calls speech (its segments, merged where they overlap)."""
    import torch
    from silero_vad import get_speech_timestamps

    with torch.no_grad():
        segments = get_speech_timestamps(
            torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)), silero_model(),
            threshold=float(threshold), sampling_rate=int(sample_rate),
            min_speech_duration_ms=int(min_speech_ms), min_silence_duration_ms=int(min_silence_ms),
            speech_pad_ms=int(pad_ms))
    ranges = [(max(0, int(g["start"])), min(audio.size, int(g["end"]))) for g in segments]
    return _merge(sorted((a, b) for a, b in ranges if b > a))


def _ranges(audio: np.ndarray, sr: int, p: dict[str, Any]) -> list[tuple[int, int]]:
    if p["method"] == "silero":
        si = p["silero"]
        return silero_ranges(audio, sr, si["threshold"], si["min_speech_ms"], si["min_silence_ms"], si["pad_ms"])
    if p["method"] == "webrtcvad":
        v = p["webrtcvad"]
        return vad_ranges(audio, sr, v["mode"], v["frame_ms"], v["padding_ms"])
    e = p["energy"]
    return energy_ranges(audio, sr, e["window_ms"], e["hop_ms"], e["rule"], e["threshold"])


def filter_clip(input_path: str | Path, p: dict[str, Any]) -> Result:
    """Decode and speech-filter one clip (``p`` checked by :func:`check_params`)."""
    input_path = Path(input_path)
    if not input_path.is_file():
        return Result.rejected(f"media file not found: {input_path}")
    sr = int(p["sample_rate"])
    dec = decode(input_path, sr)
    extra: dict[str, Any] = {"input_rate": dec["input_rate"], "segments": [], "total_s": None, "kept_s": None}
    audio, reason = dec["audio"], dec["reason"]
    if reason is None and dec["input_rate"] is not None and p["min_input_rate"] is not None \
            and dec["input_rate"] < p["min_input_rate"]:
        reason = f"audio rate {dec['input_rate']} Hz below the minimum {p['min_input_rate']:g} Hz"
    if reason is None:
        ranges = _ranges(audio, sr, p)
        kept = sum(b - a for a, b in ranges)
        total_s, kept_s = audio.size / sr, kept / sr
        extra.update(total_s=total_s, kept_s=kept_s, segments=[[a / sr, b / sr] for a, b in ranges])
        if kept == 0:
            reason = f"speech filtered away entirely (0.00 s kept of {total_s:.2f} s)"
        elif kept_s < p["min_speech_s"]:
            reason = f"too little speech ({kept_s:.2f} s kept, minimum {p['min_speech_s']:.2f} s)"
    if reason is not None:
        print(f"speech {input_path}: rejected: {reason}", file=sys.stderr)
        return Result.rejected(reason, **extra)
    print(f"speech {input_path}: kept {extra['kept_s']:.2f} s of {extra['total_s']:.2f} s "
          f"({p['method']}, {len(extra['segments'])} segment(s), input {extra['input_rate']} Hz)", file=sys.stderr)
    kept_audio = np.concatenate([audio[a:b] for a, b in ranges])
    return Result("ok", None, _table(kept_audio, sr, extra["total_s"], extra["kept_s"]), extra)


def processor(params: dict[str, Any]) -> batch.PerClip:
    """Clips one at a time, the way :func:`filter_clip` does one."""
    return batch.PerClip(filter_clip, params)


CODE = batch.code_key(__file__, ["imageio-ffmpeg", "webrtcvad-wheels", "numpy", "silero-vad", "torch"])


def run(input_path: str | Path, output_path: str | Path, params: dict[str, Any]) -> dict[str, Any]:
    """One media file as a batch file of one clip; returns its record (status, reason, segments, ...)."""
    p = check_params(params)
    if not Path(input_path).is_file():
        raise FileNotFoundError(f"speech: input file not found: {input_path}")
    items = batch.source_items([(Path(input_path).stem, str(input_path))], STAGE, p, CODE)
    return batch.run_job(STAGE, items, processor(p), SCHEMA, output_path, {"params": p, "code": CODE},
                         progress=False)[0]


def main(argv: list[str] | None = None) -> int:
    return batch.main(STAGE, __doc__, argv, SCHEMA, CODE, check_params, processor, source_column=2)


if __name__ == "__main__":
    sys.exit(main())
