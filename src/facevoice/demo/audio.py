"""The demo's audio: decoding the voice sources, the F0 estimate behind the catalog's
unlabelled genders, and each clip's speech cut from disjoint source material."""

from __future__ import annotations

import math
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from facevoice.demo.base import DemoError, ffmpeg_exe, seeded_rng


def decode_audio(path: str | os.PathLike, fmt: str, sample_rate: int = 16000) -> np.ndarray:
    """Decode one source file to mono float32 at ``sample_rate``.

    ``fmt``: ``wav``/``ogg`` (libsndfile), ``gsm`` (raw GSM 06.10 at 8 kHz, via ffmpeg),
    ``s16le8k`` (headerless 16-bit little-endian PCM at 8 kHz).
    """
    import librosa

    if fmt in ("wav", "ogg"):
        import soundfile as sf

        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
        y = data.mean(axis=1)
    elif fmt == "gsm":
        res = subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "gsm", "-i", str(path), "-ac", "1",
                              "-f", "f32le", "-"], capture_output=True, check=True)
        y, sr = np.frombuffer(res.stdout, dtype="<f4").copy(), 8000
    elif fmt == "s16le8k":
        y, sr = np.fromfile(str(path), dtype="<i2").astype(np.float32) / 32768.0, 8000
    else:
        raise DemoError(f"unknown audio format {fmt!r}")
    if sr != sample_rate:
        y = librosa.resample(y, orig_sr=sr, target_sr=sample_rate, res_type="soxr_hq")
    return np.clip(y, -1.0, 1.0).astype(np.float32)


def estimate_f0(y: np.ndarray, sr: int = 16000) -> tuple[float, int]:
    """Median F0 (Hz) of confidently voiced frames, and their number.

    The method behind every ``f0 estimate`` in the catalog: an 80 Hz high-pass (4th-order
    Butterworth, zero phase) against mains hum, then librosa.pyin (65-450 Hz, 1024-sample
    frames, 256 hop at 16 kHz), keeping frames voiced with probability > 0.5. Under 150 Hz
    is labelled male, over 165 Hz female; voices in between are not used.

    The catalog's figures (``f0_hz``, and N of ``f0 estimate (N Hz)``) are this function over
    the voice's first 40 listed files, each decoded at 16 kHz and trimmed as the builder trims
    prompts (``_trim``), concatenated back to back: one call per voice.
    tests/demo/test_demo.py recomputes them from the download cache.
    """
    import librosa
    import scipy.signal as ss

    sos = ss.butter(4, 80, "highpass", fs=sr, output="sos")
    y = ss.sosfiltfilt(sos, y.astype(np.float64))
    f0, voiced, prob = librosa.pyin(y, fmin=65, fmax=450, sr=sr, frame_length=1024, hop_length=256)
    keep = f0[voiced & (prob > 0.5)]
    return (float(np.median(keep)) if len(keep) else float("nan")), int(len(keep))


@dataclass
class ClipAudio:
    samples: np.ndarray  # float32 mono at the corpus rate, exactly frames/fps long
    frames: int
    sources: list[tuple[str, float, float]]  # (member, start s, end s) in the source file


def _trim(y: np.ndarray, sr: int) -> np.ndarray:
    import librosa

    if len(y) < sr // 20:
        return y
    trimmed, _ = librosa.effects.trim(y, top_db=35, frame_length=512, hop_length=128)
    pad = int(0.05 * sr)
    return np.pad(trimmed, (pad, pad)) if len(trimmed) else trimmed


def voice_clips(voice: Mapping[str, Any], files: Mapping[str, Path], n_clips: int, seed: int,
                render: Mapping[str, Any]) -> list[ClipAudio]:
    """The audio of each clip of a voice, from disjoint source material.

    ``prompts`` voices: trimmed prompt files in a seeded order, whole prompts concatenated
    (0.25 s apart) until the clip's target duration; ``recording`` voices: consecutive
    stretches of the files joined in catalog order. Each clip's target is drawn from
    ``seed`` in [min_clip_s + 0.2, max_clip_s - 0.4] s; clips never share material.
    """
    lo, hi = float(render["min_clip_s"]), float(render["max_clip_s"])
    gen = seeded_rng(seed, "voice", voice["key"])
    targets = [float(gen.uniform(lo + 0.2, hi - 0.4)) for _ in range(n_clips)]
    if voice["kind"] == "prompts":
        return _prompt_clips(voice, files, targets, gen, render)
    return _recording_clips(voice, files, targets, render)


def _prompt_clips(voice: Mapping[str, Any], files: Mapping[str, Path], targets: list[float],
                  gen: np.random.Generator, render: Mapping[str, Any]) -> list[ClipAudio]:
    """Whole trimmed prompts in a seeded order, 0.25 s apart, until each clip's target."""
    sr, fps = int(render["sample_rate"]), int(render["fps"])
    lo, hi = float(render["min_clip_s"]), float(render["max_clip_s"])
    gap = np.zeros(int(0.25 * sr), np.float32)
    units = []
    for m, _ in voice["files"]:
        y = _trim(decode_audio(files[m], voice["format"], sr), sr)
        if len(y) >= int(0.3 * sr):
            units.append((m, y))
    order = [units[i] for i in gen.permutation(len(units))]
    clips: list[ClipAudio] = []
    for target in targets:
        parts, used, total = [], [], 0.0
        for unit in list(order):
            m, y = unit
            dur = len(y) / sr
            extra = dur + (0.25 if parts else 0.0)
            if total + extra > hi:
                continue
            if parts:
                parts.append(gap)
            parts.append(y)
            used.append((m, 0.0, round(dur, 3)))
            order.remove(unit)
            total += extra
            if total >= target:
                break
        if total < lo:
            raise DemoError(f"voice {voice['key']}: not enough prompts for {len(targets)} clips of >= {lo} s")
        clips.append(_finish_clip(np.concatenate(parts), used, sr, fps, lo, hi))
    return clips


def _recording_clips(voice: Mapping[str, Any], files: Mapping[str, Path], targets: list[float],
                     render: Mapping[str, Any]) -> list[ClipAudio]:
    """Consecutive stretches of the recordings (within their ``spans``), in catalog order."""
    sr, fps = int(render["sample_rate"]), int(render["fps"])
    lo, hi = float(render["min_clip_s"]), float(render["max_clip_s"])
    n_clips = len(targets)
    stream = [(m, decode_audio(files[m], voice["format"], sr)) for m, _ in voice["files"]]
    spans = voice.get("spans") or {}
    total = sum(min(len(y) / sr, spans.get(m, [0, 1e9])[1]) - spans.get(m, [0, 0])[0] for m, y in stream)
    targets = [min(t, total / n_clips) for t in targets]  # short recordings: shorter clips
    pos_file, pos = 0, 0
    clips: list[ClipAudio] = []
    for target in targets:
        need = int(round(target * sr))
        parts, used = [], []
        while need > 0 and pos_file < len(stream):
            m, y = stream[pos_file]
            a, b = spans.get(m, [0.0, len(y) / sr])
            start = max(pos, int(a * sr))
            end = min(len(y), int(b * sr))
            take = min(need, end - start)
            if take > 0:
                parts.append(y[start:start + take])
                used.append((m, round(start / sr, 3), round((start + take) / sr, 3)))
                need -= take
                pos = start + take
            if pos >= end:
                pos_file, pos = pos_file + 1, 0
                if need > 0 and parts:
                    parts.append(np.zeros(int(0.1 * sr), np.float32))
        got = sum(len(p) for p in parts) / sr
        if got < lo - 0.05:
            raise DemoError(f"voice {voice['key']}: recording too short for {n_clips} clips of >= {lo} s")
        clips.append(_finish_clip(np.concatenate(parts), used, sr, fps, lo, hi))
    return clips


def _finish_clip(y: np.ndarray, used: list, sr: int, fps: int, lo: float, hi: float) -> ClipAudio:
    """Fit to whole video frames within [lo, hi] s, fade the ends, normalise the level."""
    frames = int(np.clip(round(len(y) / sr * fps), math.ceil(lo * fps), math.floor(hi * fps)))
    n = frames * sr // fps
    y = np.pad(y, (0, max(0, n - len(y))))[:n].astype(np.float32)
    fade = int(0.01 * sr)
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    y[:fade] *= ramp
    y[-fade:] *= ramp[::-1]
    rms = float(np.sqrt(np.mean(y ** 2))) or 1.0
    y = y * (0.06 / rms)
    peak = float(np.max(np.abs(y))) or 1.0
    if peak > 0.95:
        y = y * (0.95 / peak)
    return ClipAudio(samples=y.astype(np.float32), frames=frames, sources=used)
