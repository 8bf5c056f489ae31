"""Tests of the speech stage on audio made here: a synthetic voiced signal between silences.

The voiced parts are a harmonic tone (f0 150 Hz with vibrato, 1/k harmonics, syllable-rate
amplitude modulation); the silences carry white noise at -60 dBFS so that the energy rules
and the VAD, not the digital-silence floor, decide.  Media files are written with
soundfile and muxed into mp4 (black frames + AAC) with imageio-ffmpeg's ffmpeg binary.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from facevoice.common.config import defaults
from facevoice.data.batch import BatchReader
from facevoice.preprocess import speech

ROOT = Path(__file__).resolve().parents[2]
F0 = 150.0
# (kind, seconds): s = silence (noise), v = voiced
PLAN = [("s", 0.6), ("v", 1.0), ("s", 0.8), ("v", 1.2), ("s", 0.6)]
TOTAL = sum(d for _, d in PLAN)
VOICED = sum(d for k, d in PLAN if k == "v")


def voiced_intervals(plan=PLAN):
    out, t = [], 0.0
    for kind, d in plan:
        if kind == "v":
            out.append((t, t + d))
        t += d
    return out


def synth(sr: int, plan=PLAN, noise_db: float = -60.0, seed: int = 0) -> np.ndarray:
    """Voiced-like tone where the plan says 'v', noise at ``noise_db`` dBFS everywhere."""
    rng = np.random.default_rng(seed)
    parts = []
    for kind, d in plan:
        n = int(round(d * sr))
        if kind == "v":
            t = np.arange(n) / sr
            f = F0 * (1 + 0.02 * np.sin(2 * np.pi * 5 * t))
            phase = 2 * np.pi * np.cumsum(f) / sr
            x = sum(np.sin(k * phase) / k for k in range(1, 25) if k * F0 * 1.05 < 0.45 * sr)
            env = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t - np.pi / 2) ** 2
            ramp = np.clip(np.minimum(t, t[-1] - t) / 0.01, 0, 1)
            parts.append(0.25 * x * env * ramp / np.abs(x).max())
        else:
            parts.append(np.zeros(n))
    y = np.concatenate(parts)
    if noise_db is not None:
        y = y + 10 ** (noise_db / 20) * rng.standard_normal(y.size)
    return y.astype(np.float32)


def ffmpeg(*args: str) -> None:
    subprocess.run([speech.ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
                   check=True)


def mux_mp4(wav: Path | None, out: Path, seconds: float, faststart: bool = False) -> Path:
    """A few black frames (+ the wav as AAC when given) in an mp4."""
    args = ["-f", "lavfi", "-i", f"color=c=black:s=32x32:r=5:d={seconds}"]
    if wav is not None:
        args += ["-i", str(wav), "-c:a", "aac", "-b:a", "96k"]
    args += ["-c:v", "libx264", "-pix_fmt", "yuv420p"]
    if faststart:
        args += ["-movflags", "+faststart"]
    ffmpeg(*args, "-shortest", str(out))
    return out


def config_params() -> dict:
    """The contract: the speech: section of the schema's defaults (config.yaml's, test_config checks)."""
    return defaults("speech")


def params(**changes) -> dict:
    p = copy.deepcopy(config_params())
    for key, value in changes.items():
        if isinstance(value, dict):
            p[key] = {**p.get(key, {}), **value}
        else:
            p[key] = value
    return p


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    files = {}
    for sr in (44100, 8000):
        files[f"wav{sr}"] = d / f"voice_{sr}.wav"
        sf.write(files[f"wav{sr}"], synth(sr), sr)
    files["wav4000"] = d / "voice_4000.wav"
    sf.write(files["wav4000"], synth(4000), 4000)
    files["silent"] = d / "silent.wav"
    sf.write(files["silent"], np.zeros(3 * 16000, np.float32), 16000)
    files["short"] = d / "short.wav"
    sf.write(files["short"], synth(16000, [("s", 0.5), ("v", 0.3), ("s", 0.7)]), 16000)
    files["mp4"] = mux_mp4(files["wav44100"], d / "voice.mp4", TOTAL)
    files["mp4_faststart"] = mux_mp4(files["wav44100"], d / "voice_fs.mp4", TOTAL, faststart=True)
    files["mp4_noaudio"] = mux_mp4(None, d / "noaudio.mp4", 2.0)
    for name in ("mp4", "mp4_faststart"):
        data = files[name].read_bytes()
        files[f"{name}_truncated"] = d / f"truncated_{files[name].name}"
        files[f"{name}_truncated"].write_bytes(data[: len(data) // 2])
    files["garbage"] = d / "garbage.wav"
    files["garbage"].write_bytes(np.random.default_rng(3).bytes(20000))
    return files


def read_audio(path: Path) -> tuple[np.ndarray, dict, pq.ParquetFile]:
    """(audio, clip record, rows) of a speech batch file of one clip."""
    reader = BatchReader(path)
    assert reader.meta["stage"] == "speech" and len(reader.records) == 1
    meta = reader.records[0]
    table = reader.rows(meta)
    audio = table.column("audio").combine_chunks().flatten().to_numpy() if table.num_rows else None
    return audio, meta, table


def overlap(seg, interval) -> float:
    return max(0.0, min(seg[1], interval[1]) - max(seg[0], interval[0]))


def assert_voiced_kept(meta, slack_before: float, slack_after: float):
    """Every voiced interval is covered; nothing is kept in the middle of the inner silence."""
    segs = meta["segments"]
    for a, b in voiced_intervals():
        covered = sum(overlap(s, (a, b)) for s in segs)
        assert covered >= 0.97 * (b - a), (a, b, segs)
        for s in segs:
            if overlap(s, (a, b)) > 0:
                assert s[0] >= a - slack_before - 1e-9 and s[1] <= b + slack_after + 1e-9, (s, a, b)
    (_, e1), (s2, _) = voiced_intervals()
    mid = ((e1 + s2) / 2 - 0.15, (e1 + s2) / 2 + 0.15)
    assert sum(overlap(s, mid) for s in segs) == 0, segs


# --------------------------------------------------------------------------- filtering


def test_webrtcvad_drops_silences(media, tmp_path, capsys):
    out = tmp_path / "vad.parquet"
    p = params(method="webrtcvad", webrtcvad={"mode": 2, "frame_ms": 20, "padding_ms": 0})
    meta = speech.run(media["wav44100"], out, p)
    audio, meta_read, table = read_audio(out)
    assert meta_read == json.loads(json.dumps(meta))
    assert meta["status"] == "ok" and meta["reason"] is None
    assert meta["input_rate"] == 44100
    assert table.num_rows == 1
    assert table.column("sample_rate")[0].as_py() == 16000
    assert table.column("total_s")[0].as_py() == pytest.approx(TOTAL, abs=0.01)
    kept_s = table.column("kept_s")[0].as_py()
    # webrtcvad keeps its own hangover (~0.1-0.15 s) after each run and may flag the very
    # first frames while it adapts to the noise: close to, and not below, the voiced time.
    assert VOICED - 0.05 <= kept_s <= VOICED + 0.5
    assert audio.dtype == np.float32 and audio.size == round(kept_s * 16000)
    assert_voiced_kept(meta, slack_before=0.05, slack_after=0.25)
    assert "kept" in capsys.readouterr().err


def test_webrtcvad_padding(media, tmp_path):
    base = speech.run(media["wav8000"], tmp_path / "p0.parquet",
                      params(method="webrtcvad", webrtcvad={"padding_ms": 0}))
    padded = speech.run(media["wav8000"], tmp_path / "p100.parquet",
                        params(method="webrtcvad", webrtcvad={"padding_ms": 100}))
    assert len(base["segments"]) == len(padded["segments"]) >= 2
    for (a0, b0), (a1, b1) in zip(base["segments"], padded["segments"]):
        assert a1 == pytest.approx(max(0.0, a0 - 0.1), abs=1e-6)
        assert b1 == pytest.approx(min(base["total_s"], b0 + 0.1), abs=1e-6)
    assert padded["kept_s"] > base["kept_s"] + 0.3
    # padding wider than half the 0.8 s gap merges the two voiced runs into one segment
    merged = speech.run(media["wav8000"], tmp_path / "p500.parquet",
                        params(method="webrtcvad", webrtcvad={"padding_ms": 500}))
    (_, e1), (s2, _) = voiced_intervals()
    spanning = [s for s in merged["segments"] if s[0] < e1 and s[1] > s2]
    assert len(spanning) == 1
    assert all(s[1] < t[0] for s, t in zip(merged["segments"], merged["segments"][1:]))


def test_energy_relative_db(media, tmp_path):
    p = params(method="energy", energy={"window_ms": 25, "hop_ms": 10, "rule": "relative_db",
                                        "threshold": -35.0})
    meta = speech.run(media["wav44100"], tmp_path / "e.parquet", p)
    assert meta["status"] == "ok"
    assert meta["kept_s"] == pytest.approx(VOICED, abs=0.06)
    assert len(meta["segments"]) == 2
    for seg, (a, b) in zip(meta["segments"], voiced_intervals()):
        assert seg[0] == pytest.approx(a, abs=0.03) and seg[1] == pytest.approx(b, abs=0.03)
    # a threshold below the noise floor (-60 dBFS noise vs ~-15 dBFS voice) keeps everything
    loose = speech.run(media["wav44100"], tmp_path / "e2.parquet",
                       params(method="energy", energy={"rule": "relative_db", "threshold": -80.0}))
    assert loose["kept_s"] == pytest.approx(TOTAL, abs=0.01)


def test_energy_percentile(media, tmp_path):
    p = params(method="energy", energy={"window_ms": 25, "hop_ms": 10, "rule": "percentile",
                                        "threshold": 40})
    meta = speech.run(media["wav44100"], tmp_path / "e.parquet", p)
    assert meta["status"] == "ok"
    # 40 % of the frames (all of them noise: 48 % of the clip is silence) are dropped
    assert meta["kept_s"] == pytest.approx(0.6 * TOTAL, abs=0.05)
    for a, b in voiced_intervals():
        assert sum(overlap(s, (a, b)) for s in meta["segments"]) >= 0.97 * (b - a)


def test_energy_drops_digital_silence_under_any_rule(tmp_path):
    """Frames under -90 dBFS are dropped even by a rule that keeps every frame."""
    wav = tmp_path / "zeros_between.wav"
    sf.write(wav, synth(16000, noise_db=None), 16000)
    meta = speech.run(wav, tmp_path / "o.parquet",
                      params(method="energy", energy={"rule": "percentile", "threshold": 0}))
    # frames straddling a voiced edge are audible: up to about one window per edge
    assert meta["kept_s"] == pytest.approx(VOICED, abs=0.06)
    assert len(meta["segments"]) == 2


def test_energy_rejoins_kept_audio_in_order(media, tmp_path):
    out = tmp_path / "e.parquet"
    meta = speech.run(media["wav44100"], out, params(method="energy"))
    audio, _, _ = read_audio(out)
    # decode the input independently at 16 kHz and re-join the reported segments
    raw = subprocess.run([speech.ffmpeg_exe(), "-v", "error", "-i", str(media["wav44100"]), "-ac", "1",
                          "-ar", "16000", "-f", "f32le", "-"], capture_output=True, check=True).stdout
    full = np.frombuffer(raw, "<f4")
    expected = np.concatenate([full[round(a * 16000): round(b * 16000)] for a, b in meta["segments"]])
    np.testing.assert_array_equal(audio, expected)


@pytest.mark.parametrize("name,rate", [("wav44100", 44100), ("wav8000", 8000), ("mp4", 44100)])
def test_output_is_16k_mono(media, tmp_path, name, rate):
    out = tmp_path / "o.parquet"
    meta = speech.run(media[name], out, params(method="webrtcvad"))
    audio, _, table = read_audio(out)
    assert meta["status"] == "ok"
    assert meta["input_rate"] == rate
    assert table.column("sample_rate")[0].as_py() == 16000
    assert meta["total_s"] == pytest.approx(TOTAL, abs=0.05)
    assert audio.ndim == 1 and audio.size == round(meta["kept_s"] * 16000)
    # the pitch survives the rate change: the strongest spectral peak is the 150 Hz f0
    spec = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    freqs = np.fft.rfftfreq(audio.size, 1 / 16000)
    assert freqs[np.argmax(spec)] == pytest.approx(F0, abs=8)
    assert_voiced_kept(meta, slack_before=0.1, slack_after=0.3)


# --------------------------------------------------------------------------- rejects


def assert_rejected(out: Path, meta: dict, reason_start: str):
    assert meta["status"] == "rejected", meta
    assert meta["reason"].startswith(reason_start), meta["reason"]
    _, meta_read, table = read_audio(out)
    assert table.num_rows == 0
    assert meta_read["status"] == "rejected" and meta_read["reason"] == meta["reason"]
    assert table.schema.remove_metadata() == speech.SCHEMA


def test_reject_mp4_without_audio(media, tmp_path, capsys):
    out = tmp_path / "o.parquet"
    meta = speech.run(media["mp4_noaudio"], out, params())
    assert_rejected(out, meta, "no audio track")
    assert meta["reason"] == "no audio track"
    assert "rejected: no audio track" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["mp4_truncated", "mp4_faststart_truncated", "garbage"])
def test_reject_corrupt_media(media, tmp_path, name):
    out = tmp_path / "o.parquet"
    meta = speech.run(media[name], out, params())
    assert_rejected(out, meta, "unreadable media: ")
    assert len(meta["reason"]) > len("unreadable media: ") + 5


def test_untruncated_faststart_mp4_is_fine(media, tmp_path):
    meta = speech.run(media["mp4_faststart"], tmp_path / "o.parquet", params())
    assert meta["status"] == "ok"


@pytest.mark.parametrize("method", ["webrtcvad", "energy"])
def test_reject_all_silent(media, tmp_path, method):
    out = tmp_path / "o.parquet"
    meta = speech.run(media["silent"], out, params(method=method))
    assert_rejected(out, meta, "speech filtered away entirely")
    assert meta["reason"] == "speech filtered away entirely (0.00 s kept of 3.00 s)"


def test_reject_low_rate(media, tmp_path):
    out = tmp_path / "o.parquet"
    meta = speech.run(media["wav4000"], out, params(min_input_rate=8000))
    assert_rejected(out, meta, "audio rate")
    assert meta["reason"] == "audio rate 4000 Hz below the minimum 8000 Hz"
    assert meta["input_rate"] == 4000
    ok = speech.run(media["wav4000"], tmp_path / "ok.parquet", params(min_input_rate=4000))
    assert ok["status"] == "ok"


def test_reject_too_little_speech(media, tmp_path):
    out = tmp_path / "o.parquet"
    p = params(method="energy", min_speech_s=0.5)
    meta = speech.run(media["short"], out, p)
    assert_rejected(out, meta, "too little speech (")
    kept = float(meta["reason"].split("(")[1].split(" s kept")[0])
    assert 0.2 < kept < 0.5
    assert meta["reason"].endswith("minimum 0.50 s)")
    assert speech.run(media["short"], tmp_path / "ok.parquet",
                      params(method="energy", min_speech_s=0.2))["status"] == "ok"


# --------------------------------------------------------------------------- usage errors


def test_bad_usage_raises(media, tmp_path):
    with pytest.raises(FileNotFoundError):
        speech.run(tmp_path / "missing.wav", tmp_path / "o.parquet", params())
    for bad in (
        params(method="nope"),
        params(webrtcvad={"frame_ms": 25}),
        params(webrtcvad={"mode": 4}),
        params(sample_rate=22050),  # webrtcvad cannot run at 22.05 kHz
        params(method="energy", energy={"rule": "percentile", "threshold": -35}),
        params(method="energy", energy={"rule": "relative_db", "threshold": 10}),
        {**params(), "bogus": 1},
    ):
        with pytest.raises(ValueError):
            speech.run(media["wav8000"], tmp_path / "o.parquet", bad)
    assert not (tmp_path / "o.parquet").exists()


def test_a_key_left_out_is_named_never_filled_in():
    assert speech.check_params(config_params()) == config_params()
    for key, left in (("method", "speech.method"), ("webrtcvad", "speech.webrtcvad"),
                      ("min_speech_s", "speech.min_speech_s")):
        with pytest.raises(ValueError, match=rf"'{left}' is missing"):
            speech.check_params({k: v for k, v in config_params().items() if k != key})
    p = params()
    del p["energy"]["threshold"]
    with pytest.raises(ValueError, match=r"'speech.energy.threshold' is missing"):
        speech.check_params(p)


# --------------------------------------------------------------------------- CLI


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "facevoice.preprocess.speech", *args],
                          capture_output=True, text=True, env=env)


def test_cli_round_trip(media, tmp_path):
    p = params(method="energy")
    pfile = tmp_path / "speech.json"
    pfile.write_text(json.dumps(p))
    direct = speech.run(media["wav8000"], tmp_path / "direct.parquet", p)
    r1 = _cli("--input", str(media["wav8000"]), "--output", str(tmp_path / "a.parquet"),
              "--params", json.dumps(p))
    r2 = _cli("--input", str(media["wav8000"]), "--output", str(tmp_path / "b.parquet"),
              "--params", f"@{pfile}")
    for r, name in ((r1, "a"), (r2, "b")):
        assert r.returncode == 0, r.stderr
        assert "kept" in r.stderr and "1 computed" in r.stderr and "Traceback" not in r.stderr
        audio, meta, _ = read_audio(tmp_path / f"{name}.parquet")
        assert meta == json.loads(json.dumps(direct))
        np.testing.assert_array_equal(audio, read_audio(tmp_path / "direct.parquet")[0])
    # a rejected clip is a normal outcome (exit 0); bad params are bad usage (exit 2)
    r3 = _cli("--input", str(media["mp4_noaudio"]), "--output", str(tmp_path / "c.parquet"),
              "--params", json.dumps(p))
    assert r3.returncode == 0 and "no audio track" in r3.stderr
    r4 = _cli("--input", str(media["wav8000"]), "--output", str(tmp_path / "d.parquet"),
              "--params", json.dumps(params(method="nope")))
    assert r4.returncode == 2 and "method" in r4.stderr
    assert not (tmp_path / "d.parquet").exists()


# --------------------------------------------------------------------------- Silero VAD


def test_silero_keeps_real_speech_and_drops_spliced_gaps(demo_corpus, tmp_path):
    """Real voices with silence and noise spliced in at known places (facevoice.testing)."""
    from facevoice.testing import speech_scores, spliced_speech

    voices = [speech.decode(c, 16000)["audio"] for c in sorted(demo_corpus.glob("videos/*/*/00001.mp4"))[:6]]
    y, labels = spliced_speech(voices, 16000, seed=0)
    wav = tmp_path / "spliced.wav"
    sf.write(wav, y, 16000)
    scores = {}
    for method in ("silero", "webrtcvad"):
        meta = speech.run(wav, tmp_path / f"{method}.parquet", params(method=method))
        assert meta["status"] == "ok"
        ranges = [(round(a * 16000), round(b * 16000)) for a, b in meta["segments"]]
        scores[method] = speech_scores(ranges, labels, 16000)
    assert scores["silero"]["precision"] >= 0.9 and scores["silero"]["recall"] >= 0.6, scores
    assert scores["silero"]["kept_of_gaps"] <= 0.4, scores
    # the neural filter keeps less of the gaps than webrtcvad on the same signal
    assert scores["silero"]["kept_of_gaps"] < scores["webrtcvad"]["kept_of_gaps"], scores


def test_silero_settings_are_checked():
    assert speech.check_params(params(method="silero", sample_rate=32000))["silero"]["threshold"] == 0.5
    for bad, key in ((params(method="silero", silero={"threshold": 1.5}), "silero.threshold"),
                     (params(method="silero", sample_rate=44100), "sample_rate"),  # no VAD rate (schema)
                     (params(method="silero", silero={"pad_ms": -1}), "silero.pad_ms")):
        with pytest.raises(ValueError, match=key):
            speech.check_params(bad)
