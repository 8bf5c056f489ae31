"""Score one method's embeddings on the trial lists: verification, matching, retrieval.

``facevoice evaluate --embeddings E --trials DIR --out method.json [--roc-out roc.parquet]``

Input: an embeddings Parquet with columns ``id`` (a manifest item), ``identity``,
``modality`` (``face`` | ``voice``) and ``embedding`` (list of float; one length per
modality), and a folder written by ``facevoice trials``. Every item the lists name must
have an embedding, and its identity must agree with the lists' (a mismatch means the
wrong file).

Scores are cosine similarities (a zero vector scores 0), or the score the embeddings' metadata
names as the method's own (``score``: ``abs_cosine`` for avgatn, :data:`SCORERS`), unless a
scorer is given:
``--scorer package.module:name`` names an object with ``pairs(face, voice)`` (row-aligned
(n, d) arrays -> (n,) scores) and ``matrix(face, voice)`` ((n, d), (m, d) -> (n, m)), and
optionally ``prepare_face(x)`` / ``prepare_voice(x)`` applied once to all embeddings of a
modality; a class is instantiated without arguments; a plain function ``f(face, voice) ->
(n,)`` on row-aligned arrays is used as ``pairs`` and broadcast for ``matrix``. The scorer
always receives the face first.

Output: the results JSON, whose format (:data:`RESULTS_FORMAT`) is written once, in
:mod:`facevoice.evaluation.results`; every document is checked against it before it is
written. In short: ``verification`` per stratum (AUC, EER and its threshold, minDCF and
its threshold, min Cllr, counts), ``matching`` per direction, stratum and N (accuracy), ``retrieval``
per direction (mAP and its chance level), each with ``ci95``, and ``meta`` (method,
code_version, embeddings, scorer, trials, bootstrap, dcf, definitions).

``min_dcf`` is the normalised minimum detection cost with ``meta.dcf``'s P_target, C_miss
and C_fa (config ``evaluation.dcf``; VoxSRC's 0.05, 1, 1 by default). ``min_cllr`` is the
minimum log-likelihood-ratio cost (the Cllr of the scores after PAV calibration, as in the
BOSARIS toolkit). Both are costs (0 is perfect, 1 no better than deciding without looking).

``accuracy_at_threshold`` is there only for a method with its own decision threshold (named
as ``score_threshold`` in its embeddings' metadata; avgatn's |cos| > 0.5).

A stratum the lists hold but cannot fill (no age metadata, fewer identities than N) is
written ``available: false`` with the ``reason``; its figures are null. ``ci95`` holds 95%
percentile bootstrap intervals over identities (B replicates, fixed seed;
``meta.bootstrap``): each replicate redraws the split's identities with replacement.
Verification resamples both sides of each trial (a two-way, crossed bootstrap): face
identities and voice identities are drawn independently and a trial weighs the product of
its face identity's and its voice identity's multiplicities. Matching and retrieval weigh a
trial by its probe identity's multiplicity (the face-side draw; the retrieval gallery stays
whole). The same replicates serve every protocol and, with the
same seed and lists, every method, so intervals of different methods are comparable.
``--roc-out`` writes each stratum's ROC (``stratum``, ``fpr``, ``tpr``, ``threshold``;
scikit-learn's ``drop_intermediate=True`` points, which trace the same curve) for the
comparison plots.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from facevoice.common.config import check_section
from facevoice.common.io import read_parquet_meta, write_json, write_parquet
from facevoice.common.version import code_version, file_sha256
from facevoice.data.paths import trial_files
from facevoice.evaluation import metrics, results
from facevoice.evaluation.protocol import DIRECTIONS, MATCHING_STRATA, VERIFICATION_STRATA, load_config, read_trials
from facevoice.evaluation.results import RESULTS_FORMAT, MatchingResult, RetrievalResult, VerificationResult
from facevoice.evaluation.scoring import (  # noqa: F401  (the scorers' home; importable from here as before)
    PAIR_CHUNK,
    SCORERS,
    AbsCosineScorer,
    CosineScorer,
    PairwiseScorer,
    as_scorer,
    load_scorer,
    method_scorer,
    prepare,
)

CI_LEVEL = 0.95
# Retrieval probes per block. The block size changes memory and speed, never a result: it
# is a command-line option only (not in the config), so that changing it never re-runs an
# evaluation.
BLOCK_SIZE = 512

DEFINITIONS = {
    "auc": "area under the ROC (trapezoid; ties count one half)",
    "eer": ("crossing of FPR and FNR = 1 - TPR, each interpolated linearly between the "
            "points of sklearn.metrics.roc_curve(drop_intermediate=False); threshold "
            "interpolated on the same segment (the first finite threshold on the first segment)"),
    "min_dcf": ("min over ROC points of (C_miss P_miss P_target + C_fa P_fa (1 - P_target)) / "
                "min(C_miss P_target, C_fa (1 - P_target)); settings in meta.dcf"),
    "min_cllr": ("Cllr = (mean_tar log(1 + 1/LR) + mean_non log(1 + LR)) / (2 log 2) of the LLRs of the "
                 "PAV (isotonic) fit of the labels on the scores, less the log prior odds of the trials "
                 "(BOSARIS min_cllr)"),
    "matching": "correct when the true candidate scores strictly highest (ties are wrong)",
    "map": ("mean over probes of AP over the whole ranked gallery; ties ranked against "
            "the probe (irrelevant before relevant)"),
    "chance": "mean over the same probes of E[AP] of a uniform random ranking: "
              "(H_N + (R-1)/(N-1) (N - H_N)) / N",
    "ci95": ("95% percentile bootstrap over identities (see meta.bootstrap); verification: face and "
             "voice identities drawn independently, a trial weighing the product of their multiplicities"),
}



# --------------------------------------------------------------------------- embeddings


@dataclass
class Embeddings:
    """Embeddings of one method split by modality, with id -> row lookups."""

    face: np.ndarray
    voice: np.ndarray
    face_ids: pd.Index
    voice_ids: pd.Index
    face_identity: np.ndarray
    voice_identity: np.ndarray
    path: str | None = None

    def rows(self, modality: str, items, identities=None) -> np.ndarray:
        index = self.face_ids if modality == "face" else self.voice_ids
        items = np.asarray(items, dtype=object)
        idx = index.get_indexer(items)
        if (idx < 0).any():
            missing = items[idx < 0]
            raise KeyError(f"{len(set(missing))} {modality} items of the trial lists have no "
                           f"embedding (e.g. {missing[0]!r})")
        if identities is not None:
            have = (self.face_identity if modality == "face" else self.voice_identity)[idx]
            bad = have != np.asarray(identities, dtype=object)
            if bad.any():
                k = int(np.flatnonzero(bad)[0])
                raise ValueError(f"{modality} item {items[k]!r}: embeddings say identity "
                                 f"{have[k]!r}, trial lists say {np.asarray(identities)[k]!r}")
        return idx


def _list_to_matrix(col: pa.ChunkedArray | pa.Array, what: str) -> np.ndarray:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if len(arr) == 0:
        return np.zeros((0, 0))
    if pa.types.is_fixed_size_list(arr.type):
        return arr.flatten().to_numpy(zero_copy_only=False).astype(np.float64).reshape(len(arr), -1)
    if arr.null_count:
        raise ValueError(f"{what}: null embeddings")
    lengths = np.asarray(arr.value_lengths().to_numpy(zero_copy_only=False))
    if (lengths != lengths[0]).any():
        raise ValueError(f"{what}: embeddings of different lengths {sorted(set(lengths.tolist()))[:5]}")
    values = arr.flatten().to_numpy(zero_copy_only=False).astype(np.float64)
    return values.reshape(len(arr), int(lengths[0]))


def load_embeddings(path: str | os.PathLike) -> Embeddings:
    table = pq.read_table(path, columns=["id", "identity", "modality", "embedding"])
    return embeddings_from_table(table, str(path))


def embeddings_from_table(table: pa.Table | pd.DataFrame, path: str | None = None) -> Embeddings:
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    ids = np.asarray(table.column("id").to_pylist(), dtype=object)
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: duplicate ids")
    mod = np.asarray(table.column("modality").to_pylist(), dtype=object)
    bad = set(mod) - {"face", "voice"}
    if bad:
        raise ValueError(f"{path}: unknown modality {sorted(map(str, bad))}")
    ident = np.asarray([str(x) for x in table.column("identity").to_pylist()], dtype=object)
    parts = {}
    for m in ("face", "voice"):
        sel = np.flatnonzero(mod == m)
        mat = _list_to_matrix(table.column("embedding").take(pa.array(sel)), f"{path} ({m})")
        parts[m] = (mat, pd.Index(ids[sel]), ident[sel])
    return Embeddings(parts["face"][0], parts["voice"][0], parts["face"][1], parts["voice"][1],
                      parts["face"][2], parts["voice"][2], path)


def write_embeddings(path: str | os.PathLike, ids, identities, modalities, vectors) -> None:
    """Write an embeddings Parquet in the evaluation's input format."""
    vectors = np.asarray(vectors, dtype=np.float32)
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    emb = pa.ListArray.from_arrays(pa.array(np.arange(0, vectors.size + 1, vectors.shape[1],
                                                      dtype=np.int32)), flat)
    table = pa.table({"id": pa.array(list(ids), pa.string()),
                      "identity": pa.array(list(identities), pa.string()),
                      "modality": pa.array(list(modalities), pa.string()), "embedding": emb})
    write_parquet(table, path)


# --------------------------------------------------------------------------- evaluation


def _by_identity(codes: np.ndarray, values: np.ndarray, n_ids: int) -> tuple[np.ndarray, np.ndarray]:
    return (np.bincount(codes, weights=values, minlength=n_ids),
            np.bincount(codes, minlength=n_ids).astype(np.float64))


def bootstrap_identities(lists: dict[str, tuple[pd.DataFrame, dict]]) -> list[str]:
    """The identities the bootstrap redraws: every identity of the lists, sorted."""
    universe: set[str] = set()
    if "verification" in lists:
        d = lists["verification"][0]
        universe |= set(d["face_identity"]) | set(d["voice_identity"])
    if "matching" in lists:
        universe |= set(lists["matching"][0]["probe_identity"])
    if "retrieval" in lists:
        universe |= set(lists["retrieval"][0]["identity"])
    return sorted(universe)


@dataclass
class _Scoring:
    """What every protocol scores with: the scorer and the prepared embeddings (face ``F``,
    voice ``V``), the bootstrap (identity codes, replicate weights ``W`` of the face side or
    the probe, ``W_voice`` of the voice side) and the options."""

    emb: Embeddings
    scorer: Any
    F: np.ndarray
    V: np.ndarray
    code: dict[str, int]
    W: np.ndarray
    W_voice: np.ndarray
    n_boot: int
    block_size: int
    say: Callable[[str], None]
    threshold: float | None
    dcf: dict

    @property
    def n_ids(self) -> int:
        return len(self.code)

    def owners(self, identities) -> np.ndarray:
        """Each trial's bootstrap unit, from its owner's identity."""
        return np.array([self.code[i] for i in identities], dtype=np.int64)

    def ci(self, replicates) -> list[float] | None:
        return metrics.percentile_ci(replicates, CI_LEVEL)

    def pair_scores(self, fi: np.ndarray, vi: np.ndarray) -> np.ndarray:
        """Scores of the (face row, voice row) pairs, in chunks."""
        out = np.empty(len(fi))
        for lo in range(0, len(fi), PAIR_CHUNK):
            out[lo:lo + PAIR_CHUNK] = self.scorer.pairs(self.F[fi[lo:lo + PAIR_CHUNK]], self.V[vi[lo:lo + PAIR_CHUNK]])
        return out


def _verification(ctx: _Scoring, df: pd.DataFrame, meta: dict) -> tuple[dict[str, VerificationResult], list]:
    """Every stratum of the verification list (the usual ones first), and their ROC frames."""
    out, rocs = {}, []
    order = [s for s in VERIFICATION_STRATA if s in meta["strata"]] + \
            [s for s in meta["strata"] if s not in VERIFICATION_STRATA]
    for s in order:
        st = meta["strata"][s]
        sub = df[df["stratum"] == s]
        if not st["available"] or len(sub) == 0:
            out[s] = VerificationResult.unavailable(st.get("reason") or "no trials")
            continue
        ctx.say(f"verification {s}: {len(sub)} trials")
        out[s], roc = _verification_stratum(ctx, sub)
        rocs.append(pd.DataFrame({"stratum": s, **roc}))
    return out, rocs


def _verification_stratum(ctx: _Scoring, sub: pd.DataFrame) -> tuple[VerificationResult, dict]:
    fi = ctx.emb.rows("face", sub["face"], sub["face_identity"])
    vi = ctx.emb.rows("voice", sub["voice"], sub["voice_identity"])
    labels = sub["label"].to_numpy().astype(np.int8)
    scores = ctx.pair_scores(fi, vi)
    ci95 = accuracy = None
    if ctx.n_boot:
        owners = (ctx.owners(sub["face_identity"]), ctx.owners(sub["voice_identity"]))
        replicates = metrics.bootstrap_verification(labels, scores, owners, (ctx.W, ctx.W_voice), dcf=ctx.dcf)
        ci95 = {k: ctx.ci(v) for k, v in replicates.items()}
    if ctx.threshold is not None:  # the method's own decision rule (avgatn: |cos| > 0.5)
        accuracy = {"threshold": float(ctx.threshold),
                    "accuracy": float(np.mean((scores > ctx.threshold) == (labels == 1)))}
    result = VerificationResult(
        available=True, **metrics.verification_metrics(labels, scores, ctx.dcf),
        n_identities=int(len(set(sub["face_identity"]) | set(sub["voice_identity"]))),
        ci95=ci95, accuracy_at_threshold=accuracy)
    fpr, tpr, thr = metrics.roc_points(labels, scores)
    return result, {"fpr": fpr, "tpr": tpr, "threshold": thr}


def _matching(ctx: _Scoring, df: pd.DataFrame, meta: dict) -> dict[str, dict[str, MatchingResult]]:
    """Every direction, stratum (the usual ones first) and N of the matching list."""
    out: dict[str, dict[str, MatchingResult]] = {}
    for direction in DIRECTIONS:
        out[direction] = {}
        keys = [k.split("/") for k in meta["strata"] if k.startswith(direction + "/")]
        strata = [s for s in MATCHING_STRATA if any(k[1] == s for k in keys)] + \
                 sorted({k[1] for k in keys} - set(MATCHING_STRATA))
        for s in strata:
            ns = sorted(int(k[2]) for k in keys if k[1] == s)
            out[direction][s] = _matching_stratum(ctx, df, meta, direction, s, ns)
    return out


def _matching_stratum(ctx: _Scoring, df: pd.DataFrame, meta: dict, direction: str, stratum: str,
                      ns: list[int]) -> MatchingResult:
    accuracy, available, n_trials, ci95 = {}, {}, {}, {}
    reasons: dict[str, list[int]] = {}
    for n in ns:
        st = meta["strata"][f"{direction}/{stratum}/{n}"]
        sub = df[(df["direction"] == direction) & (df["stratum"] == stratum) & (df["n_candidates"] == n)]
        if not st["available"] or len(sub) == 0:
            accuracy[n], available[n], n_trials[n], ci95[n] = None, False, 0, None
            reasons.setdefault(st.get("reason") or "no trials", []).append(n)
            continue
        ctx.say(f"matching {direction} {stratum} 1:{n}: {len(sub)} trials")
        correct = _matching_correct(ctx, sub, direction, n)
        accuracy[n], available[n], n_trials[n] = float(correct.mean()), True, int(len(sub))
        num, den = _by_identity(ctx.owners(sub["probe_identity"]), correct.astype(float), ctx.n_ids)
        ci95[n] = ctx.ci(metrics.bootstrap_ratio(num, den, ctx.W)) if ctx.n_boot else None
    reason = "; ".join(f"1:{','.join(map(str, v))}: {r}" for r, v in reasons.items()) if reasons else None
    return MatchingResult(accuracy, available, n_trials, ci95, reason)


def _matching_correct(ctx: _Scoring, sub: pd.DataFrame, direction: str, n: int) -> np.ndarray:
    """Per trial of one 1:``n`` list: does the true candidate score strictly highest?"""
    pmod, cmod = ("face", "voice") if direction == "F-V" else ("voice", "face")
    pi = ctx.emb.rows(pmod, sub["probe"], sub["probe_identity"])
    cand = np.concatenate(sub["candidates"].to_numpy()) if len(sub) else np.zeros(0)
    cid = np.concatenate(sub["candidate_identities"].to_numpy())
    ci_ = ctx.emb.rows(cmod, cand, cid)
    pr = np.repeat(pi, n)
    sc = ctx.pair_scores(pr, ci_) if direction == "F-V" else ctx.pair_scores(ci_, pr)
    return metrics.matching_correct(sc.reshape(len(sub), n), sub["target"].to_numpy())


def _retrieval(ctx: _Scoring, df: pd.DataFrame, meta: dict) -> dict[str, RetrievalResult]:
    """Both directions of the retrieval list."""
    out = {}
    for direction in DIRECTIONS:
        st = meta["strata"].get(direction, {"available": False, "reason": "not in the lists"})
        pmod, cmod = ("face", "voice") if direction == "F-V" else ("voice", "face")
        probes = df[(df["modality"] == pmod) & df["probe"]]
        gallery = df[df["modality"] == cmod]
        if not st["available"] or len(probes) == 0 or len(gallery) == 0:
            out[direction] = RetrievalResult.unavailable(st.get("reason") or "no probes", int(len(gallery)))
            continue
        ctx.say(f"retrieval {direction}: {len(probes)} probes x {len(gallery)} gallery")
        out[direction] = _retrieval_direction(ctx, direction, probes, gallery)
    return out


def _retrieval_direction(ctx: _Scoring, direction: str, probes: pd.DataFrame,
                         gallery: pd.DataFrame) -> RetrievalResult:
    pmod, cmod = ("face", "voice") if direction == "F-V" else ("voice", "face")
    pi = ctx.emb.rows(pmod, probes["item"], probes["identity"])
    gi = ctx.emb.rows(cmod, gallery["item"], gallery["identity"])
    gcode, pcode = ctx.owners(gallery["identity"]), ctx.owners(probes["identity"])
    G = (ctx.V if cmod == "voice" else ctx.F)[gi]
    P = (ctx.F if pmod == "face" else ctx.V)[pi]
    aps = np.empty(len(pi))
    for lo in range(0, len(pi), ctx.block_size):
        blk = P[lo:lo + ctx.block_size]
        S = ctx.scorer.matrix(blk, G) if direction == "F-V" else ctx.scorer.matrix(G, blk).T
        rel = gcode[None, :] == pcode[lo:lo + ctx.block_size, None]
        aps[lo:lo + ctx.block_size] = metrics.average_precisions(S, rel)
    n_rel = np.bincount(gcode, minlength=ctx.n_ids)[pcode]
    ok = n_rel > 0
    if not ok.any():
        return RetrievalResult.unavailable("no probe has a relevant gallery item", int(len(gi)))
    chance = metrics.expected_random_ap(len(gi), n_rel[ok])
    num, den = _by_identity(pcode[ok], aps[ok], ctx.n_ids)
    return RetrievalResult(
        available=True, map=float(np.mean(aps[ok])), chance=float(np.mean(chance)), n_probes=int(ok.sum()),
        gallery_size=int(len(gi)), n_identities=int(len(set(pcode[ok]))),
        ci95={"map": ctx.ci(metrics.bootstrap_ratio(num, den, ctx.W))} if ctx.n_boot else None)


def evaluate(emb: Embeddings, lists: dict[str, tuple[pd.DataFrame, dict]], scorer=None,
             n_boot: int = 1000, boot_seed: int = 0, block_size: int = 512,
             progress: Callable[[str], None] | None = None,
             threshold: float | None = None, *, dcf: dict) -> tuple[dict, pd.DataFrame]:
    """(results' protocol sections without ``meta``, as JSON objects; ROC table) for one
    method. ``threshold``: a method's decision threshold on its score; each verification
    stratum then also reports ``accuracy_at_threshold`` (score > threshold means "same
    person"). ``dcf``: p_target, c_miss, c_fa of minDCF (the complete ``evaluation.dcf``
    section)."""
    dcf = check_section("evaluation.dcf", dcf)
    scorer = as_scorer(scorer)
    ids = bootstrap_identities(lists)
    ctx = _Scoring(emb, scorer, prepare(scorer, "face", emb.face), prepare(scorer, "voice", emb.voice),
                   {k: i for i, k in enumerate(ids)}, *metrics.crossed_bootstrap_weights(len(ids), n_boot, boot_seed),
                   n_boot, block_size, progress or (lambda s: None), threshold, dcf)
    sections: dict[str, Any] = {}
    roc_frames: list[pd.DataFrame] = []
    if "verification" in lists:
        sections["verification"], roc_frames = _verification(ctx, *lists["verification"])
    if "matching" in lists:
        sections["matching"] = _matching(ctx, *lists["matching"])
    if "retrieval" in lists:
        sections["retrieval"] = _retrieval(ctx, *lists["retrieval"])
    roc = (pd.concat(roc_frames, ignore_index=True) if roc_frames
           else pd.DataFrame({"stratum": pd.Series(dtype=str), "fpr": pd.Series(dtype=float),
                              "tpr": pd.Series(dtype=float), "threshold": pd.Series(dtype=float)}))
    return results.sections_json(sections), roc


def run(embeddings: str, trials: str, out: str, roc_out: str | None = None,
        method: str | None = None, scorer_spec: str | None = None, n_boot: int = 1000,
        boot_seed: int = 0, block_size: int = 512, verbose: bool = True, *, dcf: dict) -> dict:
    """Evaluate an embeddings file on a trials folder and write the JSON (and ROC).

    ``dcf``: the complete ``evaluation.dcf`` section (minDCF's settings)."""
    dcf = check_section("evaluation.dcf", dcf)
    emb = load_embeddings(embeddings)
    lists = read_trials(trials)
    # a method with its own score and decision threshold names them in its embeddings' metadata
    scorer, threshold = method_scorer(embeddings, scorer_spec)
    say = (lambda s: print(f"[evaluate] {s}", file=sys.stderr)) if verbose else None
    result, roc = evaluate(emb, lists, scorer, n_boot, boot_seed, block_size, say, threshold, dcf=dcf)
    method = method or Path(out).stem
    result["meta"] = _meta(emb, lists, embeddings, trials, method, getattr(scorer, "name", scorer_spec or "custom"),
                           n_boot, boot_seed, dcf)
    results.validate(result, out)  # the format compare reads: a broken document is never written
    write_json(out, result)
    if roc_out:
        write_parquet(pa.Table.from_pandas(roc, preserve_index=False), roc_out,
                      meta={"method": method, "format": "facevoice-roc/1"})
    return result


def _embeddings_note(embeddings: str) -> dict:
    """``{"note": ...}`` when the embeddings' metadata has the model's note (what the
    comparison tables say about its row), else nothing."""
    note = read_parquet_meta(embeddings).get("note")
    return {"note": note} if note else {}


def _cross_gender(trials_meta: dict) -> dict:
    """``{"cross_gender_negatives": {stratum: n}}`` for imported official lists (their count of
    negatives whose identities' genders differ, :func:`facevoice.evaluation.trials.import_pins`),
    else nothing."""
    files = (trials_meta.get("pins") or {}).get("files") or {}
    counts = {s: f["cross_gender_negatives"] for s, f in files.items() if "cross_gender_negatives" in f}
    return {"cross_gender_negatives": counts} if counts else {}


def _meta(emb: Embeddings, lists: dict, embeddings: str, trials: str, method: str, scorer: str,
          n_boot: int, boot_seed: int, dcf: dict) -> dict:
    """The results' ``meta``: the method, its inputs and every setting the figures depend on."""
    return {
        "format": RESULTS_FORMAT,
        "method": method,
        "code_version": code_version(),
        "embeddings": {"path": str(embeddings), "sha256": file_sha256(embeddings),
                       "n_face": int(emb.face.shape[0]), "n_voice": int(emb.voice.shape[0]),
                       "dim_face": int(emb.face.shape[1]) if emb.face.ndim == 2 else 0,
                       "dim_voice": int(emb.voice.shape[1]) if emb.voice.ndim == 2 else 0,
                       **_embeddings_note(embeddings)},
        "scorer": scorer,
        "trials": {k: {"path": str(Path(trial_files(trials)[k])), "split": m.get("split"),
                       "seed": m.get("seed"), "source": m.get("source"),
                       "manifest_sha256": (m.get("manifest") or {}).get("sha256"),
                       "code_version": m.get("code_version"), "strata": list(m["strata"]),
                       **_cross_gender(m)}
                   for k, (_, m) in lists.items()},
        "bootstrap": {"n": int(n_boot), "seed": int(boot_seed), "level": CI_LEVEL,
                      "method": "percentile", "unit": "identity", "n_identities": len(bootstrap_identities(lists)),
                      "owner": {"verification": "face identity x voice identity (independent draws, two-way)",
                                "matching": "probe identity", "retrieval": "probe identity (gallery fixed)"}},
        "dcf": dcf,
        "definitions": DEFINITIONS,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="facevoice evaluate",
                                description="score embeddings on trial lists (see facevoice.evaluation.evaluate)")
    p.add_argument("--embeddings", required=True, help="Parquet: id, identity, modality, embedding")
    p.add_argument("--trials", required=True, help="folder written by facevoice trials")
    p.add_argument("--out", required=True, help="results JSON")
    p.add_argument("--roc-out", default=None, help="Parquet of the ROC points per stratum")
    p.add_argument("--method", default=None, help="method name in the tables (default: --out's stem)")
    p.add_argument("--scorer", default=None, help="package.module:name (default: cosine)")
    p.add_argument("--config", default=None, help="config.yaml (its evaluation: section)")
    p.add_argument("--params", default=None,
                   help='JSON mapping over --config, e.g. \'{"bootstrap": {"n": 1000, "seed": 0}, '
                        '"dcf": {"p_target": 0.05, "c_miss": 1, "c_fa": 1}}\'')
    p.add_argument("--bootstrap", type=int, default=None, help="replicates (0: no intervals)")
    p.add_argument("--bootstrap-seed", type=int, default=None)
    p.add_argument("--block-size", type=int, default=None,
                   help="retrieval probes per block (memory only; default 512)")
    p.add_argument("--no-progress", action="store_true", help="no per-stratum progress lines on stderr")
    a = p.parse_args(argv)
    cfg = load_config(a.config, a.params)  # the evaluation: section, completed by the schema's defaults
    boot = cfg["bootstrap"]
    run(a.embeddings, a.trials, a.out, a.roc_out, a.method, a.scorer,
        n_boot=int(a.bootstrap if a.bootstrap is not None else boot["n"]),
        boot_seed=int(a.bootstrap_seed if a.bootstrap_seed is not None else boot["seed"]),
        block_size=int(a.block_size or BLOCK_SIZE), verbose=not a.no_progress, dcf=cfg["dcf"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
