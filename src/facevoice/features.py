"""Pipeline stage ``features``: one clip's voice features from its ``speech`` Parquet.

Input is the ``speech`` stage's file (mono float32 speech at ``sample_rate``).  For each
kind in ``params["kinds"]`` one row is written.  Window and hop lengths in ms become
samples with the speech file's rate: ``win = round(win_ms * sr / 1000)``, ``hop =
round(hop_ms * sr / 1000)`` (400 and 160 at 16 kHz).  ``n_fft >= win`` is required.

What is computed (the definitions of librosa 0.11, whose calls these are)
-------------------------------------------------------------------------
STFT, shared by all kinds (computed once per distinct ``(n_fft, win, hop)``):
``librosa.stft(y, n_fft=n_fft, hop_length=hop, win_length=win, window="hann",
center=True, pad_mode="constant")``: the signal is zero-padded by ``n_fft // 2`` on both
sides; frame ``t`` is ``y_pad[t*hop : t*hop + n_fft]`` times a *periodic* Hann window of
``win`` samples (``0.5 - 0.5 cos(2 pi n / win)``) zero-padded to ``n_fft`` in the centre;
``rfft`` gives ``n_fft // 2 + 1`` bins.  Frames: ``1 + len(y) // hop``.

``spectrogram`` (seed 000): magnitude ``|X|`` (power 1); with ``log: true`` it is
``log1p(|X|)`` = natural ``log(1 + |X|)`` (no epsilon needed).  ``n_fft // 2 + 1`` bins.

``logmel`` (seeds 002, 003, 004): power spectrogram ``|X|**2`` times librosa's mel
filterbank ``librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax, htk=False,
norm="slaney")`` (Slaney mel scale: linear below 1 kHz, logarithmic above; triangles
area-normalised), i.e. ``librosa.feature.melspectrogram(S=|X|**2, ...)``; then
``librosa.power_to_db(M)`` with its defaults: ``10 * log10(max(M, 1e-10))`` (ref 1.0,
amin 1e-10, dB, base 10), then clipped from below at ``max - 80 dB`` (``top_db=80``).
``fmax: null`` means ``sr / 2``.  ``n_mels`` bins.

``mfcc`` (seed 001): ``librosa.feature.mfcc(S=logmel_db, n_mfcc)`` on the log-mel above
(``n_mels`` bands, ``fmin`` 0, ``fmax`` sr / 2, same STFT settings): DCT-II with
orthonormal scaling (``scipy.fft.dct(type=2, norm="ortho")``) along the mel axis, the
first ``n_mfcc`` coefficients, no liftering.  ``n_mfcc`` bins.

``normalize: utterance``: per-bin mean and variance normalisation over the clip's
frames, ``(x - mean_t x) / max(std_t x, 1e-5)`` (population std, statistics in float64);
a constant bin therefore becomes all zeros.  ``normalize: none`` leaves values as they are.

Cost
----
Calling librosa costs about 1.5-2 s per *process* before any work (importing
``librosa.core`` pulls in scipy and numba and loads numba-compiled code), while the features
of a 4 s clip take milliseconds. That start-up is paid once per clip job; the stage still
calls librosa rather than re-implementing it. The Arrow columns are built and read from
numpy buffers (:mod:`facevoice.speech` helpers), since pyarrow's ``pa.array`` / ``to_numpy``
/ ``read_table`` import pandas (another ~0.3-0.5 s).

Output
------
A Parquet file with one row per kind: ``kind`` (string), ``n_bins`` (int32),
``n_frames`` (int32), ``values`` (list<float32>, row-major ``n_bins x n_frames``) and
``facevoice`` metadata ``{"stage": "features", "status", "reason", "sample_rate",
"duration_s", "params"}``.  When the speech file was rejected the table has zero rows,
``status`` "rejected" and ``reason`` "speech: <its reason>".  :func:`load_feature` reads
one kind back as an ``(n_bins, n_frames)`` array.

Params are config's ``features:`` section; keys it leaves out take the values of
:data:`DEFAULTS` (the defaults of ``config.yaml``).

Usage::

    python -m facevoice.features --input speech.parquet --output OUT.parquet --params JSON|@file.json
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from facevoice.io import META_KEY, write_parquet
from facevoice.speech import arrow_array, arrow_list, arrow_strings, numpy_values

STAGE = "features"
KINDS = ("spectrogram", "logmel", "mfcc")

#: Config ``features:`` defaults, used for keys a params dict leaves out.
DEFAULTS: dict[str, Any] = {
    "kinds": ["spectrogram", "logmel", "mfcc"],
    "spectrogram": {"n_fft": 512, "win_ms": 25, "hop_ms": 10, "log": True, "normalize": "utterance"},
    "logmel": {"n_fft": 512, "win_ms": 25, "hop_ms": 10, "n_mels": 64, "fmin": 0, "fmax": None,
               "normalize": "utterance"},
    "mfcc": {"n_mfcc": 13, "n_mels": 40, "n_fft": 512, "win_ms": 25, "hop_ms": 10,
             "normalize": "none"},
}

NORM_STD_FLOOR = 1e-5  # utterance normalisation: divide by max(std, this)
AMIN = 1e-10           # power_to_db floor (librosa default)
TOP_DB = 80.0          # power_to_db dynamic range (librosa default)

SCHEMA = pa.schema(
    [
        ("kind", pa.string()),
        ("n_bins", pa.int32()),
        ("n_frames", pa.int32()),
        ("values", pa.list_(pa.float32())),
    ]
)


# --------------------------------------------------------------------------- params


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def check_params(params: dict[str, Any]) -> dict[str, Any]:
    """Validate config's ``features:`` section; return a complete copy (defaults filled in).

    Raises ``ValueError`` naming the offending key.
    """
    if not isinstance(params, dict):
        raise ValueError(f"features params must be a JSON object, got {type(params).__name__}")
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"features params: unknown key(s) {sorted(unknown)}")
    p = copy.deepcopy(DEFAULTS)
    for key, value in params.items():
        if key == "kinds":
            p[key] = copy.deepcopy(value)
            continue
        if not isinstance(value, dict):
            raise ValueError(f"features params: {key} must be an object")
        bad = set(value) - set(DEFAULTS[key])
        if bad:
            raise ValueError(f"features params: unknown key(s) {sorted(bad)} in {key}")
        p[key].update(copy.deepcopy(value))

    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise ValueError(f"features params: {msg}")

    kinds = p["kinds"]
    need(isinstance(kinds, list) and len(kinds) > 0, "kinds must be a non-empty list")
    need(all(k in KINDS for k in kinds), f"kinds must be among {KINDS}, got {kinds!r}")
    need(len(set(kinds)) == len(kinds), f"kinds has duplicates: {kinds!r}")
    for kind in kinds:
        s = p[kind]
        need(_is_int(s["n_fft"]) and s["n_fft"] >= 16, f"{kind}.n_fft must be an integer >= 16")
        for k in ("win_ms", "hop_ms"):
            need(_is_number(s[k]) and s[k] > 0, f"{kind}.{k} must be a positive number")
        need(s["normalize"] in ("utterance", "none"),
             f"{kind}.normalize must be 'utterance' or 'none', got {s['normalize']!r}")
        if kind == "spectrogram":
            need(isinstance(s["log"], bool), "spectrogram.log must be true or false")
        if kind in ("logmel", "mfcc"):
            need(_is_int(s["n_mels"]) and s["n_mels"] >= 1, f"{kind}.n_mels must be an integer >= 1")
        if kind == "logmel":
            need(_is_number(s["fmin"]) and s["fmin"] >= 0, "logmel.fmin must be a number >= 0")
            need(s["fmax"] is None or (_is_number(s["fmax"]) and s["fmax"] > s["fmin"]),
                 "logmel.fmax must be null or a number above fmin")
        if kind == "mfcc":
            need(_is_int(s["n_mfcc"]) and 1 <= s["n_mfcc"] <= s["n_mels"],
                 "mfcc.n_mfcc must be an integer in [1, mfcc.n_mels]")
    return p


def _frame_params(s: dict[str, Any], sr: int, kind: str) -> tuple[int, int, int]:
    win = int(round(s["win_ms"] * sr / 1000.0))
    hop = int(round(s["hop_ms"] * sr / 1000.0))
    n_fft = int(s["n_fft"])
    if win < 1 or hop < 1:
        raise ValueError(f"features params: {kind} window/hop shorter than one sample at {sr} Hz")
    if n_fft < win:
        raise ValueError(f"features params: {kind}.n_fft ({n_fft}) is shorter than the "
                         f"window ({s['win_ms']} ms = {win} samples at {sr} Hz)")
    return n_fft, win, hop


# --------------------------------------------------------------------------- features


def normalize_utterance(x: np.ndarray) -> np.ndarray:
    """Per-bin (row) mean/variance normalisation over frames (columns)."""
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=1, keepdims=True)
    std = x64.std(axis=1, keepdims=True)
    return ((x64 - mean) / np.maximum(std, NORM_STD_FLOOR)).astype(np.float32)


def compute(y: np.ndarray, sr: int, params: dict[str, Any]) -> dict[str, np.ndarray]:
    """All kinds of ``params`` for signal ``y`` at ``sr``: kind -> float32 (bins, frames)."""
    import librosa

    p = check_params(params)
    y = np.ascontiguousarray(y, dtype=np.float32)
    for kind in p["kinds"]:
        _frame_params(p[kind], sr, kind)
    if "logmel" in p["kinds"] and p["logmel"]["fmax"] is not None and p["logmel"]["fmax"] > sr / 2:
        raise ValueError(f"features params: logmel.fmax {p['logmel']['fmax']} is above the "
                         f"Nyquist frequency {sr / 2:g} Hz")
    stfts: dict[tuple[int, int, int], np.ndarray] = {}

    def magnitude(key: tuple[int, int, int]) -> np.ndarray:
        """One STFT per distinct (n_fft, win, hop), shared by the kinds that use it."""
        if key not in stfts:
            n_fft, win, hop = key
            stfts[key] = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop, win_length=win, window="hann",
                                             center=True, pad_mode="constant"))
        return stfts[key]

    out: dict[str, np.ndarray] = {}
    for kind in p["kinds"]:
        s = p[kind]
        key = _frame_params(s, sr, kind)
        mag = magnitude(key)
        if kind == "spectrogram":
            x = np.log1p(mag) if s["log"] else mag
        else:
            fmin = s["fmin"] if kind == "logmel" else 0.0
            fmax = s["fmax"] if kind == "logmel" else None
            mel = librosa.feature.melspectrogram(S=mag**2, sr=sr, n_fft=key[0], n_mels=s["n_mels"],
                                                 fmin=fmin, fmax=fmax)
            x = librosa.power_to_db(mel, ref=1.0, amin=AMIN, top_db=TOP_DB)
            if kind == "mfcc":
                x = librosa.feature.mfcc(S=x, n_mfcc=s["n_mfcc"], dct_type=2, norm="ortho", lifter=0)
        x = np.asarray(x, dtype=np.float32)
        out[kind] = normalize_utterance(x) if s["normalize"] == "utterance" else x
    return out


def _read(path: str | Path) -> tuple[pa.Table, dict[str, Any]]:
    """A Parquet file and its ``facevoice`` metadata.

    ``pyarrow.parquet.ParquetFile.read`` rather than ``read_table`` (what
    ``facevoice.io.read_parquet`` uses): ``read_table`` imports ``pyarrow.dataset`` and with
    it pandas, about 0.25 s of this stage's per-process start-up.
    """
    import pyarrow.parquet as pq

    table = pq.ParquetFile(path).read()
    raw = (table.schema.metadata or {}).get(META_KEY)
    return table, (json.loads(raw) if raw else {})


def _table(feats: dict[str, np.ndarray]) -> pa.Table:
    kinds = list(feats)
    return pa.Table.from_arrays(
        [
            arrow_strings(kinds),
            arrow_array([feats[k].shape[0] for k in kinds], pa.int32()),
            arrow_array([feats[k].shape[1] for k in kinds], pa.int32()),
            arrow_list([np.ascontiguousarray(feats[k], dtype=np.float32) for k in kinds]),
        ],
        schema=SCHEMA,
    )


def run(speech_path: str | Path, output_path: str | Path, params: dict[str, Any]) -> dict[str, Any]:
    """Compute one clip's features from its speech Parquet; write ``output_path``; return meta."""
    p = check_params(params)
    speech_path = Path(speech_path)
    if not speech_path.is_file():
        raise FileNotFoundError(f"features: input file not found: {speech_path}")
    table, smeta = _read(speech_path)
    if smeta.get("stage") != "speech":
        raise ValueError(f"features: {speech_path} is not a speech-stage Parquet file "
                         f"(its metadata stage is {smeta.get('stage')!r})")
    meta: dict[str, Any] = {
        "stage": STAGE, "status": "ok", "reason": None,
        "sample_rate": (smeta.get("params") or {}).get("sample_rate"),
        "duration_s": None, "params": p,
    }
    feats: dict[str, np.ndarray] = {}
    if smeta.get("status") != "ok":
        meta["status"] = "rejected"
        meta["reason"] = f"speech: {smeta.get('reason')}"
    else:
        if table.num_rows != 1:
            raise ValueError(f"features: {speech_path} has status ok but {table.num_rows} rows")
        sr = int(table.column("sample_rate").to_pylist()[0])
        y = numpy_values(table.column("audio").combine_chunks().flatten())
        meta["sample_rate"] = sr
        meta["duration_s"] = y.size / sr
        if y.size == 0:
            meta["status"] = "rejected"
            meta["reason"] = "speech: no audio samples"
        else:
            feats = compute(y, sr, p)
    if meta["status"] == "rejected":
        print(f"features {speech_path}: rejected: {meta['reason']}", file=sys.stderr)
    else:
        shapes = ", ".join(f"{k} {v.shape[0]}x{v.shape[1]}" for k, v in feats.items())
        print(f"features {speech_path}: {meta['duration_s']:.2f} s: {shapes}", file=sys.stderr)
    write_parquet(_table(feats), output_path, meta=meta)
    return meta


def load_feature(path: str | Path, kind: str) -> np.ndarray:
    """One kind of a features Parquet file as a float32 ``(n_bins, n_frames)`` array.

    Raises ``ValueError`` when the clip was rejected and ``KeyError`` when the file holds
    no such kind.
    """
    table, meta = _read(path)
    if meta.get("status") == "rejected":
        raise ValueError(f"{path}: clip was rejected ({meta.get('reason')})")
    kinds = table.column("kind").to_pylist()
    if kind not in kinds:
        raise KeyError(f"{path}: no feature {kind!r} (has {kinds})")
    i = kinds.index(kind)
    n_bins = table.column("n_bins").to_pylist()[i]
    n_frames = table.column("n_frames").to_pylist()[i]
    values = numpy_values(table.column("values").combine_chunks()[i].values)
    return values.copy().reshape(n_bins, n_frames)


def main(argv: list[str] | None = None) -> int:
    from facevoice.stage import stage_main

    return stage_main(STAGE, run, argv, __doc__, announce=False)


if __name__ == "__main__":
    sys.exit(main())
