"""Tests of the features stage on speech files made here by the speech stage.

Signals: a harmonic voiced-like tone plus a little noise (so that no frequency bin is
constant), and a pure 1 kHz sine whose spectrogram and mel peak can be predicted by hand.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf

from facevoice.common.config import defaults
from facevoice.data.batch import BatchReader
from facevoice.preprocess import features, speech

ROOT = Path(__file__).resolve().parents[2]
SR = 16000


def config_section(name: str) -> dict:
    """A section of the schema's defaults (config.yaml's, test_config checks)."""
    return defaults(name)


def fparams(**changes) -> dict:
    p = copy.deepcopy(config_section("features"))
    for key, value in changes.items():
        p[key] = {**p[key], **value} if isinstance(value, dict) else value
    return p


def voiced(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sr))) / sr
    phase = 2 * np.pi * np.cumsum(140 * (1 + 0.03 * np.sin(2 * np.pi * 4 * t))) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 40) if k * 140 * 1.05 < 0.45 * sr)
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2
    y = 0.3 * x * env / np.abs(x).max() + 0.003 * rng.standard_normal(t.size)
    return y.astype(np.float32)


def make_speech(tmp: Path, name: str, y: np.ndarray, sr: int, method: str = "energy") -> Path:
    wav = tmp / f"{name}.wav"
    sf.write(wav, y, sr)
    out = tmp / f"{name}.speech.parquet"
    sp = {**config_section("speech"), "method": method}
    speech.run(wav, out, sp)
    return out


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("feat")
    return {
        "wav_voice": d / "voice.wav",
        "voice": make_speech(d, "voice", voiced(2.0, 22050), 22050),
        "sine": make_speech(d, "sine", (0.5 * np.sin(2 * np.pi * 1000 * np.arange(2 * SR) / SR))
                            .astype(np.float32), SR),
        "silent": make_speech(d, "silent", np.zeros(SR, np.float32), SR),
    }


def read_one(path: Path):
    """(rows, clip record, batch metadata) of a batch file of one clip."""
    reader = BatchReader(path)
    assert len(reader.records) == 1
    rec = reader.records[0]
    return reader.rows(rec), rec, reader.meta


def speech_audio(path: Path) -> np.ndarray:
    return read_one(path)[0].column("audio").combine_chunks().flatten().to_numpy()


def test_shapes_and_frames(clips, tmp_path, capsys):
    out = tmp_path / "f.parquet"
    meta = features.run(clips["voice"], out, fparams())[0]
    assert meta["status"] == "ok" and meta["sample_rate"] == SR
    n = speech_audio(clips["voice"]).size
    assert meta["duration_s"] == pytest.approx(n / SR)
    table, meta_read, batch_meta = read_one(out)
    assert meta_read == json.loads(json.dumps(meta)) and batch_meta["stage"] == "features"
    assert table.schema.remove_metadata() == features.SCHEMA
    assert table.column("kind").to_pylist() == ["spectrogram", "logmel", "mfcc"]
    expected_bins = {"spectrogram": 512 // 2 + 1, "logmel": 64, "mfcc": 25}
    direct = features.compute(speech_audio(clips["voice"]), SR, fparams())
    for kind, bins in expected_bins.items():
        x = features.load_feature(out, kind)
        np.testing.assert_array_equal(x, direct[kind])  # row-major bins x frames round trip
        assert x.dtype == np.float32 and x.shape[0] == bins
        # center=True framing: 1 + n // hop frames, about duration / 10 ms
        assert x.shape[1] == 1 + n // 160
        assert abs(x.shape[1] - (n / SR) / 0.010) <= 2
        assert np.isfinite(x).all()
    assert "logmel 64x" in capsys.readouterr().err


def test_utterance_normalisation(clips, tmp_path):
    out = tmp_path / "f.parquet"
    p = fparams(mfcc={"normalize": "utterance"})
    features.run(clips["voice"], out, p)
    for kind in ("spectrogram", "logmel", "mfcc"):
        x = features.load_feature(out, kind).astype(np.float64)
        np.testing.assert_allclose(x.mean(axis=1), 0.0, atol=1e-4)
        np.testing.assert_allclose(x.std(axis=1), 1.0, atol=1e-3)
    # normalize: none leaves the raw values (MFCC c0 of a loud clip is far from N(0, 1))
    raw = tmp_path / "raw.parquet"
    features.run(clips["voice"], raw, fparams(logmel={"normalize": "none"}))
    m = features.load_feature(raw, "mfcc").astype(np.float64)
    lm = features.load_feature(raw, "logmel").astype(np.float64)
    assert abs(m[0].mean()) > 10
    assert np.abs(lm.mean(axis=1)).max() > 1
    assert lm.max() - lm.min() <= features.TOP_DB + 1e-3  # power_to_db's top_db clipping


def test_known_sine(clips, tmp_path):
    """A 0.5-amplitude 1 kHz sine: predictable STFT magnitude and mel peak."""
    out = tmp_path / "f.parquet"
    p = fparams(spectrogram={"log": False, "normalize": "none"}, logmel={"normalize": "none"})
    features.run(clips["sine"], out, p)
    spec = features.load_feature(out, "spectrogram")
    mid = spec[:, spec.shape[1] // 2]
    k = int(np.argmax(mid))
    assert k == round(1000 / (SR / 512))  # bin 32
    # |X| at the peak = A * sum(hann_400) / 2 = 0.5 * 200 / 2 (1 kHz sits exactly on bin 32)
    assert mid[k] == pytest.approx(0.5 * 400 / 2 / 2, rel=0.02)
    logmel = features.load_feature(out, "logmel")
    band = int(np.argmax(logmel[:, logmel.shape[1] // 2]))
    centres = librosa.mel_frequencies(n_mels=66, fmin=0, fmax=SR / 2.0)
    assert centres[band] < 1000 < centres[band + 2]  # the band whose triangle holds 1 kHz
    # far from 1 kHz the bands are > 80 dB down: power_to_db's top_db=80 floor is reached
    frame = logmel[:, logmel.shape[1] // 2]
    assert frame.max() - frame.min() == pytest.approx(features.TOP_DB, abs=1e-3)
    assert frame.max() == pytest.approx(10 * np.log10(np.max(
        librosa.filters.mel(sr=SR, n_fft=512, n_mels=64, fmin=0, fmax=None) @ (spec[:, spec.shape[1] // 2] ** 2))), abs=1e-3)
    # log1p of the same magnitude when log: true
    logged = tmp_path / "l.parquet"
    features.run(clips["sine"], logged, fparams(spectrogram={"log": True, "normalize": "none"},
                                                kinds=["spectrogram"]))
    np.testing.assert_allclose(features.load_feature(logged, "spectrogram"), np.log1p(spec), rtol=1e-6)


def test_rejected_speech_propagates(clips, tmp_path, caplog):
    caplog.set_level("INFO", logger="facevoice")
    smeta = read_one(clips["silent"])[1]
    assert smeta["status"] == "rejected"
    out = tmp_path / "f.parquet"
    meta = features.run(clips["silent"], out, fparams())[0]
    assert meta["status"] == "rejected"
    assert meta["reason"] == f"speech: {smeta['reason']}"
    table, meta_read, _ = read_one(out)
    assert table.num_rows == 0 and meta_read["reason"] == meta["reason"]
    assert table.schema.remove_metadata() == features.SCHEMA
    with pytest.raises(ValueError, match="rejected"):
        features.load_feature(out, "logmel")
    assert "rejected (speech:" in caplog.text


def test_kinds_subset_and_load_errors(clips, tmp_path):
    out = tmp_path / "f.parquet"
    features.run(clips["voice"], out, fparams(kinds=["mfcc"], mfcc={"n_mfcc": 20}))
    assert features.load_feature(out, "mfcc").shape[0] == 20
    with pytest.raises(KeyError):
        features.load_feature(out, "logmel")


def test_bad_usage(clips, tmp_path):
    with pytest.raises(FileNotFoundError):
        features.run(tmp_path / "missing.parquet", tmp_path / "o.parquet", fparams())
    for bad in (
        fparams(kinds=["chroma"]),
        fparams(kinds=[]),
        fparams(spectrogram={"normalize": "global"}),
        fparams(logmel={"n_fft": 256}),  # shorter than the 25 ms = 400-sample window
        fparams(logmel={"fmax": 12000}),  # above Nyquist at 16 kHz
        fparams(mfcc={"n_mfcc": 50}),  # more coefficients than mel bands
        {**fparams(), "bogus": 1},
    ):
        with pytest.raises(ValueError):
            features.run(clips["voice"], tmp_path / "o.parquet", bad)
    with pytest.raises(ValueError, match="speech"):  # a features file is not a speech file
        ok = tmp_path / "ok.parquet"
        features.run(clips["voice"], ok, fparams())
        features.run(ok, tmp_path / "o.parquet", fparams())
    assert not (tmp_path / "o.parquet").exists()


def test_a_key_left_out_is_named_never_filled_in():
    cfg = config_section("features")
    assert features.check_params(cfg) == cfg
    with pytest.raises(ValueError, match=r"'features.spectrogram' is missing"):
        features.check_params({k: v for k, v in cfg.items() if k != "spectrogram"})
    p = fparams()
    del p["mfcc"]["n_mfcc"]
    with pytest.raises(ValueError, match=r"'features.mfcc.n_mfcc' is missing"):
        features.check_params(p)


def test_cli_round_trip(clips, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    p = fparams()
    pfile = tmp_path / "features.json"
    pfile.write_text(json.dumps(p))
    direct = tmp_path / "direct.parquet"
    features.run(clips["voice"], direct, p)
    cli = tmp_path / "cli.parquet"
    r = subprocess.run([sys.executable, "-m", "facevoice.preprocess.features", "--input", str(clips["voice"]),
                        "--output", str(cli), "--params", f"@{pfile}"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "1 computed" in r.stderr and "Traceback" not in r.stderr
    for kind in p["kinds"]:
        np.testing.assert_array_equal(features.load_feature(cli, kind), features.load_feature(direct, kind))
    assert read_one(cli)[1] == read_one(direct)[1]
    bad = subprocess.run([sys.executable, "-m", "facevoice.preprocess.features", "--input", str(clips["voice"]),
                          "--output", str(tmp_path / "bad.parquet"),
                          "--params", json.dumps(fparams(kinds=["chroma"]))],
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "kinds" in bad.stderr
    assert not (tmp_path / "bad.parquet").exists()


def test_stages_start_light(clips, tmp_path):
    """The speech job imports neither librosa, scipy nor pandas (seconds per clip, 150,000 clips)."""
    code = (
        "import sys, json\n"
        "from facevoice.common.config import defaults\n"
        "from facevoice.preprocess import speech\n"
        f"speech.run({str(clips['wav_voice'])!r}, {str(tmp_path / 's.parquet')!r}, defaults('speech'))\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('librosa', 'scipy', 'pandas', 'numba'))\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
