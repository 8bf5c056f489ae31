"""Pure metric functions for face-voice association (no I/O, no state).

Every definition used in the project's tables is here, stated once.

Verification (one face, one voice: same person?)
    Labels are 1 (same person) and 0 (different people); a higher score means "more
    likely the same person". The ROC is :func:`sklearn.metrics.roc_curve` with
    ``drop_intermediate=False``: point ``i`` is the classifier "accept when
    score >= thresholds[i]", for thresholds[0] = +inf > thresholds[1] > ... (every
    distinct score). FPR is the false-accept rate, FNR = 1 - TPR the false-reject rate.

    AUC is the area under that ROC by the trapezoidal rule, which equals the
    Mann-Whitney probability that a positive outscores a negative with ties counted as
    one half (the same number :func:`sklearn.metrics.roc_auc_score` gives).

    EER is the point where the FPR and FNR curves, each interpolated linearly between
    consecutive ROC points, cross. With d_i = FNR_i - FPR_i, d_0 = 1 and d_K = -1 and d
    is strictly decreasing (each ROC point changes FPR or TPR), so there is exactly one
    segment [i, i+1] with d_i > 0 >= d_{i+1}; with t = d_i / (d_i - d_{i+1}) in (0, 1],
    EER = FPR_i + t (FPR_{i+1} - FPR_i) (= FNR there). Geometrically, it is where the
    piecewise-linear ROC meets the line TPR = 1 - FPR, the value that
    ``brentq(lambda x: 1 - x - interp1d(fpr, tpr)(x), 0, 1)`` finds. The EER threshold
    is the score threshold interpolated the same way, thresholds[i] + t (thresholds[i+1]
    - thresholds[i]), except on the first segment, whose upper end is +inf, where the
    segment's finite threshold thresholds[1] is reported. When the crossing falls on an
    ROC point (t = 1) the threshold is that point's score, which achieves the EER
    exactly; inside a segment no single threshold does (only a random choice between
    the segment's two thresholds would), and the interpolated value is a summary.

Detection cost (minDCF)
    At the ROC point of threshold t the detection cost is

        DCF(t) = C_miss * P_miss(t) * P_target + C_fa * P_fa(t) * (1 - P_target),

    with P_miss = FNR and P_fa = FPR of "accept when score >= t". It is normalised by the
    cost of the better system that decides without looking (accept all, or reject all),
    C_def = min(C_miss * P_target, C_fa * (1 - P_target)). minDCF is the minimum of
    DCF(t) / C_def over every ROC point, the two trivial ones (t = +inf: reject all; t = the
    lowest score: accept all) included, so 0 <= minDCF <= 1; no interpolation between
    points (any point is reachable by a threshold). Its threshold is the highest one that
    reaches the minimum. The settings are config ``evaluation.dcf``'s, given by the caller
    (the schema's defaults are VoxSRC's: P_target = 0.05, C_miss = C_fa = 1); the tables
    name P_target beside it. It is a cost, never shown in percent. Bootstrap intervals as
    for AUC and EER.

Minimum log-likelihood-ratio cost (min Cllr, as in the BOSARIS toolkit)
    For scores read as log-likelihood ratios (natural log), Brümmer and du Preez's

        Cllr = 1/(2 log 2) * [ mean over targets of log(1 + 1/LR)
                               + mean over non-targets of log(1 + LR) ],   LR = exp(llr),

    is 0 for a perfect, perfectly calibrated system and 1 for one that always says
    llr = 0. min Cllr is the Cllr of the scores after the best monotone calibration: the
    pool-adjacent-violators (PAV) fit of the labels on the scores (scikit-learn's isotonic
    regression, tied scores pooled first) gives each score the posterior P(target | score)
    at the empirical prior pi = targets / trials, and the LLR is its log-odds less
    logit(pi) (BOSARIS's ``opt_loglr``; its 1e-6 tie-breaking ramp, which changes the
    figure by about 1e-6, is left out). The ends of the fit may be pure: a block of
    non-targets alone has posterior 0 (llr = -inf) and one of targets alone posterior 1
    (llr = +inf); each contributes log(1 + 0) = 0 for the trials it holds, so the sums are
    written with each PAV block's target and non-target counts and stay finite. 0 <= min Cllr
    <= 1: 1 when the scores say nothing (all tied, or ranked backwards), 0 when they
    separate targets from non-targets. A cost, like minDCF; bootstrap intervals as for AUC.

Matching (one probe, N candidates of the other modality, one of them true)
    A trial is correct when the true candidate's score is strictly higher than every
    other candidate's: ties count as wrong. Accuracy is the fraction of correct trials.

Retrieval (each probe against the whole gallery of the other modality)
    The gallery is ranked by descending score; ties are broken against the probe
    (irrelevant items before relevant ones of the same score), the same rule as
    matching. With R relevant items (same identity) at ranks r_1 < ... < r_R,
    AP = (1/R) sum_k k / r_k, and mAP is the mean AP over probes with R >= 1.

    The chance level is the exact expected AP of a uniformly random ranking of N items
    of which R are relevant. Writing AP = (1/R) sum_n rel(n) P@n and taking
    expectations (P(rel(n)) = R/N, P(rel(n) rel(m)) = R(R-1)/(N(N-1)) for m != n):

        E[AP] = ( H_N + (R - 1)/(N - 1) * (N - H_N) ) / N,   H_N = sum_{n=1}^N 1/n,

    (E[AP] = 1 when N = 1). The chance mAP is the mean of E[AP] over the same probes.

Confidence intervals
    Percentile bootstrap over identities (a cluster bootstrap); each replicate draws the
    identities of the evaluated split with replacement. Verification resamples both sides
    of each trial (a two-way, crossed bootstrap): the face identities and the voice
    identities are drawn independently (two multinomial draws over the same identities,
    :func:`crossed_bootstrap_weights`), and a trial of face identity i and voice identity j
    weighs (times i was drawn on the face side) x (times j was drawn on the voice side), so
    the interval holds the variation of both the faces and the voices. With the face side
    alone, the voices of the negative trials never vary, and where the voices drive the
    scores the interval is too narrow (tests: on chance scores with a voice effect it
    misses 50% AUC in a quarter of the draws, the two-way one in none). The two-way
    bootstrap errs the other way: a positive trial (i = j) weighs the product of two
    independent draws of the same person, whose variance (about 3) is that of one draw
    (about 1) three times over, so its intervals are on the wide side. Matching and
    retrieval weigh each trial by its probe's identity alone (the face-side draw):
    matching's candidates are several identities and retrieval's gallery stays whole. See
    :func:`bootstrap_verification`.
"""

from __future__ import annotations

import numpy as np

# scikit-learn is imported where it is used: ``facevoice evaluate --help`` (and every module that
# imports this one) need not pay for it

__all__ = [
    "roc_curve",
    "roc_points",
    "eer_from_roc",
    "auc_score",
    "eer",
    "verification_metrics",
    "min_dcf",
    "dcf_name",
    "min_cllr",
    "matching_correct",
    "matching_accuracy",
    "average_precision",
    "average_precisions",
    "expected_random_ap",
    "harmonic",
    "identity_bootstrap_weights",
    "crossed_bootstrap_weights",
    "bootstrap_verification",
    "bootstrap_ratio",
    "percentile_ci",
]


# --------------------------------------------------------------------------- verification


def _check_binary(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.shape != scores.shape or labels.ndim != 1:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} must be equal 1-D")
    if not np.all(np.isin(labels, (0, 1))):
        raise ValueError("labels must be 0 or 1")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite")
    labels = labels.astype(np.int8)
    n_pos = int(labels.sum())
    if n_pos == 0 or n_pos == len(labels):
        raise ValueError("verification needs both positive and negative trials")
    return labels, scores


def roc_curve(labels, scores, sample_weight=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The full ROC (every distinct score a point): (fpr, tpr, thresholds).

    :func:`sklearn.metrics.roc_curve` with ``drop_intermediate=False``; thresholds[0] is
    +inf (the point (0, 0)).
    """
    from sklearn.metrics import roc_curve as _sk_roc_curve

    labels, scores = _check_binary(labels, scores)
    fpr, tpr, thr = _sk_roc_curve(labels, scores, sample_weight=sample_weight,
                                  drop_intermediate=False)
    thr = np.asarray(thr, dtype=np.float64).copy()
    thr[0] = np.inf  # older scikit-learn wrote max(score) + 1 here
    return fpr, tpr, thr


def _crossing(fpr: np.ndarray, fnr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised EER crossing over the last axis: (eer, i, t) as in the module docstring.

    ``fpr`` non-decreasing from 0 to 1 and ``fnr`` non-increasing from 1 to 0 along the
    last axis. Repeated points (a zero-weight trial in a bootstrap replicate) are harmless:
    the first index j with d_j <= 0 is used, and d_{j-1} > 0 there.
    """
    d = fnr - fpr
    j = np.argmax(d <= 0, axis=-1)  # d[..., -1] = -1, so some index qualifies
    j = np.maximum(j, 1)
    i = j - 1
    take = lambda a, k: np.take_along_axis(a, k[..., None], axis=-1)[..., 0]  # noqa: E731
    di, dj = take(d, i), take(d, j)
    t = di / (di - dj)
    e = take(fpr, i) + t * (take(fpr, j) - take(fpr, i))
    return e, i, t


def roc_points(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A compact ROC for plotting: sklearn's ``drop_intermediate=True`` points (the same
    curve: only points on straight runs are left out); thresholds[0] is +inf."""
    from sklearn.metrics import roc_curve as _sk_roc_curve

    labels, scores = _check_binary(labels, scores)
    fpr, tpr, thr = _sk_roc_curve(labels, scores, drop_intermediate=True)
    thr = np.asarray(thr, dtype=np.float64).copy()
    thr[0] = np.inf
    return fpr, tpr, thr


def eer_from_roc(fpr, tpr, thresholds) -> tuple[float, float]:
    """(EER, threshold) from a full ROC (see the module docstring for the definition)."""
    fpr = np.asarray(fpr, dtype=np.float64)
    fnr = 1.0 - np.asarray(tpr, dtype=np.float64)
    thr = np.asarray(thresholds, dtype=np.float64)
    e, i, t = _crossing(fpr, fnr)
    i, t = int(i), float(t)
    if i == 0:
        threshold = float(thr[1])
    else:
        threshold = float(thr[i] + t * (thr[i + 1] - thr[i]))
    return float(e), threshold


def auc_score(labels, scores) -> float:
    """ROC AUC (ties count one half)."""
    from sklearn.metrics import roc_auc_score

    labels, scores = _check_binary(labels, scores)
    return float(roc_auc_score(labels, scores))


def eer(labels, scores) -> tuple[float, float]:
    """(EER, threshold) of scores for binary labels."""
    return eer_from_roc(*roc_curve(labels, scores))


DCF_KEYS = ("p_target", "c_miss", "c_fa")


def _dcf(dcf: dict) -> dict:
    """The minDCF settings (config ``evaluation.dcf``), every key given: none is filled in."""
    if not isinstance(dcf, dict):
        raise ValueError(f"dcf must be a mapping of {', '.join(DCF_KEYS)} (config evaluation.dcf), got {dcf!r}")
    missing = [k for k in DCF_KEYS if k not in dcf]
    unknown = sorted(set(dcf) - set(DCF_KEYS))
    if missing or unknown:
        raise ValueError(f"dcf (config evaluation.dcf) needs exactly {', '.join(DCF_KEYS)}"
                         + (f"; missing: {', '.join(missing)}" if missing else "")
                         + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
    return {k: dcf[k] for k in DCF_KEYS}


def min_dcf(fpr, tpr, p_target: float, c_miss: float, c_fa: float) -> tuple[np.ndarray, np.ndarray]:
    """(normalised minDCF, index of its ROC point) along the last axis of ``fpr``/``tpr``.

    Works on one ROC (1-D: returns 0-d arrays) or a stack of them (bootstrap replicates).
    """
    if not 0.0 < p_target < 1.0 or c_miss <= 0 or c_fa <= 0:
        raise ValueError(f"DCF needs 0 < p_target < 1 and positive costs, got {p_target}, {c_miss}, {c_fa}")
    cost = c_miss * (1.0 - np.asarray(tpr, dtype=np.float64)) * p_target \
        + c_fa * np.asarray(fpr, dtype=np.float64) * (1.0 - p_target)
    i = np.argmin(cost, axis=-1)  # the first minimum: the highest threshold
    best = np.take_along_axis(cost, np.expand_dims(i, -1), axis=-1)[..., 0]
    return best / min(c_miss * p_target, c_fa * (1.0 - p_target)), i


def dcf_name(settings) -> str:
    """minDCF named with its settings (``evaluation.dcf`` mappings, one per result) when they
    all agree: "minDCF (P_target=0.05)", the costs named too unless both are 1; else "minDCF"."""
    distinct = {tuple(float(d[k]) for k in DCF_KEYS) for d in settings}
    if len(distinct) != 1:
        return "minDCF"
    p_target, c_miss, c_fa = distinct.pop()
    costs = "" if c_miss == c_fa == 1 else f", C_miss={c_miss:g}, C_fa={c_fa:g}"
    return f"minDCF (P_target={p_target:g}{costs})"


def _pav_cllr(tar: np.ndarray, non: np.ndarray) -> np.ndarray:
    """min Cllr from the target and non-target weight of each distinct score, in descending
    score order along the last axis (see the module docstring): (rows,) for (rows, scores)
    arrays, 0-d for 1-D ones; NaN for a row without both targets and non-targets.

    PAV gives the blocks of scores it pools; a block of target weight T and non-target weight
    M has posterior T / (T + M), so with the row's totals P and N its LLR is log(T N / (M P)),
    and its trials cost T log(1 + M P / (T N)) + M log(1 + T N / (M P)) =
    T log(D / (T N)) + M log(D / (M P)), D = T N + M P: a pure block (T or M zero, LLR
    infinite) costs 0, with no infinity computed. All rows go through one PAV (fitting a
    non-increasing sequence, the scores descending): row r's fractions are shifted by -2r,
    so no block pools across rows (each row's values lie in [-2r, -2r + 1]) and every row
    gets its own fit.
    """
    from sklearn.isotonic import isotonic_regression  # the PAV that IsotonicRegression fits with

    tar, non = np.asarray(tar, dtype=np.float64), np.asarray(non, dtype=np.float64)
    shape = tar.shape[:-1]
    tar, non = tar.reshape(-1, tar.shape[-1]), non.reshape(-1, non.shape[-1])
    w = tar + non
    keep = w > 0
    if not keep.any():
        return np.full(shape, np.nan)
    row = np.repeat(np.arange(len(w)), keep.sum(axis=1))  # row by row, scores descending within a row
    at = np.flatnonzero(keep)
    t, n, w = tar.ravel().take(at), non.ravel().take(at), w.ravel().take(at)
    fit = isotonic_regression(t / w - 2.0 * row, sample_weight=w, increasing=False)
    starts = np.flatnonzero(np.r_[True, fit[1:] != fit[:-1]])  # PAV's blocks; a new row starts one
    T, M, r = np.add.reduceat(t, starts), np.add.reduceat(n, starts), row[starts]
    P, N = np.bincount(r, weights=T, minlength=len(tar)), np.bincount(r, weights=M, minlength=len(tar))
    d = np.log(T * N[r] + M * P[r])
    with np.errstate(divide="ignore", invalid="ignore"):  # log(0) only where that side has no trial
        c_tar = np.bincount(r, weights=np.where(T > 0, T * (d - np.log(T * N[r])), 0.0), minlength=len(tar))
        c_non = np.bincount(r, weights=np.where(M > 0, M * (d - np.log(M * P[r])), 0.0), minlength=len(tar))
        cllr = (c_tar / P + c_non / N) / (2.0 * np.log(2.0))
    return np.where((P > 0) & (N > 0), cllr, np.nan).reshape(shape)


def min_cllr(labels, scores) -> float:
    """Minimum log-likelihood-ratio cost: the Cllr of the PAV-calibrated scores (module docstring)."""
    labels, scores = _check_binary(labels, scores)
    distinct, inverse = np.unique(-scores, return_inverse=True)  # scores descending; tied ones pooled
    tar = np.bincount(inverse, weights=labels, minlength=len(distinct))
    return float(_pav_cllr(tar, np.bincount(inverse, minlength=len(distinct)) - tar))


def verification_metrics(labels, scores, dcf: dict) -> dict:
    """{"auc", "eer", "eer_threshold", "min_dcf", "min_dcf_threshold", "min_cllr", "n_trials",
    "n_positive", "n_negative"}; ``dcf``: p_target, c_miss, c_fa (config ``evaluation.dcf``)."""
    labels, scores = _check_binary(labels, scores)
    fpr, tpr, thr = roc_curve(labels, scores)
    e, th = eer_from_roc(fpr, tpr, thr)
    d, i = min_dcf(fpr, tpr, **_dcf(dcf))
    return {
        "auc": auc_score(labels, scores),
        "eer": e,
        "eer_threshold": th,
        "min_dcf": float(d),
        "min_dcf_threshold": float(thr[int(i)]),
        "min_cllr": min_cllr(labels, scores),
        "n_trials": int(len(labels)),
        "n_positive": int(labels.sum()),
        "n_negative": int(len(labels) - labels.sum()),
    }


# --------------------------------------------------------------------------- matching


def matching_correct(scores, target) -> np.ndarray:
    """Per trial: is the true candidate's score strictly above all others (ties wrong)?

    ``scores`` (trials, N) candidate scores; ``target`` (trials,) index of the true one.
    """
    scores = np.asarray(scores, dtype=np.float64)
    target = np.asarray(target, dtype=np.int64)
    if scores.ndim != 2 or scores.shape[1] < 2 or target.shape != (scores.shape[0],):
        raise ValueError("scores must be (trials, N >= 2) and target (trials,)")
    rows = np.arange(scores.shape[0])
    true = scores[rows, target]
    others = scores.copy()
    others[rows, target] = -np.inf
    return true > others.max(axis=1)


def matching_accuracy(scores, target) -> float:
    return float(np.mean(matching_correct(scores, target)))


# --------------------------------------------------------------------------- retrieval


def average_precision(scores, relevant) -> float:
    """AP of one ranking; ties are broken against the probe (see the module docstring)."""
    ap = average_precisions(np.asarray(scores, dtype=np.float64)[None, :],
                            np.asarray(relevant, dtype=bool)[None, :])
    return float(ap[0])


def average_precisions(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """AP of each row of a (probes, gallery) score block; NaN for a row with no relevant item.

    Only the relevant items' ranks are needed: with the row sorted once, the pessimistic
    rank of the k-th best relevant item (score s) is k + #(irrelevant items scoring >= s).
    """
    scores = np.asarray(scores, dtype=np.float64)
    relevant = np.asarray(relevant, dtype=bool)
    if scores.shape != relevant.shape or scores.ndim != 2:
        raise ValueError("scores and relevant must be equal 2-D arrays")
    n = scores.shape[1]
    sorted_rows = np.sort(scores, axis=1)
    out = np.full(scores.shape[0], np.nan)
    for r in range(scores.shape[0]):
        rel = np.sort(scores[r, relevant[r]])  # ascending
        n_rel = rel.size
        if n_rel == 0:
            continue
        desc = rel[::-1]
        k = np.arange(1, n_rel + 1)
        ge_all = n - np.searchsorted(sorted_rows[r], desc, side="left")
        ge_rel = n_rel - np.searchsorted(rel, desc, side="left")
        rank = ge_all - ge_rel + k
        out[r] = float(np.mean(k / rank))
    return out


def harmonic(n) -> np.ndarray:
    """H_n = sum_{k=1}^n 1/k, exact summation for n up to 10^6, asymptotic beyond."""
    n = np.asarray(n, dtype=np.int64)
    flat = n.ravel()
    out = np.empty(flat.shape, dtype=np.float64)
    top = int(flat.max(initial=0))
    if top <= 1_000_000:
        table = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, top + 1))])
        out[:] = table[flat]
    else:
        x = flat.astype(np.float64)
        out[:] = np.log(x) + np.euler_gamma + 1 / (2 * x) - 1 / (12 * x**2) + 1 / (120 * x**4)
    return out.reshape(n.shape)


def expected_random_ap(n_gallery, n_relevant) -> np.ndarray:
    """Exact E[AP] of a uniformly random ranking of N items, R relevant (1 <= R <= N)."""
    N = np.asarray(n_gallery, dtype=np.int64)
    R = np.asarray(n_relevant, dtype=np.int64)
    if np.any(R < 1) or np.any(R > N):
        raise ValueError("need 1 <= n_relevant <= n_gallery")
    H = harmonic(N)
    Nf, Rf = N.astype(np.float64), R.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(N > 1, (Rf - 1) / np.maximum(Nf - 1, 1), 0.0)
        ap = (H + frac * (Nf - H)) / Nf
    return np.where(N == 1, 1.0, ap)


# --------------------------------------------------------------------------- bootstrap


def identity_bootstrap_weights(n_identities: int, n_boot: int, seed: int, stream: int = 0) -> np.ndarray:
    """(n_boot, n_identities) multiplicities: identities drawn with replacement.

    Row b says how many times each identity (in a fixed sorted order) was drawn in
    replicate b; a trial's weight is its owning identity's multiplicity. ``stream`` > 0
    gives a draw independent of stream 0's with the same seed (a child of the seed).
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream,) if stream else ()))
    if n_identities == 0 or n_boot == 0:
        return np.zeros((n_boot, n_identities), dtype=np.int64)
    p = np.full(n_identities, 1.0 / n_identities)
    return rng.multinomial(n_identities, p, size=n_boot).astype(np.int64)


def crossed_bootstrap_weights(n_identities: int, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(face side, voice side): two independent :func:`identity_bootstrap_weights` draws over
    the same identities (streams 0 and 1 of ``seed``), for :func:`bootstrap_verification`."""
    return (identity_bootstrap_weights(n_identities, n_boot, seed),
            identity_bootstrap_weights(n_identities, n_boot, seed, stream=1))


def _replicate_figures(w: np.ndarray, y: np.ndarray, ends: np.ndarray, dcf: dict) -> tuple[np.ndarray, dict]:
    """Replicates with both classes drawn (mask over the rows of ``w``) and their AUC, EER,
    minDCF and min Cllr, from trial weights ``w`` (replicates, trials in descending score
    order), labels ``y`` and the last index of each distinct score ``ends``."""
    tps = np.cumsum(w * y, axis=1)[:, ends]
    fps = np.cumsum(w * (1 - y), axis=1)[:, ends]
    ok = (tps[:, -1] > 0) & (fps[:, -1] > 0)
    tps, fps = tps[ok], fps[ok]
    zeros = np.zeros((len(tps), 1))
    tpr = np.hstack([zeros, tps / tps[:, -1:]])
    fpr = np.hstack([zeros, fps / fps[:, -1:]])
    # per distinct score, descending, for PAV: the weights of its targets and non-targets
    tar, non = np.diff(tps, axis=1, prepend=0), np.diff(fps, axis=1, prepend=0)
    return ok, {
        "auc": np.sum(np.diff(fpr, axis=1) * (tpr[:, 1:] + tpr[:, :-1]) / 2, axis=1),
        "eer": _crossing(fpr, 1.0 - tpr)[0],
        # the (1, 1) point, accept all, closes each replicate's ROC as in roc_curve
        "min_dcf": min_dcf(fpr, tpr, **dcf)[0],
        "min_cllr": _pav_cllr(tar, non),
    }


def bootstrap_verification(labels, scores, owners, weights, chunk: int = 64, *, dcf: dict) -> dict[str, np.ndarray]:
    """AUC, EER, minDCF (``dcf`` settings: config ``evaluation.dcf``) and min Cllr of each
    bootstrap replicate: {"auc", "eer", "min_dcf", "min_cllr"}, each (B,).

    ``owners`` = (face, voice): each trial's face and voice identity, (trials,) each, as
    column indices of ``weights`` = (W_face, W_voice), (B, identities) each, as made by
    :func:`crossed_bootstrap_weights`. Trial t weighs ``W_face[b, face[t]] * W_voice[b, voice[t]]``
    in replicate b (the two-way bootstrap of the module docstring; W_voice all ones gives
    the face side alone). The weighted ROC is sklearn's ``roc_curve(..., sample_weight=w)``
    (repeated points aside, which change no figure); NaN where a replicate draws no
    positive or no negative.
    """
    labels, scores = _check_binary(labels, scores)
    dcf = _dcf(dcf)
    own = [np.asarray(o, dtype=np.int64) for o in owners]
    W = [np.asarray(x, dtype=np.float64) for x in weights]
    if len(own) != 2 or len(W) != 2 or any(o.shape != labels.shape for o in own) \
            or any(x.ndim != 2 for x in W) or W[0].shape[0] != W[1].shape[0]:
        raise ValueError("owners must be (face, voice), each (trials,), and weights (W_face, W_voice), "
                         "each (B, identities)")
    order = np.argsort(-scores, kind="stable")
    y = labels[order].astype(np.float64)
    s = scores[order]
    ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True])  # last index of each distinct score
    out = {k: np.full(W[0].shape[0], np.nan) for k in ("auc", "eer", "min_dcf", "min_cllr")}
    for lo in range(0, W[0].shape[0], chunk):
        w = W[0][lo:lo + chunk][:, own[0][order]] * W[1][lo:lo + chunk][:, own[1][order]]
        ok, figures = _replicate_figures(w, y, ends, dcf)
        idx = np.arange(lo, lo + w.shape[0])[ok]
        for k, v in figures.items():
            out[k][idx] = v
    return out


def bootstrap_ratio(numerator_by_id, denominator_by_id, weights: np.ndarray) -> np.ndarray:
    """Replicates of sum(num) / sum(den) when each identity's sums are reweighted.

    Accuracy: numerator = correct trials per owning identity, denominator = trials.
    mAP: numerator = sum of AP per probe identity, denominator = probes. NaN where a
    replicate draws no trial.
    """
    num = weights @ np.asarray(numerator_by_id, dtype=np.float64)
    den = weights @ np.asarray(denominator_by_id, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def percentile_ci(replicates, level: float = 0.95) -> list[float] | None:
    """[lo, hi] percentile interval of the finite replicates (None when there are none)."""
    r = np.asarray(replicates, dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size == 0:
        return None
    a = (1 - level) / 2 * 100
    lo, hi = np.percentile(r, [a, 100 - a])
    return [float(lo), float(hi)]
