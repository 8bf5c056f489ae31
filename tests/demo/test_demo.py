"""The embedded demo corpus: counts, media format, provenance, caching, verification, planning
and the VoxCeleb1 export. Real packages, real ffmpeg, real MTCNN; no mocks."""

from __future__ import annotations

import copy
import csv
import json
import re
import subprocess
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from conftest import DEMO, DEMO_CACHE, DEMO_CLIPS, DEMO_SEED, DEMO_VIDEOS, REPO
from helpers import HANG_S

from facevoice.common.config import ConfigError
from facevoice.demo import audio, build, export, plan, sources
from facevoice.demo.base import DemoError, VerificationError


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _meta(corpus: Path) -> list[dict[str, str]]:
    with open(corpus / "vox1_meta.csv", encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def _splits(corpus: Path) -> dict[str, int]:
    out = {}
    for line in (corpus / "identity_splits.txt").read_text(encoding="utf-8").splitlines():
        name, code = line.split(" ")
        out[name] = int(code)
    return out


def test_counts_splits_and_meta(demo_corpus):
    meta = _meta(demo_corpus)
    assert list(meta[0]) == ["VoxCeleb1 ID", "VGGFace1 ID", "Gender", "Nationality", "Set"]
    splits = _splits(demo_corpus)
    ids = {row["VoxCeleb1 ID"] for row in meta}
    assert len(ids) == len(meta) >= 30
    assert all(re.fullmatch(r"id9\d{4}", i) for i in ids)
    assert {row["Gender"] for row in meta} == {"m", "f"}
    # every identity is in the splits file once; the sets are identity-disjoint by construction
    assert set(splits) == {row["VGGFace1 ID"] for row in meta}
    assert set(splits.values()) == {1, 2, 4}
    assert sum(1 for code in splits.values() if code == 4) >= 10
    for row in meta:
        assert row["Set"] == ("test" if splits[row["VGGFace1 ID"]] == 4 else "dev")
    # videos layout: <identity>/<11-char video>/<NNNNN>.mp4, >= 3 clips each in 2 videos (the
    # seen-heard protocol holds one out), clips numbered from 1 in each video; only listed identities
    on_disk = {p.name for p in (demo_corpus / "videos").iterdir()}
    assert on_disk == ids
    for vox_id in ids:
        clips = sorted((demo_corpus / "videos" / vox_id).glob("*/*.mp4"))
        assert len(clips) >= DEMO_CLIPS
        assert all(re.fullmatch(r"[A-Z2-7]{11}", c.parent.name) for c in clips)
        by_video = defaultdict(list)
        for c in clips:
            by_video[c.parent.name].append(c.stem)
        assert len(by_video) == DEMO_VIDEOS == 2
        assert sorted(len(v) for v in by_video.values()) == [DEMO_CLIPS // 2, DEMO_CLIPS - DEMO_CLIPS // 2]
        for stems in by_video.values():
            assert stems == [f"{k:05d}" for k in range(1, len(stems) + 1)]


def test_clips_of_an_identity_differ_in_speech_and_look(demo_corpus):
    info = json.loads((demo_corpus / "corpus.json").read_text())
    by_identity = defaultdict(list)
    for clip in info["clips"]:
        by_identity[clip["identity"]].append(clip)
    for vox_id, clips in by_identity.items():
        used = [{(m, a, b) for m, a, b in c["audio_sources"]} for c in clips]
        for i in range(len(used)):
            for j in range(i + 1, len(used)):
                assert not used[i] & used[j], f"{vox_id}: clips share speech"
        looks = {json.dumps(c["look"], sort_keys=True) for c in clips}
        assert len(looks) == len(clips)
        assert len({c["sha256"] for c in clips}) == len(clips)
        for c in clips:  # MTCNN saw exactly one face >= 160 px in the first, middle, last frame
            assert len(c["face_check"]) == 3
            assert all(m["faces"] == 1 and m["px"] >= 160 and m["prob"] >= 0.95 for m in c["face_check"])
            assert 3.0 <= c["duration_s"] <= 5.0


def test_every_clip_is_h264_25fps_with_aac_16k(demo_corpus):
    clips = sorted((demo_corpus / "videos").glob("*/*/*.mp4"))
    assert clips
    for clip in clips:
        err = subprocess.run([_ffmpeg(), "-hide_banner", "-i", str(clip)], capture_output=True, text=True).stderr
        video = re.search(r"Stream #\S+.*Video: (\w+).*?, (\w+)\(?.*?, (\d+)x(\d+).*?, ([\d.]+) fps", err)
        audio = re.search(r"Stream #\S+.*Audio: (\w+).*?, (\d+) Hz, (\w+)", err)
        assert video and audio, f"{clip}: {err[-800:]}"
        codec, pix, w, h, fps = video.groups()
        assert (codec, pix, float(fps)) == ("h264", "yuv420p", 25.0), clip
        assert int(w) >= 160 and int(h) >= 160
        acodec, rate, layout = audio.groups()
        assert acodec == "aac" and int(rate) >= 16000 and layout == "mono", clip


def test_provenance_covers_every_identity(demo_corpus):
    with open(demo_corpus / "provenance.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for col in ("identity", "role", "registry", "package", "version", "file", "sha256", "licence",
                "gender_source", "notes"):
        assert col in rows[0]
    roles = defaultdict(set)
    for row in rows:
        roles[row["identity"]].add(row["role"])
        assert row["registry"] in {"pypi", "debian", "npm"}
        assert re.fullmatch(r"[0-9a-f]{64}", row["sha256"])
        assert row["licence"] and row["gender_source"] and row["version"]
    ids = {row["VoxCeleb1 ID"] for row in _meta(demo_corpus)}
    assert set(roles) == ids
    assert all(r == {"face", "voice"} for r in roles.values())
    # a face and a voice are different people of the same gender
    by_id = defaultdict(dict)
    for row in rows:
        by_id[row["identity"]][row["role"]] = row
    for vox_id, pair in by_id.items():
        assert pair["face"]["gender"] == pair["voice"]["gender"], vox_id


def test_rebuild_is_a_noop_and_the_build_is_deterministic(demo_corpus, tmp_path, capsys):
    info = json.loads((demo_corpus / "corpus.json").read_text())
    before = {c["path"]: (demo_corpus / c["path"]).stat().st_mtime_ns for c in info["clips"]}
    # a killed build's temporary clip beside the complete corpus: swept, nothing else touched
    first = demo_corpus / info["clips"][0]["path"]
    leftover = first.parent / f".{first.name}.x1y2.tmp.mp4"
    leftover.write_bytes(b"half a clip")
    build.build_demo({**DEMO, "out": demo_corpus}, progress=False)
    err = capsys.readouterr().err
    assert "demo corpus up to date" in err and "leftover" in err
    assert not leftover.exists()
    assert before == {p: (demo_corpus / p).stat().st_mtime_ns for p in before}
    # the same inputs give byte-identical clips: render three identities again (one from a
    # video source) and compare with the hashes of the corpus
    videos = {r["id"] for r in info["identities"] if r["face"] in ("clm_franck", "feat_wolfgang")}
    ids = sorted(videos)[:1] + [r["id"] for r in info["identities"] if r["id"] not in videos][:2]
    again = build.reproduce_clips(demo_corpus, DEMO_CACHE, tmp_path, ids)
    want = {c["path"]: c["sha256"] for c in info["clips"] if c["identity"] in ids}
    assert again == want


def test_a_changed_catalog_or_file_is_not_up_to_date(demo_corpus, tmp_path):
    catalog = sources.load_catalog()
    info = json.loads((demo_corpus / "corpus.json").read_text())
    params = info["params"]
    assert export.corpus_up_to_date(demo_corpus, catalog, params)[0]
    assert not export.corpus_up_to_date(demo_corpus, catalog, {**params, "seed": params["seed"] + 1})[0]
    changed = {**catalog, "_sha256": "0" * 64}
    assert export.corpus_up_to_date(demo_corpus, changed, params) == (False, "catalog changed")


def _small_package(catalog) -> str:
    return min((k for k, p in catalog["packages"].items() if p["registry"] == "pypi"),
               key=lambda k: sources.archive_path(DEMO_CACHE, catalog["packages"][k]).stat().st_size)


def test_verification_mismatch_fails_clearly(demo_corpus, tmp_path):
    catalog = sources.load_catalog()
    # 1. a tampered archive in the cache, and no client to fetch it again
    key = _small_package(catalog)
    pkg = catalog["packages"][key]
    bad = sources.archive_path(tmp_path / "cache", pkg)
    bad.parent.mkdir(parents=True)
    data = bytearray(sources.archive_path(DEMO_CACHE, pkg).read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(VerificationError, match="sha256"):
        sources.fetch_package(catalog, key, tmp_path / "cache", clients=set())

    # 2. a file inside a package that does not match the catalog stops the build
    cache = tmp_path / "cache2"
    for k, p in catalog["packages"].items():
        link = sources.archive_path(cache, p)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(sources.archive_path(DEMO_CACHE, p))
    tampered = copy.deepcopy(catalog)
    first = next(iter(tampered["packages"]))
    face = next(f for f in tampered["faces"] if f["package"] == first)
    face["sha256"] = "0" * 64
    with pytest.raises(VerificationError, match=re.escape(face["file"])):
        build.build_demo({**DEMO, "out": tmp_path / "out", "cache": cache}, catalog=tampered, clients={"dpkg-deb"},
                         progress=False)
    assert not (tmp_path / "out" / "corpus.json").exists()


def test_planning_skips_npm_sources_then_fails_when_too_few():
    catalog = sources.load_catalog()
    full = plan.plan_identities(catalog, {"pip", "apt-get", "dpkg-deb", "npm"}, seed=DEMO_SEED)
    npm_keys = {k for k, p in catalog["packages"].items() if p["registry"] == "npm"}
    assert len(full.identities) >= 36 and any(
        next(f for f in catalog["faces"] if f["key"] == i.face)["package"] in npm_keys for i in full.identities)

    no_npm = plan.plan_identities(catalog, {"pip", "apt-get", "dpkg-deb"}, seed=DEMO_SEED)
    assert len(no_npm.identities) >= 30 and no_npm.count("test") >= 10
    assert any("npm not found" in msg for msg in no_npm.skipped)
    faces = {f["key"]: f for f in catalog["faces"]}
    assert not {faces[i.face]["package"] for i in no_npm.identities} & npm_keys
    for i in no_npm.identities:  # same gender, one face and one voice each
        assert faces[i.face]["gender"] == i.gender
    assert len({i.face for i in no_npm.identities}) == len({i.voice for i in no_npm.identities}) == 30
    # cached npm archives need no npm client
    cached = plan.plan_identities(catalog, {"pip", "apt-get", "dpkg-deb"}, seed=DEMO_SEED, cached_packages=npm_keys)
    assert [i.name for i in cached.identities] == [i.name for i in full.identities]

    with pytest.raises(DemoError) as err:
        plan.plan_identities(catalog, {"pip", "npm"}, seed=DEMO_SEED)
    message = str(err.value)
    assert "apt-get" in message and "dpkg-deb" in message and "at least 30" in message


def test_export_voxceleb1_layout(demo_corpus, tmp_path):
    meta = _meta(demo_corpus)
    ids = [meta[0]["VoxCeleb1 ID"], meta[-1]["VoxCeleb1 ID"]]
    names = {r["VoxCeleb1 ID"]: r["VGGFace1 ID"] for r in meta}
    out = export.export_voxceleb1_layout(demo_corpus, tmp_path / "vox", identities=ids, fps=1.0)
    assert [r["VoxCeleb1 ID"] for r in _meta(out)] == ids
    assert set(_splits(out)) == {names[i] for i in ids}
    for vox_id in ids:
        clips = sorted((demo_corpus / "videos" / vox_id).glob("*/*.mp4"))
        for clip in clips:
            video, stem = clip.parent.name, clip.stem
            wav = out / "wav" / vox_id / video / f"{stem}.wav"
            info = sf.info(str(wav))
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert 2.9 <= info.duration <= 5.2
            frames = out / "unzippedIntervalFaces" / "data" / names[vox_id] / "1.6" / video / str(int(stem))
            jpgs = sorted(p.name for p in frames.glob("*.jpg"))
            assert jpgs and jpgs == [f"{k:04d}.jpg" for k in range(1, len(jpgs) + 1)]
            assert 3 <= len(jpgs) <= 6  # 3-5 s clips at 1 fps
    assert sorted(p.name for p in (out / "wav").iterdir()) == sorted(ids)


def test_copy_videos_subset(demo_corpus, tmp_path):
    meta = _meta(demo_corpus)
    ids = [meta[1]["VoxCeleb1 ID"], meta[2]["VoxCeleb1 ID"]]
    out = export.copy_videos_subset(demo_corpus, tmp_path / "data", ids)
    assert sorted(p.name for p in (out / "videos").iterdir()) == sorted(ids)
    assert [r["VoxCeleb1 ID"] for r in _meta(out)] == ids
    for vox_id in ids:
        src = sorted(p.relative_to(demo_corpus) for p in (demo_corpus / "videos" / vox_id).rglob("*.mp4"))
        dst = sorted(p.relative_to(out) for p in (out / "videos" / vox_id).rglob("*.mp4"))
        assert src == dst
    with pytest.raises(DemoError, match="id00000"):
        export.copy_videos_subset(demo_corpus, tmp_path / "bad", ["id00000"])


def test_cli_reports_up_to_date(demo_corpus, capsys):
    rc = build.main(["--config", str(REPO / "config.yaml"), "--out", str(demo_corpus),
                    "--cache", str(DEMO_CACHE), "--no-progress"])
    assert rc == 0
    assert "up to date" in capsys.readouterr().err


def test_relative_cache_and_out_paths_work(tmp_path, monkeypatch):
    """`facevoice demo` takes config's relative paths; the package clients run elsewhere."""
    catalog = sources.load_catalog()
    key = next(k for k, p in catalog["packages"].items() if p.get("registry", "pypi") == "pypi"
               and "speakerbox" in k)
    monkeypatch.chdir(tmp_path)
    archive = sources.fetch_package(catalog, key, ".cache/rel")
    assert archive.is_absolute() and archive.is_file()
    assert archive.is_relative_to(tmp_path / ".cache" / "rel")


def test_settings_are_the_config_over_the_schema_defaults(tmp_path, monkeypatch, capsys):
    """The builder's defaults are written once, in the config schema; a config's demo: keys win
    and are validated by facevoice.common.config."""
    defaults = build.schema_defaults()
    assert set(defaults) == set(build.SETTINGS)
    monkeypatch.chdir(tmp_path)  # no ./config.yaml: the defaults alone
    assert build.demo_settings() == defaults
    cfg = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    cfg["demo"] = {"seed": 7, "out": "elsewhere"}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    assert build.demo_settings(path) == {**defaults, "seed": 7, "out": "elsewhere"}
    assert build.demo_settings() == build.demo_settings(path)  # ./config.yaml when there is one
    cfg["demo"]["clips_per_identity"] = 2  # under the schema's minimum
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    with pytest.raises(ConfigError, match="demo.clips_per_identity"):
        build.demo_settings(path)
    assert build.main(["--config", str(path), "--no-progress"]) == 1
    assert "demo.clips_per_identity" in capsys.readouterr().err
    assert build.main(["--config", str(tmp_path / "none.yaml"), "--no-progress"]) == 1
    assert "config file not found" in capsys.readouterr().err


def test_the_builder_needs_the_complete_section(tmp_path):
    """No fallbacks in the builder: a missing key is an error, not a default."""
    out = tmp_path / "out"
    partial = {k: v for k, v in DEMO.items() if k != "seed"}
    with pytest.raises(DemoError, match="lack seed"):
        build.build_demo({**partial, "out": out}, progress=False)
    with pytest.raises(DemoError, match="videos_per_identity is 5"):
        build.build_demo({**DEMO, "out": out, "clips_per_identity": 4, "videos_per_identity": 5}, progress=False)
    assert not out.exists()


# --------------------------------------------------------------------------------------
# the catalog's F0 gender labels, recomputed with the function that made them

F0_LABEL = re.compile(r"f0 estimate \((\d+) Hz\)")
#: how the catalog's figures were computed: over the voice's first 40 listed files (see
#: facevoice.demo.audio.estimate_f0); reproduced for all 26 f0-labelled voices when this test was written
F0_FILES = 40
#: the voices recomputed (all 26 take about 75 s on two cores; these 5 11-16 s): every format
#: (ogg, gsm, wav, s16le8k), both kinds, both genders, two voices with more than 40 files, and the
#: male and the female estimate nearest the label thresholds (147.6 Hz and 181.7 Hz)
F0_CHECKED = ("gcin_liu", "kl_es_syllab", "ast_july", "c2_vk5qi", "c2_cq_ref")


def _f0_voices(catalog) -> dict[str, tuple[dict, int]]:
    """Voice key -> (voice, the N of its ``f0 estimate (N Hz)`` label)."""
    out = {}
    for voice in catalog["voices"]:
        label = F0_LABEL.match(voice["gender_source"])
        if label:
            out[voice["key"]] = (voice, int(label.group(1)))
    return out


def _f0_gender(hz: float) -> str | None:
    return "m" if hz < 150 else "f" if hz > 165 else None


def test_f0_labels_agree_with_their_recorded_figures():
    """Every ``f0 estimate (N Hz)`` label: N is the recorded ``f0_hz`` rounded, and the gender is
    the one the thresholds give (male < 150 Hz, female > 165 Hz)."""
    catalog = sources.load_catalog()
    voices = _f0_voices(catalog)
    assert len(voices) == 26
    for key, (voice, n_hz) in voices.items():
        assert abs(voice["f0_hz"] - n_hz) <= 0.5, key
        assert _f0_gender(voice["f0_hz"]) == voice["gender"], key
    # a recorded figure without the label (or the reverse) would escape these checks
    assert {v["key"] for v in catalog["voices"] if "f0_hz" in v} == set(voices)


def _voice_audio(catalog, voice, members: list[str]) -> list:
    """The members' decoded audio, from the download cache (skips when the cache lacks them)."""
    pkg = catalog["packages"][voice["package"]]
    archive = sources.archive_path(DEMO_CACHE, pkg)
    if not archive.is_file():
        pytest.skip(f"{pkg['archive']} (voice {voice['key']}) is not in the download cache {DEMO_CACHE}")
    digests = dict(voice["files"])
    try:  # reuses the verified files the demo build extracted; extracts (and verifies) missing ones
        paths = sources.extract_files(catalog, voice["package"], archive, DEMO_CACHE,
                                      {m: digests[m] for m in members})
    except VerificationError:
        raise
    except (DemoError, OSError, subprocess.SubprocessError) as exc:  # e.g. no dpkg-deb to unpack a .deb
        pytest.skip(f"voice {voice['key']}: files not extractable from the cache: {exc}")
    return [audio.decode_audio(paths[m], voice["format"]) for m in members]


def test_f0_estimates_are_reproduced_from_the_cached_files():
    """``estimate_f0`` recomputes the catalog's figure for the voices of F0_CHECKED (why these:
    see there) from the download cache: over the voice's first F0_FILES listed files, each
    trimmed as the builder trims prompts, concatenated back to back (pooling per-file frames,
    the median of per-file medians, untrimmed files or all listed files give other figures).
    The estimate rounds to the recorded ``f0_hz`` (0.1 Hz) and to the N of the label, and gives
    the voice's gender."""
    catalog = sources.load_catalog()
    voices = _f0_voices(catalog)
    assert set(F0_CHECKED) <= set(voices)
    for key in F0_CHECKED:
        voice, n_hz = voices[key]
        members = [m for m, _ in voice["files"][:F0_FILES]]
        clips = _voice_audio(catalog, voice, members)
        hz, frames = audio.estimate_f0(np.concatenate([audio._trim(y, 16000) for y in clips]))
        assert frames >= 20, key
        assert round(hz, 1) == voice["f0_hz"], (key, hz)
        assert round(hz) == n_hz, (key, hz)
        assert _f0_gender(hz) == voice["gender"], (key, hz)


def test_a_second_build_waits_for_the_first(demo_corpus):
    """Two builds of one corpus at once (two test sessions, `facevoice demo` beside one) would
    rewrite each other's half-written files: the second waits for the first's lock, then finds
    the corpus up to date."""
    import sys

    from facevoice.common.lock import exclusive

    settings = {**DEMO, "out": str(DEMO["out"]), "cache": str(DEMO["cache"])}
    code = ("import sys; from facevoice.demo.build import build_demo; "
            f"build_demo({settings!r}, progress=False)")
    with exclusive(demo_corpus.parent / f".{demo_corpus.name}.lock", "the test"):
        proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
        before = ""  # read until it says it waits (it blocks there) or ends (the lock did not hold it)
        while "waiting for another process building the demo corpus" not in before:
            line = proc.stderr.readline()
            assert line, f"the second build did not wait for the lock: {before}"
            before += line
    rest = proc.communicate(timeout=HANG_S)[1]
    assert proc.returncode == 0, rest
    assert "demo corpus up to date" in rest
