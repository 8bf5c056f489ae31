"""Builders of labelled test material shared by the tests and the benchmarks.

``spliced_speech``: real voices with silence and noise spliced in at known places, the
labelled test of the speech filters (each voice counts as speech throughout, each spliced
gap as non-speech); ``speech_scores``: frame-level precision and recall of kept sample
ranges against those labels. ``mavceleb_tree``: a miniature MAV-Celeb release (faces and
voices per identity per language) from the demo corpus's media; ``fame_official_tree``: the
challenge's official test set (flat voices and faces per language, ``<Language>_test.txt``
lists) from such a release's test identities.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

#: the gaps spliced between voices: (kind, seconds, level in dBFS)
GAPS = (("silence", 0.8, None), ("white noise", 1.0, -50.0), ("white noise", 0.6, -35.0))


def spliced_speech(voices: list[np.ndarray], sample_rate: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(signal, per-sample speech labels): each voice followed by the next gap of :data:`GAPS`."""
    rng = np.random.default_rng(seed)
    parts, labels = [], []
    for i, v in enumerate(voices):
        kind, seconds, level = GAPS[i % len(GAPS)]
        n = int(round(seconds * sample_rate))
        gap = np.zeros(n, np.float32) if level is None else \
            (10 ** (level / 20.0) * rng.standard_normal(n)).astype(np.float32)
        parts += [np.asarray(v, np.float32), gap]
        labels += [np.ones(len(v), bool), np.zeros(n, bool)]
    return np.concatenate(parts), np.concatenate(labels)


def speech_scores(ranges: list[tuple[int, int]], labels: np.ndarray, sample_rate: int,
                  frame_ms: float = 10.0) -> dict[str, float]:
    """Frame-level precision and recall of speech (a frame is speech when most of it is)."""
    kept = np.zeros(len(labels), bool)
    for a, b in ranges:
        kept[a:b] = True
    flen = max(1, int(round(frame_ms * sample_rate / 1000)))
    n = len(labels) // flen
    truth = labels[:n * flen].reshape(n, flen).mean(1) > 0.5
    said = kept[:n * flen].reshape(n, flen).mean(1) > 0.5
    tp = float((truth & said).sum())
    return {"precision": tp / max(1.0, float(said.sum())), "recall": tp / max(1.0, float(truth.sum())),
            "kept_of_gaps": float((said & ~truth).sum()) / max(1.0, float((~truth).sum()))}


def synthetic_manifest(identities: dict[str, int] | None = None, videos: int = 2, clips: int = 2,
                       frames: int = 2, nationalities: tuple[str, ...] = ("USA", "UK", "India"),
                       with_age: bool = False, seed: int = 0) -> pd.DataFrame:
    """A manifest in the pipeline's format, for tests and benchmarks.

    ``identities`` maps split -> number of identities (default train 6, val 6, test 12).
    Genders alternate m/f, nationalities cycle; ages (when asked) fall in two age bands.
    """
    identities = identities or {"train": 6, "val": 6, "test": 12}
    rng = np.random.default_rng(seed)
    rows = []
    k = 0
    for split, n in identities.items():
        for _ in range(n):
            k += 1
            ident = f"id1{k:04d}"
            gender = "mf"[k % 2]
            nat = nationalities[k % len(nationalities)]
            # ages in two bands, so that identities k and k + 6 share gender, nationality
            # (with the default three nationalities) and age band
            age = float(25 + 20 * ((k // 12) % 2) + rng.integers(0, 5)) if with_age else None
            for v in range(videos):
                for c in range(1, clips + 1):
                    clip = f"{ident}/vid{v:02d}/{c:05d}"
                    base = {"clip": clip, "identity": ident, "name": f"Person_{k}", "split": split,
                            "gender": gender, "nationality": nat, "age": age, "shard": "s0", "row": 0}
                    rows.append({**base, "item": f"{clip}/voice", "modality": "voice"})
                    for f in range(frames):
                        rows.append({**base, "item": f"{clip}/face/{f:04d}", "modality": "face"})
    df = pd.DataFrame(rows)
    df["row"] = np.arange(len(df))
    df["age"] = df["age"].astype(float)
    return df[["item", "clip", "identity", "name", "split", "modality", "gender", "nationality",
               "age", "shard", "row"]]


def synthetic_embeddings(manifest: pd.DataFrame, split: str = "test", dim: int = 64,
                         signal: float = 1.0, seed: int = 0) -> pd.DataFrame:
    """Embeddings where face and voice of one identity share a latent vector plus noise.

    ``signal`` scales the shared part (0: chance). Returns a DataFrame in the input format.
    """
    rows = manifest[manifest["split"] == split]
    rng = np.random.default_rng(seed)
    idents = sorted(rows["identity"].astype(str).unique())
    latent = dict(zip(idents, rng.standard_normal((len(idents), dim))))
    vec = np.stack([signal * latent[str(i)] for i in rows["identity"]]) if len(rows) else np.zeros((0, dim))
    vec = vec + rng.standard_normal(vec.shape) * 2.0
    return pd.DataFrame({"id": rows["item"].astype(str).to_numpy(),
                         "identity": rows["identity"].astype(str).to_numpy(),
                         "modality": rows["modality"].to_numpy(),
                         "embedding": list(vec.astype(np.float32))})


def synthetic_shards(root: str | Path, identities: dict[str, int] | None = None, clips: int = 2,
                     faces_per_clip: int = 4, image_size: int = 32, frames: tuple[int, int] = (80, 160),
                     kinds: tuple[str, ...] = ("logmel", "spectrogram"), latent: int = 4,
                     signal: float = 1.0, noise: float = 0.5, clips_per_shard: int = 16, seed: int = 0) -> Path:
    """Shards and manifest of a synthetic corpus where faces and voices share an identity signal.

    Each identity has a latent vector z ~ N(0, I); its faces are 0.5 + 0.25 tanh(sum_j z_j
    P_j) plus pixel noise and a random brightness, with smooth random patterns P_j; its
    voices' features are ``signal * sum_j z_j Q_j[bin]`` plus noise ``noise`` per frame.
    P and Q are shared by all identities, so a model that learns them generalises to
    identities it never saw. Written with :func:`facevoice.preprocess.shards.write_shard` and
    :func:`~facevoice.preprocess.shards.write_manifest` like the pipeline's; returns the manifest path.
    """
    from facevoice.data.batch import Result, batch_writer
    from facevoice.preprocess import faces as faces_mod
    from facevoice.preprocess import shards as shards_mod
    from facevoice.preprocess.features import SCHEMA as FEAT_SCHEMA

    identities = identities or {"train": 24, "val": 8, "test": 8}
    root = Path(root)
    tmp = root / "_clips"
    out = root / "shards"
    world = np.random.default_rng([seed, 1])
    coarse = world.normal(size=(latent, 4, 4, 3))
    patterns = np.stack([np.asarray(Image.fromarray(((c - c.min()) / (np.ptp(c) + 1e-9) * 255).astype(np.uint8))
                                    .resize((image_size, image_size), Image.BICUBIC), dtype=np.float32) / 127.5 - 1.0
                         for c in coarse])
    bins = {"logmel": 64, "spectrogram": 257, "mfcc": 25}
    profiles = {k: world.normal(size=(latent, bins[k])) for k in kinds}
    rng = np.random.default_rng([seed, 2])
    written = []
    attributes = {}
    k = 0
    for split, n in identities.items():
        recs = []
        for _ in range(n):
            k += 1
            ident = f"id{k:05d}"
            z = rng.normal(size=latent)
            attributes[ident] = {"name": f"Person_{k}", "split": split, "gender": "mf"[k % 2],
                                 "nationality": "X", "age": None}
            for c in range(clips):
                clip = f"{ident}/v{c:02d}/{c + 1:05d}"
                face_rows = _synthetic_faces(z, patterns, faces_per_clip, rng)
                t = int(rng.integers(frames[0], frames[1] + 1))
                voice_rows = _synthetic_voice(z, {k: profiles[k] for k in kinds}, signal, t, noise, rng)
                recs.append((clip, face_rows, voice_rows))
        for s in range(0, len(recs), clips_per_shard):
            chunk = recs[s: s + clips_per_shard]
            idx = f"{s // clips_per_shard:05d}"
            for modality, col, schema, stage in (("face", 1, faces_mod.SCHEMA, "faces"),
                                                  ("voice", 2, FEAT_SCHEMA, "features")):
                batch_file = tmp / f"{split}-{idx}.{stage}.parquet"
                with batch_writer(batch_file, schema, {"stage": stage}) as w:
                    for r in chunk:
                        w.add(r[0], r[0], Result("ok", None, r[col]))
                shard = out / split / f"{modality}-{idx}.parquet"
                shards_mod.write_shard([str(batch_file)], str(shard), modality, split,
                                       list(kinds) if modality == "voice" else None)
                written.append(str(shard))
    shards_mod.write_manifest(written, str(out), str(out / "manifest.parquet"), attributes)
    shutil.rmtree(tmp, ignore_errors=True)
    return out / "manifest.parquet"


def _synthetic_faces(z: np.ndarray, patterns: np.ndarray, n: int, rng: np.random.Generator):
    """``n`` face records of latent ``z`` in the faces stage's schema (PNG images)."""
    import io as _io

    import pyarrow as pa

    from facevoice.data.records import FACES

    imgs = []
    for _f in range(n):
        base = 0.5 + 0.25 * np.tanh(np.tensordot(z, patterns, 1)) + rng.uniform(-0.1, 0.1)
        x = np.clip(base + rng.normal(scale=0.05, size=base.shape), 0, 1)
        buf = _io.BytesIO()
        Image.fromarray((x * 255).astype(np.uint8)).save(buf, format="PNG")
        imgs.append(buf.getvalue())
    return pa.table({"frame_index": list(range(n)), "time_s": [float(i) for i in range(n)], "prob": [0.99] * n,
                     "box": [[0.0, 0.0, 10.0, 10.0]] * n, "landmarks": [[0.0] * 10] * n, "n_faces": [1] * n,
                     "image": imgs}, schema=FACES)


def _synthetic_voice(z: np.ndarray, profiles: dict[str, np.ndarray], signal: float, t: int, noise: float,
                     rng: np.random.Generator):
    """One clip's feature records of latent ``z``: per kind, ``signal * (z @ profile)`` per bin plus noise."""
    import pyarrow as pa

    from facevoice.preprocess.features import SCHEMA

    rows = {"kind": [], "n_bins": [], "n_frames": [], "values": []}
    for kind, profile in profiles.items():
        prof = signal * (z @ profile)
        x = prof[:, None] + rng.normal(scale=noise, size=(profile.shape[1], t))
        rows["kind"].append(kind)
        rows["n_bins"].append(profile.shape[1])
        rows["n_frames"].append(t)
        rows["values"].append(x.astype(np.float32).ravel().tolist())
    return pa.table(rows, schema=SCHEMA)


def mavceleb_tree(corpus_dir: str | Path, out: str | Path, identities: list[str] | None = None,
                  languages: tuple[str, ...] = ("English", "Urdu"), fps: float = 1.0) -> Path:
    """A miniature MAV-Celeb release made of demo media (:mod:`facevoice.data.mavceleb`'s layout).

    Each demo identity (``identities``: demo ids; default all) becomes ``id0001``, ``id0002``,
    ... in id order; its k-th video (sorted) is filed under ``languages[k % len(languages)]``,
    so with two videos per identity each identity speaks both languages. A video's clips
    become its utterances ``00000.wav``, ``00001.wav``, ... (16 kHz mono), and the frames of
    all its clips, sampled at ``fps``, its face frames, named by their frame number at 25 fps
    (``000000025.jpg``, ``000000050.jpg``, ...) as in the release. Writes ``voices/``,
    ``faces/``, ``v2_meta.csv`` (``ids,name,gender``; names are placeholders) and
    ``identity_splits.txt`` keyed by the new ids with each identity's demo split; returns ``out``.
    """
    import tempfile

    from facevoice.data.inputs import SPLIT_CODES, read_meta, read_splits
    from facevoice.demo.export import export_voxceleb1_layout

    out = Path(out)
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmp:
        vox = export_voxceleb1_layout(corpus_dir, Path(tmp) / "vox", identities=identities, fps=fps)
        meta, splits = read_meta(vox / "vox1_meta.csv"), read_splits(vox / "identity_splits.txt")
        codes = {v: k for k, v in SPLIT_CODES.items()}
        meta_lines, split_lines = ["ids,name,gender"], []
        for k, demo_id in enumerate(sorted(meta), 1):
            ident, m = f"id{k:04d}", meta[demo_id]
            gender = {"m": "Male", "f": "Female"}.get(m.gender or "", "")
            meta_lines.append(f"{ident},Person {k},{gender}")
            split_lines.append(f"{ident} {codes[splits[m.name]]}")
            for v, video in enumerate(sorted(p.name for p in (vox / "wav" / demo_id).iterdir())):
                _mavceleb_video(vox, demo_id, m.name, video, out, ident, languages[v % len(languages)])
        out.mkdir(parents=True, exist_ok=True)
        (out / "v2_meta.csv").write_text("\n".join(meta_lines) + "\n", encoding="utf-8")
        (out / "identity_splits.txt").write_text("".join(f"{x}\n" for x in split_lines), encoding="utf-8")
    return out


def _mavceleb_video(vox: Path, demo_id: str, name: str, video: str, out: Path, ident: str, language: str) -> None:
    """One exported VoxCeleb1 video as a MAV-Celeb video: its utterances and its face frames."""
    voices = out / "voices" / ident / language / video
    faces = out / "faces" / ident / language / video
    voices.mkdir(parents=True, exist_ok=True)
    faces.mkdir(parents=True, exist_ok=True)
    frame = 0
    for u, wav in enumerate(sorted((vox / "wav" / demo_id / video).glob("*.wav"))):
        shutil.copyfile(wav, voices / f"{u:05d}.wav")
        track = vox / "unzippedIntervalFaces" / "data" / name / "1.6" / video / str(int(wav.stem))
        for jpg in sorted(track.glob("*.jpg")):
            frame += 25
            shutil.copyfile(jpg, faces / f"{frame:09d}.jpg")


def fame_official_tree(release: str | Path, out: str | Path, per_language: int = 2, seed: int = 0) -> Path:
    """The FAME challenge's official test set in its shipped shape, made of a miniature release's
    (:func:`mavceleb_tree`) test identities (``identity_splits.txt`` set 4).

    Per language, the first ``per_language`` utterances of those identities (sorted) each give two
    items: the voice with the first face frame of its own video (same person) and with that of
    another test identity's video in that language (different). Item ``n`` is written flat as
    ``voices/<Language>/<n:05d>.wav`` and ``faces/<Language>/<n:05d>.jpg``, and listed in
    ``lists/<Language>_test.txt`` as ``key voices/... faces/...`` (an 8-character key drawn with
    ``seed``, paths relative to ``out``), as the challenge ships them; the labels it keeps hidden
    go to ``hidden/<Language>_labels.csv`` (key, label). Returns ``out``.
    (The test identities' split is "test", set 4 of ``identity_splits.txt``.)
    """
    from facevoice.data.inputs import read_splits

    release, out = Path(release), Path(out)
    rng = np.random.default_rng(seed)
    test = sorted(i for i, split in read_splits(release / "identity_splits.txt").items() if split == "test")
    languages = sorted({p.name for i in test for p in (release / "voices" / i).iterdir() if p.is_dir()})
    for language in languages:
        faces = {i: sorted((release / "faces" / i / language).glob("*/*.jpg"))[:1] for i in test}
        speakers = [i for i in test if faces[i]]
        voices = [(i, w) for i in speakers for w in sorted((release / "voices" / i / language).glob("*/*.wav"))]
        lines, labels = [], []
        for n, (ident, wav, other) in enumerate(_official_pairs(voices[:per_language], speakers)):
            key = "".join(rng.choice(list("0123456789abcdefghijklmnopqrstuvwxyz"), 8))
            voice, face = Path("voices") / language / f"{n:05d}.wav", Path("faces") / language / f"{n:05d}.jpg"
            for dst, src in ((voice, wav), (face, faces[other][0])):
                (out / dst).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, out / dst)
            lines.append(f"{key} {voice.as_posix()} {face.as_posix()}\n")
            labels.append(f"{key},{int(other == ident)}\n")
        for name, text in ((f"lists/{language}_test.txt", "".join(lines)),
                           (f"hidden/{language}_labels.csv", "key,label\n" + "".join(labels))):
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).write_text(text, encoding="utf-8")
    return out


def _official_pairs(voices: list[tuple[str, Path]], speakers: list[str]) -> list[tuple[str, Path, str]]:
    """(identity, voice, identity of the face) of the official items: each voice with its own
    speaker's face, then with the next speaker's (when there is another)."""
    pairs = []
    for ident, wav in voices:
        pairs.append((ident, wav, ident))
        others = [s for s in speakers if s != ident]
        if others:
            pairs.append((ident, wav, others[0]))
    return pairs
