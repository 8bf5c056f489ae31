"""Faces generated from voices: a picture and the evaluation of a news article on Wen et al. 2019.

``facevoice generate --checkpoint model.pt --manifest M --shards-root DIR --split test
--train-split train --out-dir DIR [--n-speakers 8] [--seed 0] [--device auto] [--threads N]``

For a checkpoint whose model generates faces (``generate_faces(voices)``: ``voice2face``);
any other gives a clear error. The model's ``embed_face`` is the face embedding network
that judges the generated faces (voice2face: the judge trained on the training
identities). Only identities of ``--split`` with at least one face and one voice are used.

``grid.png``
    one row per test speaker (``--n-speakers``, drawn with the seed): faces generated from
    up to ``--grid-voices`` of the speaker's voices, then up to ``--grid-faces`` of their
    real faces (resized to the model's face size), labelled with the identity, name and
    gender; as many columns as the shown speakers fill. Size: ``DPI`` x (``LABEL_IN`` +
    columns x ``CELL_IN``) by ``DPI`` x (``HEADER_IN`` + rows x ``CELL_IN``) pixels.
``report.json``
    ``gender``: a logistic regression (scikit-learn, default settings) is fitted on the
    judge's embeddings of up to ``--train-faces-per-identity`` real faces of each
    identity of ``--train-split`` with the manifest's gender, then applied to the judge's
    embeddings of the faces generated from every voice of the split; the agreement rate
    is the share of voices whose generated face gets the speaker's gender, beside its
    chance level (the share of the majority gender among those voices: what always
    answering that gender scores), the rate per gender, and the same classifier's
    accuracy on the split's real faces (what a perfect generator could reach). Identities
    whose gender is missing are never guessed: they are left out of the fit and of the
    rate, and counted under ``missing``.
    ``matching_1v2``: the article's 1:2 protocol as a standalone summary: a face generated
    from one voice of speaker s, and two real faces: one of s, one of an impostor; correct
    when the true face scores strictly higher (cosine of the judge's embeddings; ties are
    wrong). ``U``: impostors are any other identity of the split; ``G``: of the speaker's
    gender (identities with a missing gender left out). Trials (``--n-trials`` per
    stratum) draw the speaker uniformly, then a voice, a true face, the impostor identity
    and its face uniformly, from ``numpy.random.default_rng([seed, stratum])``; ``ci95`` is
    the 95% percentile bootstrap interval over the speakers (1,000 replicates redrawing
    them with replacement, as the evaluation's intervals). With the held-out split
    (:data:`facevoice.data.inputs.SEENHEARD`) the speakers are training identities and their voices held-out videos never trained on:
    the seen-speaker figure that shows whether different voices give different faces.
    Also counts, the seed, the checkpoint and ``code_version``.

Both files are written atomically.
"""

from __future__ import annotations

import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from facevoice.common.io import atomic_path, write_json
from facevoice.common.version import file_sha256
from facevoice.data.shard_reader import ShardReader
from facevoice.evaluation.options import generate_parser
from facevoice.training.inference import (
    choose_device,
    embed_items,
    eval_voice,
    face_tensor,
    load_checkpoint,
    model_from_checkpoint,
    resize_face,
)

if TYPE_CHECKING:
    from facevoice.data.manifest import SplitItems

REPORT_FORMAT = "facevoice-generate/1"
DPI = 100
CELL_IN = 1.0      # inches per image cell
LABEL_IN = 1.6     # inches of the row-label column
HEADER_IN = 0.3    # inches of the column-header row


class GenerateError(SystemExit):
    """A checkpoint, manifest or split that ``generate`` cannot work with (its message is the error)."""

    def __init__(self, msg: str):
        super().__init__(f"facevoice generate: {msg}")


def _missing(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) or (isinstance(v, str) and not v.strip())


def identity_genders(rows: pd.DataFrame) -> dict[str, str | None]:
    """Identity -> its gender from the manifest's ``gender`` column, None when missing."""
    out: dict[str, str | None] = {}
    has = "gender" in rows.columns
    for ident, grp in rows.groupby("identity", sort=True):
        vals = {str(v).strip() for v in (grp["gender"].tolist() if has else []) if not _missing(v)}
        if len(vals) > 1:
            raise GenerateError(f"identity {ident!r} has several gender values: {sorted(vals)}")
        out[str(ident)] = vals.pop() if vals else None
    return out


def _split_index(manifest: pd.DataFrame, split: str):
    from facevoice.data.manifest import split_items

    if not (manifest["split"] == split).any():
        raise GenerateError(f"split {split!r} has no items in the manifest "
                            f"(splits: {sorted(manifest['split'].unique())})")
    return split_items(manifest, split)


def _pick(rng: np.random.Generator, idx: np.ndarray, cap: int | None) -> np.ndarray:
    if cap is None or len(idx) <= cap:
        return np.asarray(idx)
    return np.sort(rng.choice(idx, int(cap), replace=False))


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


# --------------------------------------------------------------------------- evaluation


def gender_agreement(train_emb: np.ndarray, train_gender: list[str], gen_emb: np.ndarray, gen_gender: list[str],
                     real_emb: np.ndarray | None = None, real_gender: list[str] | None = None) -> dict[str, Any]:
    """Fit gender on real training faces' embeddings; the share of generated faces that get
    their speaker's gender, its chance level (majority share), per-gender rates and the
    classifier's accuracy on the split's real faces."""
    from sklearn.linear_model import LogisticRegression

    classes = sorted(set(train_gender))
    out: dict[str, Any] = {"available": False, "reason": None, "classes": classes,
                           "train_faces_per_gender": {c: int(train_gender.count(c)) for c in classes}}
    if len(classes) < 2:
        out["reason"] = (f"the training faces with a known gender have {len(classes)} gender value(s) "
                         f"({classes}); a classifier needs two")
        return out
    if not len(gen_gender):
        out["reason"] = "no voice of the split belongs to an identity with a known gender"
        return out
    clf = LogisticRegression(max_iter=2000)
    clf.fit(train_emb, np.asarray(train_gender))
    pred = clf.predict(gen_emb)
    truth = np.asarray(gen_gender)
    agree = pred == truth
    values, counts = np.unique(truth, return_counts=True)
    out.update({
        "available": True,
        "agreement_rate": float(agree.mean()),
        "chance_rate": float(counts.max() / counts.sum()),
        "majority_gender": str(values[np.argmax(counts)]),
        "n_voices": int(len(truth)),
        "voices_per_gender": {str(v): int(c) for v, c in zip(values, counts)},
        "agreement_by_gender": {str(v): float(agree[truth == v].mean()) for v in values},
        "predicted_per_gender": {c: int((pred == c).sum()) for c in classes},
        "train_accuracy": float((clf.predict(train_emb) == np.asarray(train_gender)).mean()),
    })
    if real_emb is not None and real_gender is not None and len(real_gender):
        out["real_face_accuracy"] = float((clf.predict(real_emb) == np.asarray(real_gender)).mean())
        out["n_real_faces"] = int(len(real_gender))
    return out


def matching_1v2(gen_emb: np.ndarray, gen_owner: np.ndarray, face_emb: np.ndarray, face_owner: np.ndarray,
                 groups: dict[str, list[np.ndarray]], n_trials: int, seed: int, n_boot: int = 1000) -> dict[str, Any]:
    """1:2 V-F accuracy with generated faces as probes; ``groups[stratum]``: arrays of
    identity codes that may be impostors for each other. ``ci95``: the 95% percentile
    bootstrap interval over the probes' identities (``n_boot`` replicates, as in evaluate)."""
    from facevoice.evaluation.metrics import (
        bootstrap_ratio,
        identity_bootstrap_weights,
        matching_correct,
        percentile_ci,
    )

    g = _normalise(gen_emb) if len(gen_emb) else gen_emb
    f = _normalise(face_emb) if len(face_emb) else face_emb
    voices_of = {k: np.flatnonzero(gen_owner == k) for k in np.unique(gen_owner)}
    faces_of = {k: np.flatnonzero(face_owner == k) for k in np.unique(face_owner)}
    out: dict[str, Any] = {}
    for stratum, grps in groups.items():
        grps = [np.array([k for k in grp if k in voices_of and k in faces_of]) for grp in grps]
        grps = [grp for grp in grps if len(grp) >= 2]
        ids = np.concatenate(grps) if grps else np.array([], dtype=np.int64)
        res: dict[str, Any] = {"available": bool(len(ids)), "n_identities": int(len(ids))}
        if not len(ids):
            res.update({"reason": "fewer than 2 identities share what the stratum needs", "n_trials": 0,
                        "accuracy": None})
            out[stratum] = res
            continue
        group_of = {int(k): grp for grp in grps for k in grp}
        rng = np.random.default_rng([int(seed), zlib.crc32(stratum.encode())])
        scores = np.zeros((n_trials, 2))
        probe = np.zeros(n_trials, dtype=np.int64)
        for t in range(n_trials):
            s = probe[t] = int(ids[rng.integers(len(ids))])
            others = group_of[s][group_of[s] != s]
            imp = int(others[rng.integers(len(others))])
            v = voices_of[s][rng.integers(len(voices_of[s]))]
            ft = faces_of[s][rng.integers(len(faces_of[s]))]
            fi = faces_of[imp][rng.integers(len(faces_of[imp]))]
            scores[t] = (g[v] @ f[ft], g[v] @ f[fi])
        correct = matching_correct(scores, np.zeros(n_trials, dtype=np.int64))
        order = np.sort(ids)
        col = np.searchsorted(order, probe)
        weights = identity_bootstrap_weights(len(order), n_boot, seed)
        reps = bootstrap_ratio(np.bincount(col, correct, len(order)), np.bincount(col, minlength=len(order)), weights)
        res.update({"accuracy": float(correct.mean()), "ci95": percentile_ci(reps), "n_trials": int(n_trials),
                    "reason": None})
        out[stratum] = res
    return out


# --------------------------------------------------------------------------- picture


def grid_size(rows: int, cols: int) -> tuple[int, int]:
    """Pixel (width, height) of a grid of ``rows`` speakers x ``cols`` images."""
    return int(round(DPI * (LABEL_IN + cols * CELL_IN))), int(round(DPI * (HEADER_IN + rows * CELL_IN)))


def draw_grid(path: str | Path, rows: list[dict[str, Any]], n_gen: int, n_real: int) -> tuple[int, int]:
    """``rows``: {"label", "generated": [HxWx3 float in [0, 1]], "real": [...]}; returns (w, h) px."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = n_gen + n_real
    w_in, h_in = LABEL_IN + cols * CELL_IN, HEADER_IN + len(rows) * CELL_IN
    fig = plt.figure(figsize=(w_in, h_in), dpi=DPI)
    pad = 0.04
    for c in range(cols):
        x = (LABEL_IN + c * CELL_IN) / w_in
        fig.text(x + CELL_IN / w_in / 2, 1 - HEADER_IN / h_in / 2,
                 f"generated {c + 1}" if c < n_gen else f"real {c - n_gen + 1}",
                 ha="center", va="center", fontsize=8, color="C0" if c < n_gen else "0.2")
    for r, row in enumerate(rows):
        y = 1 - (HEADER_IN + (r + 1) * CELL_IN) / h_in
        fig.text(0.05 / w_in, y + CELL_IN / h_in / 2, row["label"], ha="left", va="center", fontsize=7)
        imgs = list(row["generated"])[:n_gen] + [None] * (n_gen - len(row["generated"][:n_gen]))
        imgs += list(row["real"])[:n_real] + [None] * (n_real - len(row["real"][:n_real]))
        for c, img in enumerate(imgs):
            x = (LABEL_IN + c * CELL_IN) / w_in
            ax = fig.add_axes((x + pad * CELL_IN / w_in, y + pad * CELL_IN / h_in,
                               (1 - 2 * pad) * CELL_IN / w_in, (1 - 2 * pad) * CELL_IN / h_in))
            ax.set_axis_off()
            if img is not None:
                ax.imshow(np.clip(img, 0, 1), interpolation="nearest")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI)
    plt.close(fig)
    return grid_size(len(rows), cols)


# --------------------------------------------------------------------------- the command


@dataclass
class _Judge:
    """The model whose ``embed_face`` judges faces, with what embedding a set of items needs."""

    model: Any
    reader: ShardReader
    hp: dict
    device: torch.device
    kw: dict  # embed_items' batch_size, amp, progress

    def embed(self, items: pd.DataFrame, desc: str, **fns) -> np.ndarray:
        return embed_items(self.model, self.reader, items.reset_index(drop=True), self.hp, self.device, desc=desc,
                           **fns, **self.kw)


@dataclass
class _SplitEmbeddings:
    """The split's voices (as generated faces) and real faces: rows per identity, owners, embeddings."""

    v_rows: list[np.ndarray]
    f_rows: list[np.ndarray]
    v_owner: np.ndarray
    f_owner: np.ndarray
    gen_emb: np.ndarray
    face_emb: np.ndarray


def _load_generator(checkpoint: str | Path, dev: torch.device) -> tuple[dict, Any]:
    ckpt = load_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt, dev)
    if not callable(getattr(model, "generate_faces", None)):
        raise GenerateError(f"checkpoint of method {ckpt['method']!r} has no face generator (its model has no "
                            f"generate_faces); generate works with generative methods such as voice2face")
    return ckpt, model


def _embed_split(judge: _Judge, te: SplitItems, split: str, rng: np.random.Generator, voices_per_speaker: int | None,
                 faces_per_identity: int | None) -> _SplitEmbeddings:
    """Faces generated from the split's voices and its real faces, embedded by the judge."""
    v_rows = [_pick(rng, te.voices[k], voices_per_speaker) for k in range(len(te.identities))]
    f_rows = [_pick(rng, te.faces[k], faces_per_identity) for k in range(len(te.identities))]
    v_pos, f_pos = np.concatenate(v_rows), np.concatenate(f_rows)
    v_owner = np.concatenate([np.full(len(r), k) for k, r in enumerate(v_rows)])
    f_owner = np.concatenate([np.full(len(r), k) for k, r in enumerate(f_rows)])
    gen_emb = judge.embed(te.items.iloc[v_pos], f"generate {split}")  # the model's embed_voice: its generated face, judged
    face_emb = judge.embed(te.items.iloc[f_pos], f"judge {split} faces")
    return _SplitEmbeddings(v_rows, f_rows, v_owner, f_owner, gen_emb, face_emb)


def _gender_report(judge: _Judge, trn: SplitItems, te: SplitItems, se: _SplitEmbeddings, genders: dict[str, str | None],
                   rng: np.random.Generator, train_split: str, train_faces_per_identity: int) -> dict[str, Any]:
    """Gender agreement: fitted on the train split's real faces, applied to the generated faces."""
    tr_known = [k for k, ident in enumerate(trn.identities) if genders.get(ident) is not None]
    tr_pos = [_pick(rng, trn.faces[k], train_faces_per_identity) for k in tr_known]
    tr_gender = [genders[trn.identities[k]] for k, r in zip(tr_known, tr_pos) for _ in r]
    tr_emb = (judge.embed(trn.items.iloc[np.concatenate(tr_pos)], f"judge {train_split} faces")
              if tr_pos else np.zeros((0, 0), np.float32))
    te_gender = [genders.get(ident) for ident in te.identities]
    known_v = np.array([te_gender[k] is not None for k in se.v_owner], dtype=bool)
    known_f = np.array([te_gender[k] is not None for k in se.f_owner], dtype=bool)
    gender = gender_agreement(tr_emb, tr_gender, se.gen_emb[known_v], [te_gender[k] for k in se.v_owner[known_v]],
                              se.face_emb[known_f], [te_gender[k] for k in se.f_owner[known_f]])
    missing_ids = [ident for ident, g in zip(te.identities, te_gender) if g is None]
    known_tr = set(tr_known)
    gender["missing"] = {"identities": len(missing_ids), "voices": int((~known_v).sum()),
                         "identity_list": missing_ids,
                         "train_identities": len(trn.identities) - len(tr_known),
                         "train_identity_list": [i for k, i in enumerate(trn.identities) if k not in known_tr]}
    gender["train_identities"] = len(tr_known)
    gender["train_faces"] = len(tr_gender)
    return gender


def _matching_report(se: _SplitEmbeddings, te_gender: list[str | None], n_trials: int, seed: int) -> dict[str, Any]:
    """1:2 matching with generated faces as probes: impostors of any identity (U), of the same gender (G)."""
    all_ids = np.arange(len(te_gender))
    by_gender: dict[str, list[int]] = {}
    for k, g in enumerate(te_gender):
        if g is not None:
            by_gender.setdefault(g, []).append(k)
    matching = matching_1v2(se.gen_emb, se.v_owner, se.face_emb, se.f_owner,
                            {"U": [all_ids], "G": [np.array(v) for _, v in sorted(by_gender.items())]},
                            int(n_trials), int(seed))
    matching["G"]["excluded_missing_gender"] = sum(g is None for g in te_gender)
    return matching


def _grid_row(judge: _Judge, te: SplitItems, k: int, se: _SplitEmbeddings, label: str, grid_voices: int,
              grid_faces: int) -> dict[str, Any]:
    """One speaker's row of the grid: faces generated from their voices, then real faces."""
    reader, hp, model = judge.reader, judge.hp, judge.model
    gen = []
    for i in se.v_rows[k][:grid_voices]:
        rec = te.items.iloc[i]
        x = torch.from_numpy(np.array(eval_voice(reader.voice(rec["shard"], int(rec["row"]),
                                                             hp["voice_feature"]), hp)))[None]
        gen.append(model.generate_faces(x.to(judge.device)).float().cpu()[0].permute(1, 2, 0).numpy())
    real = [face_tensor([resize_face(reader.face(te.items.iloc[i]["shard"], int(te.items.iloc[i]["row"])),
                                     hp.get("face_size"))])[0].permute(1, 2, 0).numpy()
            for i in se.f_rows[k][:grid_faces]]
    return {"label": label, "generated": gen, "real": real}


def _draw_speakers(judge: _Judge, te: SplitItems, se: _SplitEmbeddings, te_gender: list[str | None], m: pd.DataFrame,
                   out_dir: Path, n_speakers: int, seed: int, grid_voices: int, grid_faces: int) -> dict[str, Any]:
    """``grid.png`` of ``n_speakers`` speakers drawn with the seed; its entry of the report."""
    n_show = min(int(n_speakers), len(te.identities))
    show = np.sort(np.random.default_rng([int(seed), 4]).choice(len(te.identities), n_show, replace=False))
    names = m.drop_duplicates("identity").set_index("identity")["name"] if "name" in m.columns else None
    rows = []
    with torch.no_grad():
        for k in show:
            ident = te.identities[k]
            name = str(names.get(ident, "")) if names is not None else ""
            label = "\n".join(x for x in (ident, name if name and name != ident else "",
                                          f"gender {te_gender[k] or 'missing'}") if x)
            rows.append(_grid_row(judge, te, k, se, label, grid_voices, grid_faces))
    n_gen = max(len(r["generated"]) for r in rows)  # columns: no more than the speakers have
    n_real = max(len(r["real"]) for r in rows)
    width, height = draw_grid(out_dir / "grid.png", rows, n_gen, n_real)
    return {"file": "grid.png", "speakers": [te.identities[k] for k in show],
            "generated_per_speaker": n_gen, "real_per_speaker": n_real, "width": width, "height": height}


def generate(checkpoint: str | Path, manifest: str | Path, shards_root: str | Path, out_dir: str | Path,
             split: str = "test", train_split: str = "train", n_speakers: int = 8, seed: int = 0,
             device: str = "auto", threads: int | None = None, n_trials: int = 1000,
             voices_per_speaker: int | None = None, faces_per_identity: int | None = None,
             train_faces_per_identity: int = 8, grid_voices: int = 3, grid_faces: int = 2,
             batch_size: int = 64, amp: str = "auto", progress: bool | None = None) -> dict[str, Any]:
    """Write ``grid.png`` and ``report.json`` into ``out_dir``; return the report."""
    from facevoice.common.version import code_version

    if threads:
        torch.set_num_threads(int(threads))
    dev = choose_device(device)
    ckpt, model = _load_generator(checkpoint, dev)
    out_dir = Path(out_dir)
    m = pd.read_parquet(manifest)
    te = _split_index(m, split)
    trn = _split_index(m, train_split)
    if not te.identities:
        raise GenerateError(f"split {split!r} has no identity with both a face and a voice")
    genders = identity_genders(m[m["split"].isin([split, train_split])])
    judge = _Judge(model, ShardReader(shards_root), ckpt["hp"], dev,
                   dict(batch_size=batch_size, amp=amp, progress=progress))
    rng = np.random.default_rng([int(seed), 3])
    se = _embed_split(judge, te, split, rng, voices_per_speaker, faces_per_identity)
    gender = _gender_report(judge, trn, te, se, genders, rng, train_split, train_faces_per_identity)
    te_gender = [genders.get(ident) for ident in te.identities]
    matching = _matching_report(se, te_gender, n_trials, seed)
    grid = _draw_speakers(judge, te, se, te_gender, m, out_dir, n_speakers, seed, grid_voices, grid_faces)
    report = {
        "format": REPORT_FORMAT,
        "method": ckpt["method"],
        "checkpoint": {"path": str(checkpoint), "sha256": file_sha256(checkpoint), "epoch": ckpt.get("epoch"),
                       "stage": ckpt.get("stage"), "val_auc": ckpt.get("val_auc")},
        "split": split, "train_split": train_split, "seed": int(seed), "device": str(dev),
        "code_version": code_version(),
        "counts": {"identities": len(te.identities), "voices": int(len(se.v_owner)), "faces": int(len(se.f_owner)),
                   "dropped_identities": te.dropped, "train_identities": len(trn.identities),
                   "train_faces": gender["train_faces"]},
        "params": {"n_trials": int(n_trials), "voices_per_speaker": voices_per_speaker,
                   "faces_per_identity": faces_per_identity, "train_faces_per_identity": int(train_faces_per_identity),
                   "face_size": ckpt["hp"].get("face_size")},
        "gender": gender,
        "matching_1v2": matching,
        "grid": grid,
    }
    write_json(out_dir / "report.json", report)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = generate_parser()
    a = ap.parse_args(argv)
    for opt in ("n_speakers", "grid_voices", "grid_faces", "n_trials", "train_faces_per_identity"):
        if getattr(a, opt) < 1:
            ap.error(f"--{opt.replace('_', '-')} must be at least 1")
    rep = generate(a.checkpoint, a.manifest, a.shards_root, a.out_dir, split=a.split, train_split=a.train_split,
                   n_speakers=a.n_speakers, seed=a.seed, device=a.device, threads=a.threads, n_trials=a.n_trials,
                   voices_per_speaker=a.voices_per_speaker, faces_per_identity=a.faces_per_identity,
                   train_faces_per_identity=a.train_faces_per_identity, grid_voices=a.grid_voices,
                   grid_faces=a.grid_faces, amp=a.amp, progress=False if a.no_progress else None)
    g = rep["gender"]
    gtxt = (f"gender agreement {g['agreement_rate']:.3f} (chance {g['chance_rate']:.3f})" if g["available"]
            else f"gender agreement unavailable ({g['reason']})")
    u = rep["matching_1v2"]["U"]
    utxt = (f"1:2 U {u['accuracy']:.3f} [{u['ci95'][0]:.3f}, {u['ci95'][1]:.3f}]" if u["available"]
            else "1:2 U unavailable")
    print(f"[generate {rep['method']}] {a.out_dir}: {gtxt}, {utxt}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
