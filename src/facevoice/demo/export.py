"""What the demo corpus is written as and read back from: ``vox1_meta.csv``,
``identity_splits.txt``, ``provenance.csv`` and ``corpus.json`` beside the videos layout; the
up-to-date check; subsets of the corpus and its conversion into the VoxCeleb1 release layout."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping, Sequence

from facevoice.common.io import atomic_path, write_json, write_text
from facevoice.common.version import file_sha256
from facevoice.demo.base import BUILDER_VERSION, DemoError, ffmpeg_exe
from facevoice.demo.plan import Plan
from facevoice.demo.render import Rendered
from facevoice.demo.sources import Sources

TABLES = ("vox1_meta.csv", "identity_splits.txt", "provenance.csv")


# --------------------------------------------------------------------------------------
# the corpus' tables and corpus.json


def write_tables(out: Path, catalog: Mapping[str, Any], final: list[Rendered], src: Sources) -> dict[str, str]:
    """vox1_meta.csv, identity_splits.txt, provenance.csv; returns {file: sha256}."""
    meta = ["VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet"]
    for r in final:
        i = r.identity
        meta.append(f"{i.id}\t{i.name}\t{i.gender}\t{i.nationality}\t{'test' if i.split == 4 else 'dev'}")
    write_text(out / "vox1_meta.csv", "\n".join(meta) + "\n")
    write_text(out / "identity_splits.txt", "".join(f"{r.identity.name} {r.identity.split}\n" for r in final))
    write_text(out / "provenance.csv", _provenance(catalog, final, src))
    return {name: file_sha256(out / name) for name in TABLES}


def _provenance(catalog: Mapping[str, Any], final: list[Rendered], src: Sources) -> str:
    """One row for each identity's face and one for each voice file its clips use."""
    faces = {f["key"]: f for f in catalog["faces"]}
    voices = {v["key"]: v for v in catalog["voices"]}
    pkgs = catalog["packages"]
    cols = ["identity", "name", "role", "registry", "package", "version", "file", "sha256", "licence",
            "gender", "gender_source", "nationality", "nationality_source", "notes"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in final:
        i = r.identity
        face, voice = faces[i.face], voices[i.voice]
        fp, vp = pkgs[face["package"]], pkgs[voice["package"]]
        note = face.get("notes", "")
        if face["kind"] == "video":
            note = (note + "; " if note else "") + "clips from different time segments of the video"
        w.writerow([i.id, i.name, "face", fp["registry"], fp["name"], fp["version"], face["file"], face["sha256"],
                    src.licences.get(face["package"], ""), face["gender"], face["gender_source"],
                    face.get("nationality", ""), face.get("nationality_source", ""), note])
        used: dict[str, list[str]] = {}
        for c in r.clips:
            for member, a, b in c["audio_sources"]:
                used.setdefault(member, []).append(f"{c['clip']}@{a:g}-{b:g}s")
        digests = dict((m, d) for m, d in voice["files"])
        for member, where in used.items():
            vnote = voice.get("notes", "")
            vnote = (vnote + "; " if vnote else "") + "clip@span: " + " ".join(where)
            w.writerow([i.id, i.name, "voice", vp["registry"], vp["name"], vp["version"], member, digests[member],
                        src.licences.get(voice["package"], ""), voice["gender"], voice["gender_source"],
                        voice.get("nationality", ""), voice.get("nationality_source", ""), vnote])
    return buf.getvalue()


def write_corpus_json(out: Path, catalog: Mapping[str, Any], params: Mapping[str, Any], plan: Plan,
                      final: list[Rendered], files: Mapping[str, str], missing_clients: list[str]) -> dict[str, Any]:
    """corpus.json: what was built from what (the up-to-date check reads it); returns it."""
    faces = {f["key"]: f for f in catalog["faces"]}
    voices = {v["key"]: v for v in catalog["voices"]}
    info = {
        "builder_version": BUILDER_VERSION,
        "catalog_sha256": catalog["_sha256"],
        "params": params,
        "missing_clients": missing_clients,
        "skipped": plan.skipped,
        "identities": [
            {**asdict(r.identity), "set": r.identity.split_name, "videos": r.videos,
             "face_package": faces[r.identity.face]["package"], "voice_package": voices[r.identity.voice]["package"]}
            for r in final],
        "clips": [c for r in final for c in r.clips],
        "files": dict(files),
        "counts": {"identities": len(final), "clips": sum(len(r.clips) for r in final),
                   **{f"{s}": plan.count(s) for s in ("train", "val", "test")},
                   "m": plan.count(gender="m"), "f": plan.count(gender="f")},
    }
    write_json(out / "corpus.json", info)
    return info


def corpus_up_to_date(out: Path, catalog: Mapping[str, Any], params: Mapping[str, Any],
                      clients: set[str] | None = None) -> tuple[bool, str]:
    """Whether ``out/corpus.json`` matches the catalog and params and every file verifies."""
    path = out / "corpus.json"
    if not path.is_file():
        return False, "no corpus.json"
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False, "unreadable corpus.json"
    if info.get("builder_version") != BUILDER_VERSION:
        return False, "builder version changed"
    if info.get("catalog_sha256") != catalog["_sha256"]:
        return False, "catalog changed"
    if info.get("params") != json.loads(json.dumps(params)):
        return False, "parameters changed"
    if clients is not None:
        regained = [c for c in info.get("missing_clients", []) if c in clients]
        if regained:
            return False, f"{', '.join(regained)} now available: sources skipped before can be used"
    for rel, digest in info.get("files", {}).items():
        f = out / rel
        if not f.is_file() or file_sha256(f) != digest:
            return False, f"{rel} missing or changed"
    for clip in info.get("clips", []):
        f = out / clip["path"]
        if not f.is_file() or file_sha256(f) != clip["sha256"]:
            return False, f"{clip['path']} missing or changed"
    return True, "up to date"


def read_corpus(corpus_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(corpus_dir) / "corpus.json"
    if not path.is_file():
        raise DemoError(f"{path} not found: build the demo corpus first (facevoice demo)")
    return json.loads(path.read_text(encoding="utf-8"))


def _read_meta(corpus_dir: Path) -> list[list[str]]:
    lines = (corpus_dir / "vox1_meta.csv").read_text(encoding="utf-8").splitlines()
    return [ln.split("\t") for ln in lines]


# --------------------------------------------------------------------------------------
# subsets and the VoxCeleb1 release layout


def _subset_tables(corpus_dir: Path, out_dir: Path, identities: Sequence[str] | None) -> list[list[str]]:
    """Write vox1_meta.csv and identity_splits.txt limited to ``identities``; returns meta rows."""
    rows = _read_meta(corpus_dir)
    header, body = rows[0], rows[1:]
    known = {r[0] for r in body}
    if identities is not None:
        unknown = sorted(set(identities) - known)
        if unknown:
            raise DemoError(f"not in {corpus_dir / 'vox1_meta.csv'}: {', '.join(unknown)}")
        body = [r for r in body if r[0] in set(identities)]
    names = {r[1] for r in body}
    write_text(out_dir / "vox1_meta.csv", "\n".join("\t".join(r) for r in [header] + body) + "\n")
    splits = [ln for ln in (corpus_dir / "identity_splits.txt").read_text(encoding="utf-8").splitlines()
              if ln.split(" ")[0] in names]
    write_text(out_dir / "identity_splits.txt", "".join(ln + "\n" for ln in splits))
    return body


def copy_videos_subset(corpus_dir: str | os.PathLike, out_dir: str | os.PathLike,
                       identities: Sequence[str] | None) -> Path:
    """Copy the videos layout of some identities (all when None): videos/, meta, splits."""
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    body = _subset_tables(corpus_dir, out_dir, identities)
    for row in body:
        src = corpus_dir / "videos" / row[0]
        dst = out_dir / "videos" / row[0]
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst)
    return out_dir


def export_voxceleb1_layout(corpus_dir: str | os.PathLike, out_dir: str | os.PathLike,
                            identities: Sequence[str] | None = None, fps: float = 1.0) -> Path:
    """Convert (some identities of) the corpus into the VoxCeleb1 release layout.

    ``out/wav/<id>/<video>/<clip>.wav`` (16 kHz mono PCM), face frames
    ``out/unzippedIntervalFaces/data/<Name>/1.6/<video>/<N>/<NNNN>.jpg`` (N: the clip number
    without leading zeros; NNNN: 1-based frame counter) sampled at ``fps``, and
    ``vox1_meta.csv`` / ``identity_splits.txt`` limited to those identities.
    """
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    body = _subset_tables(corpus_dir, out_dir, identities)
    ff = ffmpeg_exe()
    for vox_id, name, *_ in body:
        for clip in sorted((corpus_dir / "videos" / vox_id).glob("*/*.mp4")):
            video, stem = clip.parent.name, clip.stem
            _export_wav(ff, clip, out_dir / "wav" / vox_id / video / f"{stem}.wav")
            frames_dir = out_dir / "unzippedIntervalFaces" / "data" / name / "1.6" / video / str(int(stem))
            _export_frames(ff, clip, frames_dir, fps)
    return out_dir


def _export_wav(ff: str, clip: Path, wav: Path) -> None:
    """The clip's audio as 16 kHz mono 16-bit PCM, written atomically."""
    wav.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(wav) as tmp:
        subprocess.run([ff, "-v", "error", "-y", "-i", str(clip), "-vn", "-ac", "1", "-ar", "16000",
                        "-c:a", "pcm_s16le", "-fflags", "+bitexact", "-flags:a", "+bitexact",
                        "-map_metadata", "-1", "-f", "wav", str(tmp)], check=True)


def _export_frames(ff: str, clip: Path, frames_dir: Path, fps: float) -> None:
    """The clip's frames at ``fps`` as 0001.jpg, 0002.jpg, ... in ``frames_dir`` (replaced whole)."""
    if frames_dir.exists():
        shutil.rmtree(frames_dir)
    tmp_dir = frames_dir.parent / f".{frames_dir.name}.tmp"
    if tmp_dir.exists():
        shutil.rmtree(tmp_dir)
    tmp_dir.mkdir(parents=True)
    subprocess.run([ff, "-v", "error", "-y", "-i", str(clip), "-an", "-vf", f"fps={fps}", "-q:v", "2",
                    "-start_number", "1", str(tmp_dir / "%04d.jpg")], check=True)
    os.replace(tmp_dir, frames_dir)
