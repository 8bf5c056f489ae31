"""Pipeline stage ``features``: the voice features of a batch of clips from their speech.

Input is the ``speech`` stage's batch file (mono float32 speech at ``sample_rate``); one job
computes every clip of it (:mod:`facevoice.data.batch`).  For each
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

``spectrogram`` (Zhong et al. 2025): magnitude ``|X|`` (power 1); with ``log: true`` it is
``log1p(|X|)`` = natural ``log(1 + |X|)`` (no epsilon needed).  ``n_fft // 2 + 1`` bins.

``logmel`` (Wang et al. 2020, Liu et al., Wen et al. 2019): power spectrogram ``|X|**2`` times librosa's mel
filterbank ``librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax, htk=False,
norm="slaney")`` (Slaney mel scale: linear below 1 kHz, logarithmic above; triangles
area-normalised), i.e. ``librosa.feature.melspectrogram(S=|X|**2, ...)``; then
``librosa.power_to_db(M)`` with its defaults: ``10 * log10(max(M, 1e-10))`` (ref 1.0,
amin 1e-10, dB, base 10), then clipped from below at ``max - 80 dB`` (``top_db=80``).
``fmax: null`` means ``sr / 2``.  ``n_mels`` bins.

``mfcc`` (Chen et al.): ``librosa.feature.mfcc(S=logmel_db, n_mfcc)`` on the log-mel above
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
of a 4 s clip take milliseconds. That start-up is paid once per batch job, and the mel
filterbank is made once per job (:func:`mel_basis`). The Arrow columns are built and read
from numpy buffers (:mod:`facevoice.common.io` helpers), since pyarrow's ``pa.array`` /
``to_numpy`` / ``read_table`` import pandas (another ~0.3-0.5 s).

Output
------
A batch file with one row per clip and kind: ``clip``, ``kind`` (string), ``n_bins``
(int32), ``n_frames`` (int32), ``values`` (list<float32>, row-major ``n_bins x n_frames``);
each clip's record holds ``status``, ``reason``, ``sample_rate`` and ``duration_s``. A clip
whose speech was rejected has no rows, ``status`` "rejected" and ``reason`` "speech: <its
reason>".  :func:`load_feature` reads one kind of one clip back as an ``(n_bins,
n_frames)`` array.

Params are config's complete ``features:`` section (its keys and their defaults are in
``workflow/schemas/config.schema.yaml``; ``facevoice.common.config.defaults("features")`` gives them).

Usage::

    python -m facevoice.preprocess.features --input speech.parquet --output OUT.parquet --params JSON|@file.json [--cache DIR]
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from facevoice.common.config import check_section
from facevoice.common.io import arrow_array, arrow_list, arrow_strings, numpy_values
from facevoice.data import batch
from facevoice.data.batch import Result

STAGE = "features"
KINDS = ("spectrogram", "logmel", "mfcc")

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


def check_params(params: dict[str, Any]) -> dict[str, Any]:
    """Check config's complete ``features:`` section; return a copy.

    The schema checks every key (:func:`facevoice.common.config.check_section`: a key left out is an
    error, never a default); here only what it cannot say, relations between keys (those
    that depend on the sample rate are checked by :func:`compute`). Raises ``ValueError``
    naming the offending key.
    """
    p = check_section(STAGE, params)
    kinds = p["kinds"]
    lm, mf = p["logmel"], p["mfcc"]
    if "logmel" in kinds and lm["fmax"] is not None and lm["fmax"] <= lm["fmin"]:
        raise ValueError(f"features params: logmel.fmax ({lm['fmax']}) must be null or above fmin ({lm['fmin']})")
    if "mfcc" in kinds and mf["n_mfcc"] > mf["n_mels"]:
        raise ValueError(f"features params: mfcc.n_mfcc ({mf['n_mfcc']}) must be at most mfcc.n_mels ({mf['n_mels']})")
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


@functools.lru_cache(maxsize=16)
def mel_basis(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    """librosa's mel filterbank (Slaney), made once per job for each setting."""
    import librosa

    basis = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    basis.setflags(write=False)
    return basis


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
            # librosa.feature.melspectrogram(S=...), with the filterbank made once per job
            mel = np.einsum("...ft,mf->...mt", mag**2, mel_basis(sr, key[0], s["n_mels"], fmin, fmax), optimize=True)
            x = librosa.power_to_db(mel, ref=1.0, amin=AMIN, top_db=TOP_DB)
            if kind == "mfcc":
                x = librosa.feature.mfcc(S=x, n_mfcc=s["n_mfcc"], dct_type=2, norm="ortho", lifter=0)
        x = np.asarray(x, dtype=np.float32)
        out[kind] = normalize_utterance(x) if s["normalize"] == "utterance" else x
    return out


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


def features_of(speech: pa.Table, p: dict[str, Any]) -> Result:
    """One clip's features from its speech row (``p`` checked by :func:`check_params`)."""
    if speech.num_rows != 1:
        raise ValueError(f"features: a clip has status ok but {speech.num_rows} speech rows")
    sr = int(speech.column("sample_rate").to_pylist()[0])
    y = numpy_values(speech.column("audio").combine_chunks().flatten())
    extra = {"sample_rate": sr, "duration_s": y.size / sr}
    if y.size == 0:
        return Result.rejected("speech: no audio samples", **extra)
    feats = compute(y, sr, p)
    shapes = ", ".join(f"{k} {v.shape[0]}x{v.shape[1]}" for k, v in feats.items())
    print(f"features: {extra['duration_s']:.2f} s: {shapes}", file=sys.stderr)
    return Result("ok", None, _table(feats), extra)


def processor(params: dict[str, Any]) -> batch.PerClip:
    """Clips one at a time, the way :func:`features_of` does one."""
    return batch.PerClip(features_of, params)


CODE = batch.code_key(__file__, ["librosa", "numpy", "scipy"])


def run(speech_path: str | Path, output_path: str | Path, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every clip of a speech batch file into a features batch file (no cache); returns the records."""
    p = check_params(params)
    speech_path = Path(speech_path)
    if not speech_path.is_file():
        raise FileNotFoundError(f"features: input file not found: {speech_path}")
    reader, items = batch.upstream_items(speech_path, STAGE, batch.digest(p), CODE)
    if reader.meta.get("stage") != "speech":
        reader.close()
        raise ValueError(f"features: {speech_path} is not a speech-stage batch file "
                         f"(its stage is {reader.meta.get('stage')!r})")
    try:
        return batch.run_job(STAGE, items, processor(p), SCHEMA, output_path, {"params": p, "code": CODE},
                             progress=False)
    finally:
        reader.close()


def load_feature(path: str | Path, kind: str, clip: str | None = None) -> np.ndarray:
    """One kind of one clip of a features batch file as a float32 ``(n_bins, n_frames)`` array.

    ``clip`` may be left out when the file holds one clip. Raises ``ValueError`` when the
    clip was rejected and ``KeyError`` when the file holds no such clip or kind.
    """
    reader = batch.BatchReader(path)
    try:
        recs = [r for r in reader.records if clip is None or r["clip"] == clip]
        if len(recs) != 1:
            raise KeyError(f"{path}: no clip {clip!r}" if clip else f"{path} holds {len(recs)} clips: name one")
        rec = recs[0]
        if rec["status"] == "rejected":
            raise ValueError(f"{path}: clip {rec['clip']} was rejected ({rec.get('reason')})")
        table = reader.rows(rec)
    finally:
        reader.close()
    kinds = table.column("kind").to_pylist()
    if kind not in kinds:
        raise KeyError(f"{path}: no feature {kind!r} (has {kinds})")
    i = kinds.index(kind)
    n_bins = table.column("n_bins").to_pylist()[i]
    n_frames = table.column("n_frames").to_pylist()[i]
    values = numpy_values(table.column("values").combine_chunks()[i].values)
    return values.copy().reshape(n_bins, n_frames)


def main(argv: list[str] | None = None) -> int:
    return batch.main(STAGE, __doc__, argv, SCHEMA, CODE, check_params, processor)


if __name__ == "__main__":
    sys.exit(main())
