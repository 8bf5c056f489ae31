"""The embedded demo corpus: real faces and real voices fetched from package registries.

VoxCeleb cannot be downloaded here, and no package ships the face and the voice of the same
person. The demo therefore pairs, for every identity, ONE real face source (a photograph
or a video of one person) with ONE real voice source (recorded speech of a *different*
person of the same gender, and of the same nationality where both are known). Every media
file comes from a package fetched with the registry's ordinary client:

* PyPI: ``pip download --no-deps NAME==VERSION`` (wheels and sdists are zip/tar archives),
* Debian: ``apt-get download NAME=VERSION``, unpacked with ``dpkg-deb --fsys-tarfile``,
* npm: ``npm pack NAME@VERSION``.

What is used, and where each label comes from, is written down in
``facevoice/demo/catalog.yaml``: pinned package versions with the sha256 of each
archive and of each file taken from it, face boxes, gender and nationality labels with
their source. Gender always comes from a label (a voice folder name such as
``en_US_f_Allison``, a named speaker, a named public figure, an image we looked at) or, for
unlabelled voices, from an F0 estimate (:func:`estimate_f0`) that the catalog records as
``f0 estimate (N Hz)``. Age is never labelled.

The corpus is laid out like VoxCeleb (``videos/<idXXXXX>/<video>/<NNNNN>.mp4``, clips numbered
from 1 in each video; ``videos_per_identity`` videos per identity, so that the seen-heard
protocol can hold one out of training) with
``vox1_meta.csv``, ``identity_splits.txt``, ``provenance.csv`` and ``corpus.json``. Each
clip is an H.264 (yuv420p) video at exactly 25 fps, 320x320 px with the face at least
160 px, and a 16 kHz mono AAC track. Clips of one identity carry different speech
(disjoint prompts or disjoint stretches of a recording) and different frames (a slow
pan/zoom and a brightness/gamma change drawn per clip from ``demo.seed``; for video sources
a different time segment). Every clip's first, middle and last frame is checked with
MTCNN: exactly one face with probability >= 0.95, at least 160 px; a face source that fails
is dropped with the reason logged, and the identities are planned again without it.

The build is deterministic (same inputs, byte-identical files) and cached: packages are
downloaded once into the cache folder, and a corpus whose ``corpus.json`` matches the
catalog and parameters, and whose files all verify, is left alone.

Public API: :func:`build_demo`, :func:`plan_identities`, :func:`available_clients`,
:func:`load_catalog`, :func:`export_voxceleb1_layout`, :func:`copy_videos_subset`,
:func:`reproduce_clips`, :func:`estimate_f0`, :func:`main` (``facevoice demo``).
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures as cf
import contextlib
import csv
import hashlib
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import yaml

from facevoice.common.io import atomic_path, write_json, write_text

BUILDER_VERSION = "1.0"
CATALOG_PATH = Path(__file__).resolve().parent / "catalog.yaml"

#: command-line clients each registry needs: (download client, extraction client or None)
REGISTRY_CLIENTS: dict[str, tuple[str, str | None]] = {
    "pypi": ("pip", None),
    "debian": ("apt-get", "dpkg-deb"),
    "npm": ("npm", None),
}
INSTALL_HINTS = {
    "pip": "pip for this Python (`python -m ensurepip --upgrade`)",
    "apt-get": "apt-get (a Debian/Ubuntu system; run `apt-get update` so the pinned versions resolve)",
    "dpkg-deb": "dpkg-deb (Debian package `dpkg`)",
    "npm": "npm (e.g. `apt-get install npm`, or Node.js from nodejs.org)",
}
SPLIT_CODES = {"train": 1, "val": 2, "test": 4}
SPLIT_NAMES = {v: k for k, v in SPLIT_CODES.items()}


class DemoError(RuntimeError):
    """The demo corpus cannot be built; the message says why and what to do."""


class VerificationError(DemoError):
    """A downloaded or extracted file does not match the sha256 recorded in the catalog."""


def log(message: str) -> None:
    print(f"[demo] {message}", file=sys.stderr, flush=True)


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _seed_int(*parts: Any) -> int:
    """A 64-bit seed from any parts, the same on every platform."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _rng(*parts: Any) -> np.random.Generator:
    return np.random.default_rng(_seed_int(*parts))


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


# --------------------------------------------------------------------------------------
# catalog


def load_catalog(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Read and check the catalog; adds ``_sha256`` (of the file) and ``_path``."""
    path = Path(path) if path else CATALOG_PATH
    raw = path.read_bytes()
    catalog = yaml.safe_load(raw.decode("utf-8"))
    _check_catalog(catalog)
    catalog["_sha256"] = hashlib.sha256(raw).hexdigest()
    catalog["_path"] = str(path)
    return catalog


def _check_catalog(cat: dict[str, Any]) -> None:
    problems: list[str] = []
    pkgs = cat.get("packages") or {}
    for key, pkg in pkgs.items():
        if pkg.get("registry") not in REGISTRY_CLIENTS:
            problems.append(f"package {key}: unknown registry {pkg.get('registry')!r}")
        for f in ("name", "version", "archive", "sha256"):
            if not pkg.get(f):
                problems.append(f"package {key}: missing {f}")
    seen: dict[str, set] = {"face": set(), "voice": set(), "id": set(), "fname": set(), "vname": set()}
    for face in cat.get("faces") or []:
        k = face.get("key")
        for f in ("key", "id", "name", "package", "file", "sha256", "kind", "box", "gender", "gender_source"):
            if face.get(f) in (None, ""):
                problems.append(f"face {k}: missing {f}")
        if face.get("package") not in pkgs:
            problems.append(f"face {k}: unknown package {face.get('package')!r}")
        if face.get("gender") not in ("m", "f"):
            problems.append(f"face {k}: gender must be m or f")
        if face.get("kind") not in ("image", "video"):
            problems.append(f"face {k}: kind must be image or video")
        for what, value in (("face", k), ("id", face.get("id")), ("fname", face.get("name"))):
            if value in seen[what]:
                problems.append(f"face {k}: duplicate {what} {value!r}")
            seen[what].add(value)
    for voice in cat.get("voices") or []:
        k = voice.get("key")
        for f in ("key", "name", "package", "kind", "format", "files", "gender", "gender_source"):
            if voice.get(f) in (None, "", []):
                problems.append(f"voice {k}: missing {f}")
        if voice.get("package") not in pkgs:
            problems.append(f"voice {k}: unknown package {voice.get('package')!r}")
        if voice.get("gender") not in ("m", "f"):
            problems.append(f"voice {k}: gender must be m or f")
        if voice.get("kind") not in ("prompts", "recording"):
            problems.append(f"voice {k}: kind must be prompts or recording")
        for what, value in (("voice", k), ("vname", voice.get("name"))):
            if value in seen[what]:
                problems.append(f"voice {k}: duplicate {what} {value!r}")
            seen[what].add(value)
    for pair in cat.get("pairs") or []:
        if pair[0] not in seen["face"] or pair[1] not in seen["voice"]:
            problems.append(f"pairs: unknown face or voice in {pair}")
    if problems:
        raise DemoError("the demo catalog is invalid:\n  " + "\n  ".join(problems))


# --------------------------------------------------------------------------------------
# clients and planning


def available_clients() -> set[str]:
    """The package clients found on this machine: a subset of pip, apt-get, dpkg-deb, npm."""
    found: set[str] = set()
    try:
        subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, check=True, timeout=60)
        found.add("pip")
    except (OSError, subprocess.SubprocessError):
        pass
    for exe in ("apt-get", "dpkg-deb", "npm"):
        if shutil.which(exe):
            found.add(exe)
    return found


def _missing_clients(pkg: Mapping[str, Any], clients: set[str], cached: bool) -> list[str]:
    download, extract = REGISTRY_CLIENTS[pkg["registry"]]
    need = ([] if cached else [download]) + ([extract] if extract else [])
    return [c for c in need if c not in clients]


@dataclass(frozen=True)
class PlannedIdentity:
    """One demo identity: a face source and a voice source of the same gender."""

    id: str
    name: str
    gender: str
    nationality: str
    nationality_source: str
    face: str
    voice: str
    split: int  # 1 train, 2 val, 4 test (unseen-unheard)

    @property
    def split_name(self) -> str:
        return SPLIT_NAMES[self.split]


@dataclass
class Plan:
    identities: list[PlannedIdentity]
    usable_packages: list[str]
    skipped: list[str] = field(default_factory=list)

    def count(self, split: str | None = None, gender: str | None = None) -> int:
        return sum(1 for i in self.identities
                   if (split is None or i.split_name == split) and (gender is None or i.gender == gender))


def _match(faces: list[dict], voices: list[dict], preferred: Sequence[Sequence[str]]) -> list[tuple[dict, dict]]:
    """Pair faces with voices of the same gender, greedily and in catalog order.

    Passes: the catalog's preferred pairs; equal nationality; equal language with no
    conflicting nationality; a known nationality with a voice of unknown nationality;
    faces of unknown nationality with the next voice; whatever is left.
    """
    fs, vs = list(faces), list(voices)
    pairs: list[tuple[dict, dict]] = []

    def take(f: dict, v: dict) -> None:
        pairs.append((f, v))
        fs.remove(f)
        vs.remove(v)

    for fk, vk in preferred:
        f = next((x for x in fs if x["key"] == fk), None)
        v = next((x for x in vs if x["key"] == vk), None)
        if f and v:
            take(f, v)
    for f in [f for f in fs if f.get("nationality")]:
        v = next((v for v in vs if v.get("nationality") == f["nationality"]), None)
        if v:
            take(f, v)
    for f in [f for f in fs if f.get("language")]:
        v = next((v for v in vs if v.get("language") == f["language"]
                  and (not v.get("nationality") or not f.get("nationality"))), None)
        if v:
            take(f, v)
    for f in [f for f in fs if f.get("nationality")]:
        v = next((v for v in vs if not v.get("nationality")), None)
        if v:
            take(f, v)
    for f in [f for f in fs if not f.get("nationality")]:
        if vs:
            take(f, vs[0])
    for f in list(fs):  # known and different nationalities: only when nothing else is left
        if vs:
            take(f, vs[0])
    order = {f["key"]: i for i, f in enumerate(faces)}
    return sorted(pairs, key=lambda p: order[p[0]["key"]])


def plan_identities(
    catalog: Mapping[str, Any],
    available_clients: Iterable[str],
    *,
    seed: int = 1234,
    cached_packages: Iterable[str] = (),
    rejected_faces: Mapping[str, str] | None = None,
    rejected_voices: Mapping[str, str] | None = None,
) -> Plan:
    """Choose the identities (face + voice pairs) and their splits; no I/O.

    A package is usable when its registry's client is in ``available_clients`` (pip;
    apt-get and dpkg-deb; npm) or, for the download client, when its archive is already in
    ``cached_packages``. Faces and voices of unusable packages, and the ``rejected_*`` ones
    (key -> reason), are skipped with a message in ``Plan.skipped``. Per gender, the first
    faces and voices in catalog order are paired (:func:`_match`) up to the catalog's
    ``max_identities``. Splits are stratified by gender and drawn from ``seed``.

    Raises :class:`DemoError`, naming what to install, when fewer than the catalog's
    ``min_identities`` (or ``min_test`` test identities) remain.
    """
    clients = set(available_clients)
    cached = set(cached_packages)
    rejected_faces = dict(rejected_faces or {})
    rejected_voices = dict(rejected_voices or {})
    pkgs = catalog["packages"]
    limits = catalog.get("limits", {})
    usable: list[str] = []
    skipped: list[str] = []
    missing_for: dict[str, list[str]] = {}
    for key, pkg in pkgs.items():
        missing = _missing_clients(pkg, clients, key in cached)
        if missing:
            for c in missing:
                missing_for.setdefault(c, []).append(f"{pkg['name']} {pkg['version']}")
            skipped.append(f"skipping {pkg['registry']} package {pkg['name']}=={pkg['version']}: "
                           f"{' and '.join(missing)} not found")
        else:
            usable.append(key)
    for key, why in rejected_faces.items():
        skipped.append(f"dropping face source {key}: {why}")
    for key, why in rejected_voices.items():
        skipped.append(f"dropping voice source {key}: {why}")

    faces = [f for f in catalog["faces"] if f["package"] in usable and f["key"] not in rejected_faces]
    voices = [v for v in catalog["voices"] if v["package"] in usable and v["key"] not in rejected_voices]
    caps = limits.get("max_identities", {"m": 10**6, "f": 10**6})
    preferred = catalog.get("pairs") or []
    identities: list[PlannedIdentity] = []
    for gender in ("m", "f"):
        fg = [f for f in faces if f["gender"] == gender]
        vg = [v for v in voices if v["gender"] == gender]
        k = min(int(caps.get(gender, 10**6)), len(fg), len(vg))
        for face, voice in _match(fg[:k], vg[:k], preferred):
            if face.get("nationality"):
                nat, nat_src = face["nationality"], f"face: {face.get('nationality_source', '')}"
            elif voice.get("nationality"):
                nat, nat_src = voice["nationality"], f"voice: {voice.get('nationality_source', '')}"
            else:
                nat, nat_src = "", ""
            identities.append(PlannedIdentity(
                id=face["id"], name=f"Demo_{voice['name']}_{face['name']}", gender=gender,
                nationality=nat, nationality_source=nat_src, face=face["key"], voice=voice["key"], split=1))

    identities = _assign_splits(identities, seed, limits)
    plan = Plan(identities=sorted(identities, key=lambda i: i.id), usable_packages=usable, skipped=skipped)
    need_n = int(limits.get("min_identities", 30))
    need_test = int(limits.get("min_test", 10))
    if len(plan.identities) < need_n or plan.count("test") < need_test:
        lines = [f"only {len(plan.identities)} demo identities ({plan.count('test')} test) can be planned; "
                 f"the demo needs at least {need_n} ({need_test} test)."]
        if missing_for:
            lines.append("Install the missing package clients and run again:")
            for client, names in sorted(missing_for.items()):
                lines.append(f"  - {INSTALL_HINTS.get(client, client)}: needed for {', '.join(names)}")
        if rejected_faces or rejected_voices:
            lines.append("Sources dropped during the build: " + "; ".join(skipped[-(len(rejected_faces) + len(rejected_voices)):]))
        raise DemoError("\n".join(lines))
    return plan


def _assign_splits(identities: list[PlannedIdentity], seed: int, limits: Mapping[str, Any]) -> list[PlannedIdentity]:
    """Identity-disjoint splits, stratified by gender, from ``seed``."""
    n = len(identities)
    if n == 0:
        return identities
    n_test = max(int(limits.get("min_test", 10)), math.ceil(float(limits.get("test_fraction", 0.25)) * n))
    n_val = max(int(limits.get("min_val", 3)), math.ceil(float(limits.get("val_fraction", 0.15)) * n))
    n_test, n_val = min(n_test, n), min(n_val, max(0, n - n_test))
    by_gender = {g: [i for i in identities if i.gender == g] for g in ("m", "f")}
    # largest-remainder allocation of the test and val counts to the genders
    out: list[PlannedIdentity] = []
    quotas: dict[str, dict[str, int]] = {g: {} for g in by_gender}
    for split, total in (("test", n_test), ("val", n_val)):
        exact = {g: total * len(ids) / n for g, ids in by_gender.items()}
        base = {g: int(math.floor(x)) for g, x in exact.items()}
        rest = total - sum(base.values())
        for g in sorted(exact, key=lambda g: (-(exact[g] - base[g]), g))[:rest]:
            base[g] += 1
        for g in by_gender:
            quotas[g][split] = base[g]
    for g, ids in by_gender.items():
        order = sorted(ids, key=lambda i: hashlib.sha256(f"{seed}:{i.id}".encode()).hexdigest())
        nt, nv = quotas[g]["test"], quotas[g]["val"]
        for j, ident in enumerate(order):
            split = 4 if j < nt else 2 if j < nt + nv else 1
            out.append(PlannedIdentity(**{**asdict(ident), "split": split}))
    return out


# --------------------------------------------------------------------------------------
# fetching and extracting


def _run(cmd: list[str], cwd: Path | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _download_command(pkg: Mapping[str, Any], dest: Path) -> list[str]:
    reg = pkg["registry"]
    if reg == "pypi":
        return [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                "--dest", str(dest), *pkg.get("pip_args", []), f"{pkg['name']}=={pkg['version']}"]
    if reg == "debian":
        return ["apt-get", "download", f"{pkg['name']}={pkg['version']}"]
    if reg == "npm":
        return ["npm", "pack", "--silent", f"{pkg['name']}@{pkg['version']}"]
    raise DemoError(f"unknown registry {reg}")


def archive_path(cache: Path, pkg: Mapping[str, Any]) -> Path:
    return Path(cache) / "archives" / pkg["registry"] / pkg["archive"]


def cached_packages(catalog: Mapping[str, Any], cache: Path) -> set[str]:
    """Packages whose archive is already in the cache (existence only; verified on use)."""
    return {k for k, p in catalog["packages"].items() if archive_path(cache, p).is_file()}


def fetch_package(catalog: Mapping[str, Any], key: str, cache: str | os.PathLike,
                  clients: Iterable[str] | None = None) -> Path:
    """The package's archive in the cache, downloaded with its registry client if needed.

    The archive's sha256 must equal the catalog's: a cached archive that does not match is
    downloaded again (when the client is available); a download that does not match raises
    :class:`VerificationError`.
    """
    pkg = catalog["packages"][key]
    dest = archive_path(Path(cache).resolve(), pkg)
    label = f"{pkg['registry']} package {pkg['name']}=={pkg['version']} ({pkg['archive']})"
    if dest.is_file():
        got = sha256_file(dest)
        if got == pkg["sha256"]:
            return dest
        log(f"cached {label} does not match the catalog (sha256 {got[:12]}... != {pkg['sha256'][:12]}...)")
    clients = set(available_clients() if clients is None else clients)
    client = REGISTRY_CLIENTS[pkg["registry"]][0]
    if client not in clients:
        if dest.is_file():
            raise VerificationError(f"{label}: cached archive {dest} has the wrong sha256 and {client} is "
                                    f"not available to download it again")
        raise DemoError(f"{label} is not cached and {client} is not available")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".download-") as tmp:
        res = _run(_download_command(pkg, Path(tmp)), cwd=Path(tmp))
        got_path = Path(tmp) / pkg["archive"]
        if res.returncode != 0 or not got_path.is_file():
            found = ", ".join(sorted(p.name for p in Path(tmp).iterdir())) or "nothing"
            raise DemoError(f"could not download {label} (exit {res.returncode}; got {found}):\n"
                            f"{(res.stderr or res.stdout)[-2000:]}")
        got = sha256_file(got_path)
        if got != pkg["sha256"]:
            raise VerificationError(f"{label}: downloaded archive has sha256 {got}, the catalog pins "
                                    f"{pkg['sha256']}; refusing to use it")
        os.replace(got_path, dest)
    return dest


def _archive_kind(name: str) -> str:
    if name.endswith(".deb"):
        return "deb"
    if name.endswith((".whl", ".zip")):
        return "zip"
    if name.endswith((".tgz", ".tar.gz")):
        return "tar"
    raise DemoError(f"unknown archive type: {name}")


def _iter_archive(archive: Path, wanted: set[str]) -> Iterable[tuple[str, bytes]]:
    """Yield (member, bytes) for the wanted members (paths without a leading ./)."""
    kind = _archive_kind(archive.name)
    if kind == "zip":
        with zipfile.ZipFile(archive) as zf:
            names = set(zf.namelist())
            for name in sorted(wanted & names):
                yield name, zf.read(name)
        return
    if kind == "tar":
        with tarfile.open(archive, "r:gz") as tf:
            for m in tf:
                name = m.name[2:] if m.name.startswith("./") else m.name
                if name in wanted and m.isfile():
                    yield name, tf.extractfile(m).read()
        return
    # Debian: stream the data tarball through dpkg-deb
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(archive)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tf:
            for m in tf:
                name = m.name[2:] if m.name.startswith("./") else m.name
                if name in wanted and m.isfile():
                    yield name, tf.extractfile(m).read()
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace")
        if proc.wait() != 0:
            raise DemoError(f"dpkg-deb failed on {archive}: {err[-1000:]}")


def _member_path(cache: Path, key: str, member: str) -> Path:
    return Path(cache) / "files" / key / member.replace("!", "/")


def extract_files(catalog: Mapping[str, Any], key: str, archive: Path, cache: str | os.PathLike,
                  files: Mapping[str, str]) -> dict[str, Path]:
    """Extract ``files`` (member -> sha256) of a package into the cache and verify each.

    A member ``outer.zip!inner/path`` is read from a zip inside the archive. Cached files
    that verify are reused. A file whose sha256 differs from the catalog raises
    :class:`VerificationError`.
    """
    cache = Path(cache).resolve()
    pkg = catalog["packages"][key]
    out: dict[str, Path] = {}
    todo: dict[str, str] = {}
    for member, digest in files.items():
        dest = _member_path(cache, key, member)
        if dest.is_file() and sha256_file(dest) == digest:
            out[member] = dest
        else:
            todo[member] = digest
    if not todo:
        return out
    outer: dict[str, list[str]] = {}
    for member in todo:
        outer.setdefault(member.split("!", 1)[0], []).append(member)
    seen: set[str] = set()
    for name, data in _iter_archive(archive, set(outer)):
        seen.add(name)
        for member in outer[name]:
            payload = data
            if "!" in member:
                inner = member.split("!", 1)[1]
                with zipfile.ZipFile(io.BytesIO(data)) as zf:
                    try:
                        payload = zf.read(inner)
                    except KeyError:
                        raise DemoError(f"{pkg['name']} {pkg['version']}: {member} not found") from None
            got = hashlib.sha256(payload).hexdigest()
            if got != todo[member]:
                raise VerificationError(
                    f"{pkg['registry']} package {pkg['name']}=={pkg['version']}: {member} has sha256 {got}, "
                    f"the catalog records {todo[member]}")
            dest = _member_path(cache, key, member)
            with atomic_path(dest) as tmp:
                tmp.write_bytes(payload)
            out[member] = dest
    missing = sorted(set(outer) - seen)
    if missing:
        raise DemoError(f"{pkg['name']} {pkg['version']}: not in the archive: {', '.join(missing[:5])}")
    return out


def package_licence(catalog: Mapping[str, Any], key: str, archive: Path, cache: str | os.PathLike) -> str:
    """The licence as the package's own metadata states it (cached as text)."""
    cache = Path(cache).resolve()
    pkg = catalog["packages"][key]
    tag = hashlib.sha256(f"{BUILDER_VERSION}|{pkg['sha256']}|{pkg.get('licence_note', '')}".encode()).hexdigest()[:16]
    memo = cache / "files" / key / f"_licence-{tag}.txt"
    if memo.is_file():
        return memo.read_text(encoding="utf-8")
    kind = _archive_kind(archive.name)
    licence = ""
    if kind == "zip":
        with zipfile.ZipFile(archive) as zf:
            meta = next((n for n in zf.namelist() if n.endswith(".dist-info/METADATA")), None)
            if meta:
                licence = _pypi_licence(zf.read(meta).decode("utf-8", "replace"),
                                        lambda name: zf.read(name) if name in zf.namelist() else None,
                                        meta.rsplit("/", 1)[0])
    elif kind == "tar" and pkg["registry"] == "npm":
        for _, data in _iter_archive(archive, {"package/package.json"}):
            lic = json.loads(data.decode("utf-8")).get("license", "")
            licence = f"npm package.json license: {lic if isinstance(lic, str) else json.dumps(lic)}"
    elif kind == "tar":
        with tarfile.open(archive, "r:gz") as tf:
            names = tf.getnames()
            top = names[0].split("/")[0]

            def read(name: str) -> bytes | None:
                try:
                    return tf.extractfile(name).read()
                except KeyError:
                    return None

            info = read(f"{top}/PKG-INFO")
            if info is not None:
                licence = _pypi_licence(info.decode("utf-8", "replace"), read, top)
    else:
        path = f"usr/share/doc/{pkg['name']}/copyright"
        for _, data in _iter_archive(archive, {path}):
            text = data.decode("utf-8", "replace")
            found: list[str] = []
            for line in text.splitlines():
                if line.startswith("License:"):
                    value = line.split(":", 1)[1].strip()
                    if value and value not in found:
                        found.append(value)
            licence = f"/{path}: " + ("; ".join(found) if found else "see the file (free-form)")
    if pkg.get("licence_note"):
        licence = f"{licence} ({pkg['licence_note']})" if licence else pkg["licence_note"]
    licence = licence or "not stated in the package metadata"
    memo.parent.mkdir(parents=True, exist_ok=True)
    write_text(memo, licence)
    return licence


def _pypi_licence(meta: str, read=None, base: str = "") -> str:
    """Licence from PyPI core metadata: License-Expression and licence classifiers first,
    a short License field next, else the first line of the License-File(s)."""
    expr, classifiers, short, files = [], [], [], []
    for line in meta.splitlines():
        if line == "":
            break  # end of the headers (continuation lines start with whitespace)
        key, _, value = line.partition(":")
        value = value.strip()
        if key == "License-Expression":
            expr.append(value)
        elif key == "Classifier" and value.startswith("License ::"):
            classifiers.append(value.split("::")[-1].strip())
        elif key == "License" and value and len(value) < 60 and not value.endswith(":"):
            short.append(value)
        elif key == "License-File":
            files.append(value)
    fields = expr + classifiers or short
    if fields:
        return "PyPI metadata: " + "; ".join(dict.fromkeys(fields))
    for name in files:
        for candidate in (f"{base}/licenses/{name}", f"{base}/{name}"):
            data = read(candidate) if read else None
            if data:
                first = next((ln.strip() for ln in data.decode("utf-8", "replace").splitlines() if ln.strip()), "")
                return f"PyPI metadata License-File {name}: {first[:100]}"
    return ""


# --------------------------------------------------------------------------------------
# audio


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
    sr = int(render["sample_rate"])
    fps = int(render["fps"])
    lo, hi = float(render["min_clip_s"]), float(render["max_clip_s"])
    rng = _rng(seed, "voice", voice["key"])
    targets = [float(rng.uniform(lo + 0.2, hi - 0.4)) for _ in range(n_clips)]
    gap = np.zeros(int(0.25 * sr), np.float32)
    members = [m for m, _ in voice["files"]]
    clips: list[ClipAudio] = []
    if voice["kind"] == "prompts":
        units = []
        for m in members:
            y = _trim(decode_audio(files[m], voice["format"], sr), sr)
            if len(y) >= int(0.3 * sr):
                units.append((m, y))
        order = [units[i] for i in rng.permutation(len(units))]
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
                raise DemoError(f"voice {voice['key']}: not enough prompts for {n_clips} clips of >= {lo} s")
            clips.append(_finish_clip(np.concatenate(parts), used, sr, fps, lo, hi))
    else:
        stream: list[tuple[str, np.ndarray]] = [(m, decode_audio(files[m], voice["format"], sr)) for m in members]
        spans = voice.get("spans") or {}
        total = sum(min(len(y) / sr, spans.get(m, [0, 1e9])[1]) - spans.get(m, [0, 0])[0] for m, y in stream)
        targets = [min(t, total / n_clips) for t in targets]  # short recordings: shorter clips
        pos_file, pos = 0, 0
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
                        parts.append(gap[: int(0.1 * sr)])
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
    rng = _rng(seed, "look", face_key, clip_index)
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
def _torch_threads(n: int):
    """Run MTCNN with ``n`` intra-op threads (the build runs two identities at once), then
    restore the caller's setting (tests share the process with other torch code)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _warm_up() -> None:
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


def video_id(face: Mapping[str, Any], voice: Mapping[str, Any], index: int = 0) -> str:
    """An 11-character YouTube-like id from the face file's and the voice's identity (and the
    video's index among the identity's videos, for all but the first)."""
    key = f"{face['sha256']}:{voice['key']}" + (f":{index}" if index else "")
    return base64.b32encode(hashlib.sha256(key.encode()).digest()).decode("ascii")[:11]


def clip_videos(n_clips: int, n_videos: int) -> list[tuple[int, int]]:
    """(video index, clip number within the video, from 1) of each of an identity's clips:
    consecutive clips share a video, the videos as even as can be."""
    out, counts = [], [0] * n_videos
    for k in range(n_clips):
        j = k * n_videos // n_clips
        counts[j] += 1
        out.append((j, counts[j]))
    return out


# --------------------------------------------------------------------------------------
# the build


@dataclass
class _Sources:
    """Extracted, verified files per package and licences."""

    files: dict[str, dict[str, Path]] = field(default_factory=dict)  # package -> member -> path
    licences: dict[str, str] = field(default_factory=dict)


def _params(catalog: Mapping[str, Any], clips_per_identity: int, seed: int, videos_per_identity: int) -> dict[str, Any]:
    return {"clips_per_identity": int(clips_per_identity), "videos_per_identity": int(videos_per_identity),
            "seed": int(seed),
            "render": catalog.get("render", {}), "limits": catalog.get("limits", {})}


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
        if not f.is_file() or sha256_file(f) != digest:
            return False, f"{rel} missing or changed"
    for clip in info.get("clips", []):
        f = out / clip["path"]
        if not f.is_file() or sha256_file(f) != clip["sha256"]:
            return False, f"{clip['path']} missing or changed"
    return True, "up to date"


def _prepare_sources(catalog: Mapping[str, Any], plan_packages: Sequence[str], cache: Path,
                     clients: set[str], progress: bool) -> tuple[_Sources, dict[str, str]]:
    """Fetch and extract every file of the usable packages; failures become skip reasons."""
    from tqdm import tqdm

    wanted: dict[str, dict[str, str]] = {k: {} for k in plan_packages}
    for face in catalog["faces"]:
        if face["package"] in wanted:
            wanted[face["package"]][face["file"]] = face["sha256"]
    for voice in catalog["voices"]:
        if voice["package"] in wanted:
            for member, digest in voice["files"]:
                wanted[voice["package"]][member] = digest
    src = _Sources()
    failed: dict[str, str] = {}
    for key in tqdm(list(plan_packages), desc="packages", unit="pkg", file=sys.stderr, disable=not progress):
        pkg = catalog["packages"][key]
        try:
            archive = fetch_package(catalog, key, cache, clients)
            src.files[key] = extract_files(catalog, key, archive, cache, wanted[key])
            src.licences[key] = package_licence(catalog, key, archive, cache)
        except VerificationError:
            raise
        except (DemoError, OSError, subprocess.SubprocessError) as exc:
            reason = str(exc).splitlines()[0]
            log(f"skipping {pkg['registry']} package {pkg['name']}=={pkg['version']}: {reason}")
            failed[key] = reason
    return src, failed


@dataclass
class _Rendered:
    identity: PlannedIdentity
    videos: list[str]
    clips: list[dict]


def _render_identity(ident: PlannedIdentity, face: Mapping[str, Any], voice: Mapping[str, Any],
                     src: _Sources, catalog: Mapping[str, Any], n_clips: int, seed: int,
                     videos_dir: Path, verify: bool, pool: cf.Executor | None, n_videos: int = 1) -> _Rendered:
    """Make the clips of one identity, in ``n_videos`` videos; raises _FaceRejected / _VoiceRejected."""
    render = catalog["render"]
    size, fps, sr = int(render["frame_size"]), int(render["fps"]), int(render["sample_rate"])
    vfiles = src.files[voice["package"]]
    try:
        audio = voice_clips(voice, vfiles, n_clips, seed, render)
    except DemoError as exc:
        raise _VoiceRejected(str(exc)) from None
    fsrc = FaceSource(face, src.files[face["package"]][face["file"]], size, fps)
    looks = [clip_look(face["key"], k, seed) for k in range(n_clips)]
    try:
        frames = [fsrc.frames(k, n_clips, audio[k].frames, looks[k]) for k in range(n_clips)]
    except (DemoError, subprocess.CalledProcessError) as exc:
        raise _FaceRejected(str(exc).splitlines()[0]) from None
    checks: list[list[dict]] = []
    if verify:
        for k, fr in enumerate(frames):
            picks = [fr[0], fr[len(fr) // 2], fr[-1]]
            ok, why, measures = check_faces(picks, float(render["min_face_prob"]), int(render["min_face_px"]))
            if not ok:
                raise _FaceRejected(f"clip {k + 1}: {why}")
            checks.append(measures)
    vids = [video_id(face, voice, j) for j in range(n_videos)]
    jobs = []
    clip_records = []
    for k, (j, number) in enumerate(clip_videos(n_clips, n_videos)):
        rel = Path("videos") / ident.id / vids[j] / f"{number:05d}.mp4"
        out = videos_dir / rel.relative_to("videos")
        args = (frames[k], audio[k].samples, sr, out, fps)
        jobs.append((pool.submit(encode_clip, *args) if pool else None, args))
        clip_records.append({"identity": ident.id, "video": vids[j], "clip": f"{number:05d}",
                             "path": rel.as_posix(), "frames": audio[k].frames,
                             "duration_s": round(audio[k].frames / fps, 3),
                             "look": asdict(looks[k]), "face_check": checks[k] if checks else None,
                             "audio_sources": [list(s) for s in audio[k].sources], "_out": out})
    for fut, args in jobs:
        if fut is None:
            encode_clip(*args)
        else:
            fut.result()
    for rec in clip_records:
        rec["sha256"] = sha256_file(rec.pop("_out"))
    return _Rendered(identity=ident, videos=vids, clips=clip_records)


class _FaceRejected(Exception):
    pass


class _VoiceRejected(Exception):
    pass


def build_demo(
    out: str | os.PathLike,
    cache: str | os.PathLike,
    *,
    clips_per_identity: int = 4,
    videos_per_identity: int = 2,
    seed: int = 1234,
    force: bool = False,
    catalog: Mapping[str, Any] | str | os.PathLike | None = None,
    clients: Iterable[str] | None = None,
    progress: bool = True,
) -> Path:
    """Build (or confirm) the demo corpus in ``out``; returns ``out``.

    ``cache`` holds the downloaded archives and the extracted, verified files. ``clients``
    overrides the detected package clients (see :func:`available_clients`). Raises
    :class:`DemoError` when too few identities can be made and :class:`VerificationError`
    when a file does not match the catalog.
    """
    t0 = time.monotonic()
    # Absolute: the package clients run in temporary folders, so relative paths would land there.
    out, cache = Path(out).resolve(), Path(cache).resolve()
    if not isinstance(catalog, Mapping):
        catalog = load_catalog(catalog)
    clients = set(available_clients() if clients is None else clients)
    if not 1 <= videos_per_identity <= clips_per_identity:
        raise DemoError(f"demo.videos_per_identity is {videos_per_identity}: it must be 1 to clips_per_identity "
                        f"({clips_per_identity})")
    params = _params(catalog, clips_per_identity, seed, videos_per_identity)
    if not force:
        ok, why = corpus_up_to_date(out, catalog, params, clients)
        if ok:
            log(f"demo corpus up to date: {out}")
            return out
        if (out / "corpus.json").exists():
            log(f"rebuilding the demo corpus: {why}")
    cache.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)

    plan = plan_identities(catalog, clients, seed=seed, cached_packages=cached_packages(catalog, cache))
    for msg in plan.skipped:
        log(msg)
    src, failed = _prepare_sources(catalog, plan.usable_packages, cache, clients, progress)
    usable = set(plan.usable_packages) - set(failed)
    faces = {f["key"]: f for f in catalog["faces"]}
    voices = {v["key"]: v for v in catalog["voices"]}
    rejected_faces = {f["key"]: f"package failed: {failed[f['package']]}" for f in catalog["faces"] if f["package"] in failed}
    rejected_voices = {v["key"]: f"package failed: {failed[v['package']]}" for v in catalog["voices"] if v["package"] in failed}

    building = out / ".videos-building"
    if building.exists():
        shutil.rmtree(building)
    building.mkdir(parents=True)
    done: dict[tuple[str, str], _Rendered] = {}
    from tqdm import tqdm

    # identities are rendered two at a time (each ffmpeg and MTCNN call uses one thread)
    _warm_up()
    workers = max(1, min(2, os.cpu_count() or 1))
    with _torch_threads(1), cf.ThreadPoolExecutor(max_workers=workers) as pool:
        while True:
            plan = plan_identities(catalog, clients, seed=seed, cached_packages=usable,
                                   rejected_faces=rejected_faces, rejected_voices=rejected_voices)
            todo = [i for i in plan.identities if (i.face, i.voice) not in done]
            futures = {pool.submit(_render_identity, ident, faces[ident.face], voices[ident.voice], src, catalog,
                                   clips_per_identity, seed, building, True, None,
                                   videos_per_identity): ident for ident in todo}
            changed = False
            for fut in tqdm(cf.as_completed(futures), total=len(futures), desc="identities", unit="id",
                            file=sys.stderr, disable=not progress):
                ident = futures[fut]
                try:
                    done[(ident.face, ident.voice)] = fut.result()
                except _FaceRejected as exc:
                    log(f"dropping face source {ident.face}: {exc}")
                    rejected_faces[ident.face] = str(exc)
                    changed = True
                except _VoiceRejected as exc:
                    log(f"dropping voice source {ident.voice}: {exc}")
                    rejected_voices[ident.voice] = str(exc)
                    changed = True
            if not changed:
                break

    # keep only the final plan's identities (earlier pairings may have changed)
    final: list[_Rendered] = []
    keep_dirs: set[Path] = set()
    for ident in plan.identities:
        r = done[(ident.face, ident.voice)]
        r.identity = ident
        for c in r.clips:
            c["identity"] = ident.id
        final.append(r)
        keep_dirs.update(building / ident.id / v for v in r.videos)
    for d in sorted(building.glob("*/*")):
        if d.is_dir() and d not in keep_dirs:
            shutil.rmtree(d)
    for d in sorted(building.glob("*")):
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()

    videos = out / "videos"
    old = out / ".videos-old"
    if old.exists():
        shutil.rmtree(old)
    if videos.exists():
        os.replace(videos, old)
    os.replace(building, videos)
    if old.exists():
        shutil.rmtree(old)

    files = _write_tables(out, catalog, plan, final, src, rejected_faces, rejected_voices)
    missing_clients = sorted({c for k, p in catalog["packages"].items()
                              for c in _missing_clients(p, clients, k in usable) if k not in usable})
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
        "files": files,
        "counts": {"identities": len(final), "clips": sum(len(r.clips) for r in final),
                   **{f"{s}": plan.count(s) for s in ("train", "val", "test")},
                   "m": plan.count(gender="m"), "f": plan.count(gender="f")},
    }
    write_json(out / "corpus.json", info)
    log(f"demo corpus: {info['counts']['identities']} identities "
        f"({plan.count('train')} train, {plan.count('val')} val, {plan.count('test')} test; "
        f"{plan.count(gender='m')} m, {plan.count(gender='f')} f), {info['counts']['clips']} clips "
        f"in {time.monotonic() - t0:.0f} s -> {out}")
    return out


def _write_tables(out: Path, catalog: Mapping[str, Any], plan: Plan, final: list[_Rendered], src: _Sources,
                  rejected_faces: Mapping[str, str], rejected_voices: Mapping[str, str]) -> dict[str, str]:
    """vox1_meta.csv, identity_splits.txt, provenance.csv; returns {file: sha256}."""
    faces = {f["key"]: f for f in catalog["faces"]}
    voices = {v["key"]: v for v in catalog["voices"]}
    pkgs = catalog["packages"]
    meta = ["VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet"]
    for r in final:
        i = r.identity
        meta.append(f"{i.id}\t{i.name}\t{i.gender}\t{i.nationality}\t{'test' if i.split == 4 else 'dev'}")
    write_text(out / "vox1_meta.csv", "\n".join(meta) + "\n")
    write_text(out / "identity_splits.txt", "".join(f"{r.identity.name} {r.identity.split}\n" for r in final))

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
    write_text(out / "provenance.csv", buf.getvalue())
    return {name: sha256_file(out / name) for name in ("vox1_meta.csv", "identity_splits.txt", "provenance.csv")}


# --------------------------------------------------------------------------------------
# reading the corpus back, subsets, the VoxCeleb1 release layout


def read_corpus(corpus_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(corpus_dir) / "corpus.json"
    if not path.is_file():
        raise DemoError(f"{path} not found: build the demo corpus first (facevoice demo)")
    return json.loads(path.read_text(encoding="utf-8"))


def _read_meta(corpus_dir: Path) -> list[list[str]]:
    lines = (corpus_dir / "vox1_meta.csv").read_text(encoding="utf-8").splitlines()
    return [ln.split("\t") for ln in lines]


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
            wav = out_dir / "wav" / vox_id / video / f"{stem}.wav"
            wav.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(wav) as tmp:
                subprocess.run([ff, "-v", "error", "-y", "-i", str(clip), "-vn", "-ac", "1", "-ar", "16000",
                                "-c:a", "pcm_s16le", "-fflags", "+bitexact", "-flags:a", "+bitexact",
                                "-map_metadata", "-1", "-f", "wav", str(tmp)], check=True)
            frames_dir = out_dir / "unzippedIntervalFaces" / "data" / name / "1.6" / video / str(int(stem))
            if frames_dir.exists():
                shutil.rmtree(frames_dir)
            tmp_dir = frames_dir.parent / f".{frames_dir.name}.tmp"
            if tmp_dir.exists():
                shutil.rmtree(tmp_dir)
            tmp_dir.mkdir(parents=True)
            subprocess.run([ff, "-v", "error", "-y", "-i", str(clip), "-an", "-vf", f"fps={fps}", "-q:v", "2",
                            "-start_number", "1", str(tmp_dir / "%04d.jpg")], check=True)
            os.replace(tmp_dir, frames_dir)
    return out_dir


def reproduce_clips(corpus_dir: str | os.PathLike, cache: str | os.PathLike, out_dir: str | os.PathLike,
                    identities: Sequence[str], catalog: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Render the clips of some identities again, as recorded in corpus.json, into ``out_dir``.

    Returns {relative path: sha256}; equal to corpus.json's hashes when the build is
    deterministic. Uses the cached, verified source files (nothing is downloaded).
    """
    corpus_dir, cache, out_dir = Path(corpus_dir), Path(cache), Path(out_dir)
    info = read_corpus(corpus_dir)
    catalog = catalog or load_catalog()
    faces = {f["key"]: f for f in catalog["faces"]}
    voices = {v["key"]: v for v in catalog["voices"]}
    params = info["params"]
    src = _Sources()
    result: dict[str, str] = {}
    for rec in info["identities"]:
        if rec["id"] not in identities:
            continue
        ident = PlannedIdentity(**{k: rec[k] for k in PlannedIdentity.__dataclass_fields__})
        for role, item in (("face", faces[ident.face]), ("voice", voices[ident.voice])):
            key = item["package"]
            archive = archive_path(cache, catalog["packages"][key])
            members = {item["file"]: item["sha256"]} if role == "face" else dict((m, d) for m, d in item["files"])
            src.files.setdefault(key, {}).update(extract_files(catalog, key, archive, cache, members))
        r = _render_identity(ident, faces[ident.face], voices[ident.voice], src, catalog,
                             params["clips_per_identity"], params["seed"], out_dir / "videos", False, None,
                             params["videos_per_identity"])
        for c in r.clips:
            result[c["path"]] = c["sha256"]
    return result


# --------------------------------------------------------------------------------------
# command line


def _read_config(path: Path | None) -> dict[str, Any]:
    if path is None:
        path = Path("config.yaml")
        if not path.is_file():
            return {}
    if not path.is_file():
        raise DemoError(f"config file not found: {path}")
    cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return cfg.get("demo") or {}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="facevoice demo",
        description="Build the embedded demo corpus (real faces and voices from PyPI, Debian and npm "
                    "packages, paired per identity) in the VoxCeleb videos layout.")
    parser.add_argument("--config", type=Path, default=None,
                        help="config file whose demo: section is read (default: ./config.yaml if present)")
    parser.add_argument("--out", type=Path, help="output folder (overrides demo.out)")
    parser.add_argument("--cache", type=Path, help="download cache folder (overrides demo.cache)")
    parser.add_argument("--force", action="store_true", help="rebuild even when the corpus is up to date")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        cfg = _read_config(args.config)
        out = args.out or Path(cfg.get("out", "data/demo"))
        cache = args.cache or Path(cfg.get("cache", ".cache/facevoice/demo"))
        build_demo(out, cache, clips_per_identity=int(cfg.get("clips_per_identity", 4)),
                   videos_per_identity=int(cfg.get("videos_per_identity", 2)),
                   seed=int(cfg.get("seed", 1234)), force=args.force, progress=not args.no_progress)
    except DemoError as exc:
        print(f"facevoice demo: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
