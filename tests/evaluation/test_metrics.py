"""Metric definitions against scikit-learn, independent references and hand-worked cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from scipy.special import expit
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from facevoice.common.config import defaults
from facevoice.evaluation import metrics as M

DCF = defaults("evaluation.dcf")  # minDCF's settings: P_target 0.05, C_miss = C_fa = 1 (VoxSRC's)

# --------------------------------------------------------------------------- references


def mann_whitney_auc(labels, scores):
    """P(positive > negative) + 0.5 P(tie), by brute force over all pairs."""
    pos = scores[labels == 1][:, None]
    neg = scores[labels == 0][None, :]
    return float(np.mean((pos > neg) + 0.5 * (pos == neg)))


def eer_parametric_brentq(labels, scores):
    """Independent EER: walk the ROC polyline by a continuous parameter, root of FNR - FPR."""
    fpr, tpr, _ = sk_roc_curve(labels, scores, drop_intermediate=False)
    t = np.arange(len(fpr), dtype=float)
    g = lambda x: (1 - np.interp(x, t, tpr)) - np.interp(x, t, fpr)  # noqa: E731
    x = brentq(g, 0, len(fpr) - 1, xtol=1e-14)
    return float(np.interp(x, t, fpr))


def eer_interp1d_brentq(labels, scores):
    """The common public-code EER (brentq on interp1d of the ROC); valid without ties."""
    fpr, tpr, _ = sk_roc_curve(labels, scores)
    return float(brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0, xtol=1e-14))


def random_case(seed, n=400, ties=False, sep=1.0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    labels[:2] = [0, 1]
    scores = rng.standard_normal(n) + sep * labels
    if ties:
        scores = np.round(scores, 1)
    return labels, scores


# --------------------------------------------------------------------------- AUC / EER


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ties", [False, True])
def test_auc_matches_sklearn_and_mann_whitney(seed, ties):
    labels, scores = random_case(seed, ties=ties)
    m = M.verification_metrics(labels, scores, DCF)
    assert m["auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert m["auc"] == pytest.approx(mann_whitney_auc(labels, scores), abs=1e-12)
    assert m["n_trials"] == len(labels)
    assert m["n_positive"] == labels.sum()


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ties", [False, True])
def test_eer_matches_independent_crossing(seed, ties):
    labels, scores = random_case(seed, ties=ties)
    e, thr = M.eer(labels, scores)
    assert e == pytest.approx(eer_parametric_brentq(labels, scores), abs=1e-9)
    if not ties:
        assert e == pytest.approx(eer_interp1d_brentq(labels, scores), abs=1e-9)
    # at the threshold, the false accept and false reject rates straddle the EER
    far = np.mean(scores[labels == 0] >= thr)
    frr = np.mean(scores[labels == 1] < thr)
    lo, hi = sorted([far, frr])
    step = 1.0 / min(labels.sum(), len(labels) - labels.sum())
    assert lo - step <= e <= hi + step


def test_hand_worked_crossing_on_a_point():
    # sorted: 0.9 P, 0.6 N, 0.4 P, 0.1 N -> FNR-FPR: 1, .5, 0, ... -> EER .5 at 0.6
    labels = np.array([1, 1, 0, 0])
    scores = np.array([0.9, 0.4, 0.6, 0.1])
    m = M.verification_metrics(labels, scores, DCF)
    assert m["auc"] == pytest.approx(0.75)
    assert m["eer"] == pytest.approx(0.5)
    assert m["eer_threshold"] == pytest.approx(0.6)


def test_hand_worked_crossing_inside_a_segment():
    # positives 4, 2; negatives 3, 1, 0. ROC points (FPR, TPR): (0,0) (0,.5) (1/3,.5)
    # (1/3,1) (2/3,1) (1,1); FNR - FPR = 1, .5, 1/6, -1/3 ... crossing at t = 1/3 of the
    # segment from threshold 3 to threshold 2: EER = 1/3, threshold = 3 - 1/3.
    labels = np.array([1, 1, 0, 0, 0])
    scores = np.array([4.0, 2.0, 3.0, 1.0, 0.0])
    m = M.verification_metrics(labels, scores, DCF)
    assert m["auc"] == pytest.approx(5 / 6)
    assert m["eer"] == pytest.approx(1 / 3)
    assert m["eer_threshold"] == pytest.approx(3 - 1 / 3)


def test_hand_worked_ties():
    # positives 1, 1; negatives 1, 0: points (0,0), (.5,1), (1,1); FNR - FPR = 1, -.5:
    # crossing at t = 2/3 of the first segment: EER = 1/3; threshold = the tied score.
    labels = np.array([1, 1, 0, 0])
    scores = np.array([1.0, 1.0, 1.0, 0.0])
    m = M.verification_metrics(labels, scores, DCF)
    assert m["auc"] == pytest.approx(0.75)
    assert m["eer"] == pytest.approx(1 / 3)
    assert m["eer_threshold"] == pytest.approx(1.0)


def test_all_scores_tied_is_chance():
    labels = np.array([1, 0, 1, 0, 0, 1])
    m = M.verification_metrics(labels, np.full(6, 0.3), DCF)
    assert m["auc"] == pytest.approx(0.5)
    assert m["eer"] == pytest.approx(0.5)
    assert m["eer_threshold"] == pytest.approx(0.3)


def test_perfect_separation():
    labels = np.array([1, 1, 1, 0, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    m = M.verification_metrics(labels, scores, DCF)
    assert m["auc"] == 1.0
    assert m["eer"] == 0.0
    assert m["eer_threshold"] == pytest.approx(0.7)  # the lowest positive score


def test_inverted_scores():
    labels = np.array([1, 1, 0, 0])
    scores = np.array([0.0, 1.0, 2.0, 3.0])
    m = M.verification_metrics(labels, scores, DCF)
    assert m["auc"] == 0.0
    assert m["eer"] == 1.0
    # and negating scores mirrors AUC
    labels, scores = random_case(3)
    assert M.auc_score(labels, -scores) == pytest.approx(1 - M.auc_score(labels, scores))


def test_eer_rejects_degenerate_input():
    with pytest.raises(ValueError):
        M.verification_metrics(np.array([1, 1]), np.array([0.1, 0.2]), DCF)
    with pytest.raises(ValueError):
        M.verification_metrics(np.array([1, 0]), np.array([0.1, np.nan]), DCF)


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_replicates_equal_sklearn_with_sample_weights():
    labels, scores = random_case(11, n=300, ties=True)
    rng = np.random.default_rng(0)
    face, voice = rng.integers(0, 20, len(labels)), rng.integers(0, 20, len(labels))
    Wf, Wv = M.crossed_bootstrap_weights(20, 25, seed=4)
    rep_ = M.bootstrap_verification(labels, scores, (face, voice), (Wf, Wv), chunk=7, dcf={**DCF, "p_target": 0.2})
    for b in range(Wf.shape[0]):
        w = (Wf[b, face] * Wv[b, voice]).astype(float)  # the trial's face draws x its voice draws
        keep = w > 0
        y, s = labels[keep], scores[keep]
        if y.min() == y.max():
            assert all(np.isnan(rep_[k][b]) for k in ("auc", "eer", "min_dcf", "min_cllr"))
            continue
        assert rep_["auc"][b] == pytest.approx(roc_auc_score(y, s, sample_weight=w[keep]), abs=1e-12)
        # integer weights: same as repeating the rows
        rep = np.repeat(np.arange(len(y)), w[keep].astype(int))
        assert rep_["eer"][b] == pytest.approx(M.eer(y[rep], s[rep])[0], abs=1e-12)
        m = M.verification_metrics(y[rep], s[rep], {**DCF, "p_target": 0.2})
        assert rep_["min_dcf"][b] == pytest.approx(m["min_dcf"], abs=1e-12)
        assert rep_["min_cllr"][b] == pytest.approx(m["min_cllr"], abs=1e-9)


def test_crossed_weights_keep_the_face_draw_and_add_an_independent_voice_draw():
    Wf, Wv = M.crossed_bootstrap_weights(30, 50, seed=1)
    assert (Wf == M.identity_bootstrap_weights(30, 50, seed=1)).all()  # matching and retrieval: unchanged
    assert not (Wf == Wv).all() and (Wv.sum(axis=1) == 30).all()
    assert (Wv == M.crossed_bootstrap_weights(30, 50, seed=1)[1]).all()
    with pytest.raises(ValueError, match="owners must be"):
        M.bootstrap_verification([0, 1], [0.1, 0.2], ([0, 1],), (Wf,), dcf=DCF)


def voice_effect_case(seed, n_ids=12, per=10, alpha=0.3):
    """Chance scores with a voice-identity effect (some voices score high with every face)
    and negatives whose voices are spread unevenly (Dirichlet(alpha) shares): many trials
    per identity pair, and an AUC whose expectation over the draw is 0.5."""
    rng = np.random.default_rng(seed)
    effect = rng.standard_normal(n_ids)
    pos = np.repeat(np.arange(n_ids), per)
    v_neg = rng.choice(n_ids, len(pos), p=rng.dirichlet(np.full(n_ids, alpha)))
    f_neg = (v_neg + rng.integers(1, n_ids, len(pos))) % n_ids
    face, voice = np.r_[pos, f_neg], np.r_[pos, v_neg]
    labels = np.r_[np.ones(len(pos), int), np.zeros(len(pos), int)]
    return labels, effect[voice] + 0.5 * rng.standard_normal(len(face)), face, voice, n_ids


def test_two_sided_intervals_cover_chance_where_face_only_ones_miss_it():
    covered = {"both sides": 0, "face side": 0}
    seeds = range(60)
    for seed in seeds:
        labels, scores, face, voice, n = voice_effect_case(seed)
        Wf, Wv = M.crossed_bootstrap_weights(n, 200, seed)
        for name, weights in (("both sides", (Wf, Wv)), ("face side", (Wf, np.ones_like(Wv)))):
            lo, hi = M.percentile_ci(M.bootstrap_verification(labels, scores, (face, voice), weights, dcf=DCF)["auc"])
            covered[name] += lo <= 0.5 <= hi
    # the face side alone leaves the negatives' voices fixed: its intervals miss 0.5 far more often
    assert covered["both sides"] >= 0.9 * len(seeds)
    assert covered["face side"] <= covered["both sides"] - 0.15 * len(seeds)


def test_two_sided_interval_is_wider_than_face_only_in_a_crossed_design():
    rng = np.random.default_rng(3)
    n = 10
    face, voice = (a.ravel() for a in np.meshgrid(np.arange(n), np.arange(n), indexing="ij"))
    face, voice = np.repeat(face, 5), np.repeat(voice, 5)  # every face with every voice, 5 trials a pair
    labels = (face == voice).astype(int)
    scores = rng.standard_normal(n)[voice] + rng.standard_normal(n)[face] + 0.5 * labels + rng.standard_normal(len(face))
    Wf, Wv = M.crossed_bootstrap_weights(n, 300, seed=0)
    for k in ("auc", "eer", "min_cllr"):
        two = M.percentile_ci(M.bootstrap_verification(labels, scores, (face, voice), (Wf, Wv), dcf=DCF)[k])
        one = M.percentile_ci(M.bootstrap_verification(labels, scores, (face, voice), (Wf, np.ones_like(Wv)),
                                                       dcf=DCF)[k])
        assert two[1] - two[0] > 1.2 * (one[1] - one[0]), k


# --------------------------------------------------------------------------- min Cllr


def pav_direct(y: np.ndarray) -> np.ndarray:
    """Pool adjacent violators by hand: blocks (mean, weight) merged while a mean drops."""
    blocks: list[list[float]] = []
    for v in y:
        blocks.append([float(v), 1.0, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2, n2 = blocks.pop()
            m1, w1, n1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    return np.concatenate([np.full(n, m) for m, _, n in blocks])


def min_cllr_bosaris(labels, scores):
    """BOSARIS's route: PAV posteriors (tied scores pooled first), LLR = logit(posterior) -
    logit(empirical prior) with infinite ends, Cllr from sigmoids."""
    order = np.argsort(scores, kind="stable")
    y, s = labels[order].astype(float), scores[order]
    ties = np.r_[0, np.cumsum(s[1:] != s[:-1])]
    y = (np.bincount(ties, weights=y) / np.bincount(ties))[ties]  # a tied run as its mean, before PAV
    p = pav_direct(y)
    with np.errstate(divide="ignore"):
        llr = np.log(p) - np.log1p(-p) - np.log(labels.sum() / (len(labels) - labels.sum()))
    tar, non = llr[labels[order] == 1], llr[labels[order] == 0]
    return (np.mean(-np.log(expit(tar))) + np.mean(-np.log(expit(-non)))) / (2 * np.log(2))


def test_min_cllr_worked_by_hand():
    # scores 1..4 with labels non, tar, non, tar: PAV pools (tar 2, non 3) -> posteriors 0, .5, .5, 1;
    # prior 2/2 (log odds 0): LLRs -inf, 0, 0, +inf. Targets: log(1 + 1) at 2, log(1 + 0) at 4;
    # non-targets: log(1 + 0) at 1, log 2 at 3. Cllr = (log2 / 2 + log2 / 2) / (2 log 2) = 1/2.
    assert M.min_cllr(np.array([0, 1, 0, 1]), np.array([1.0, 2, 3, 4])) == pytest.approx(0.5)
    # labels non, tar, non, non: PAV pools scores 2-4 -> posterior 1/3 there, 0 at 1; prior odds 1/3,
    # so LR = (1/2) / (1/3) = 3/2 at 2-4. Target: log(1 + 2/3); non-targets: 0, log(5/2), log(5/2).
    # Cllr = (log(5/3) + 2/3 log(5/2)) / (2 log 2) = 0.8091 (without the prior's correction, 0.9875).
    want = (np.log(5 / 3) + 2 / 3 * np.log(5 / 2)) / (2 * np.log(2))
    assert M.min_cllr(np.array([0, 1, 0, 0]), np.array([1.0, 2, 3, 4])) == pytest.approx(want)
    assert M.verification_metrics([0, 1, 0, 0], [1.0, 2, 3, 4], DCF)["min_cllr"] == pytest.approx(want)
    # separated: 0; all tied or ranked backwards: the scores say nothing, 1
    assert M.min_cllr(np.array([1, 1, 0, 0]), np.array([3.0, 4, 1, 2])) == 0.0
    assert M.min_cllr(np.array([1, 0, 1, 0, 0]), np.full(5, 0.3)) == pytest.approx(1.0)
    assert M.min_cllr(np.array([1, 1, 0, 0]), np.array([1.0, 2, 3, 4])) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ties", [False, True])
def test_min_cllr_matches_an_independent_pav(seed, ties):
    labels, scores = random_case(seed, n=300, ties=ties, sep=0.8)
    if seed % 2:  # an unbalanced prior: the correction by the empirical log odds matters
        keep = (labels == 1) | (np.arange(len(labels)) % 3 == 0)
        labels, scores = labels[keep], scores[keep]
    assert M.min_cllr(labels, scores) == pytest.approx(min_cllr_bosaris(labels, scores), abs=1e-10)
    # a monotone map of the scores changes nothing (PAV sees only the order)
    assert M.min_cllr(labels, np.exp(scores)) == pytest.approx(M.min_cllr(labels, scores), abs=1e-12)


def test_min_dcf_worked_by_hand():
    labels, scores = np.array([1, 1, 0, 0]), np.array([0.9, 0.4, 0.6, 0.1])
    # ROC points (FPR, TPR) from threshold +inf down: (0,0) (0,.5) (.5,.5) (.5,1) (1,1)
    # P_target 0.01, costs 1: DCF = .01 FNR + .99 FPR = .01, .005, .5, .495, .99; / C_def .01
    m = M.verification_metrics(labels, scores, {"p_target": 0.01, "c_miss": 1, "c_fa": 1})
    assert m["min_dcf"] == pytest.approx(0.5) and m["min_dcf_threshold"] == pytest.approx(0.9)
    # P_target .5, C_miss 3, C_fa 1: 1.5 FNR + .5 FPR = 1.5, .75, 1, .25, .5; / C_def .5
    m = M.verification_metrics(labels, scores, {"p_target": 0.5, "c_miss": 3, "c_fa": 1})
    assert m["min_dcf"] == pytest.approx(0.5) and m["min_dcf_threshold"] == pytest.approx(0.4)
    # perfect scores cost nothing; reversed ones are no better than deciding without looking
    assert M.verification_metrics(labels, np.array([4, 3, 2, 1]), DCF)["min_dcf"] == 0.0
    assert M.verification_metrics(labels, np.array([1, 2, 3, 4]), DCF)["min_dcf"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="p_target"):
        M.verification_metrics(labels, scores, {**DCF, "p_target": 1.0})
    # the settings come whole from the caller (config evaluation.dcf): none is filled in
    with pytest.raises(ValueError, match="missing: c_fa"):
        M.verification_metrics(labels, scores, {"p_target": 0.01, "c_miss": 1})
    with pytest.raises(ValueError, match="missing: c_miss"):
        M.bootstrap_verification(labels, scores, ([0, 1, 0, 1], [1, 0, 1, 0]), M.crossed_bootstrap_weights(2, 3, seed=0),
                                 dcf={"p_target": 0.01, "c_fa": 1})


def test_bootstrap_weights_are_deterministic_multinomials():
    W1 = M.identity_bootstrap_weights(30, 50, seed=1)
    W2 = M.identity_bootstrap_weights(30, 50, seed=1)
    W3 = M.identity_bootstrap_weights(30, 50, seed=2)
    assert (W1 == W2).all() and not (W1 == W3).all()
    assert (W1.sum(axis=1) == 30).all()


def test_bootstrap_ratio_and_percentile_ci():
    num = np.array([1.0, 0.0, 2.0])
    den = np.array([2.0, 1.0, 2.0])
    W = np.array([[1, 1, 1], [3, 0, 0], [0, 3, 0], [0, 0, 0]])
    r = M.bootstrap_ratio(num, den, W)
    assert r[0] == pytest.approx(3 / 5)
    assert r[1] == pytest.approx(0.5)
    assert r[2] == pytest.approx(0.0)
    assert np.isnan(r[3])
    lo, hi = M.percentile_ci(np.arange(101.0), 0.95)
    assert (lo, hi) == (pytest.approx(2.5), pytest.approx(97.5))
    assert M.percentile_ci([np.nan]) is None


# --------------------------------------------------------------------------- matching


def test_matching_constructed_cases():
    scores = np.array([
        [0.9, 0.1, 0.2],   # target 0 highest: correct
        [0.5, 0.5, 0.1],   # target 0 tied with another: wrong
        [0.1, 0.2, 0.3],   # target 2 highest: correct
        [0.3, 0.2, 0.1],   # target 2 lowest: wrong
        [0.7, 0.7, 0.7],   # all tied: wrong
    ])
    target = np.array([0, 0, 2, 2, 1])
    assert M.matching_correct(scores, target).tolist() == [True, False, True, False, False]
    assert M.matching_accuracy(scores, target) == pytest.approx(0.4)


def test_matching_random_scores_near_one_over_n():
    rng = np.random.default_rng(0)
    for n in (2, 5, 10):
        scores = rng.random((20000, n))
        target = rng.integers(0, n, 20000)
        assert M.matching_accuracy(scores, target) == pytest.approx(1 / n, abs=0.015)


# --------------------------------------------------------------------------- retrieval


def test_average_precision_hand_worked():
    # ranking: relevant, irrelevant, relevant -> (1/1 + 2/3) / 2
    assert M.average_precision([0.9, 0.5, 0.4], [True, False, True]) == pytest.approx(5 / 6)
    # one relevant tied with one irrelevant: ranked second
    assert M.average_precision([1.0, 1.0], [True, False]) == pytest.approx(0.5)
    assert M.average_precision([1.0, 1.0], [False, True]) == pytest.approx(0.5)
    # two relevant tied with one irrelevant at the top: ranks 2, 3
    assert M.average_precision([1.0, 1.0, 1.0, 0.0], [True, True, False, False]) == \
        pytest.approx((1 / 2 + 2 / 3) / 2)
    assert M.average_precision([0.1, 0.2], [True, True]) == pytest.approx(1.0)
    assert np.isnan(M.average_precision([0.1, 0.2], [False, False]))


def test_average_precision_matches_sklearn_without_ties():
    rng = np.random.default_rng(5)
    S = rng.standard_normal((30, 200))
    R = rng.random((30, 200)) < 0.05
    R[:, 0] = True
    ap = M.average_precisions(S, R)
    for i in range(30):
        assert ap[i] == pytest.approx(average_precision_score(R[i], S[i]), abs=1e-12)


def test_chance_ap_hand_worked_and_exhaustive():
    assert M.expected_random_ap(3, 2) == pytest.approx(29 / 36)
    assert M.expected_random_ap(1, 1) == 1.0
    assert M.expected_random_ap(7, 7) == pytest.approx(1.0)
    assert M.expected_random_ap(4, 1) == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)
    for N in range(1, 8):
        for R in range(1, N + 1):
            aps = []
            for pos in itertools.combinations(range(N), R):
                rel = np.zeros(N, bool)
                rel[list(pos)] = True
                aps.append(M.average_precision(-np.arange(N, dtype=float), rel))
            assert M.expected_random_ap(N, R) == pytest.approx(np.mean(aps), abs=1e-12)


def test_chance_ap_against_monte_carlo():
    rng = np.random.default_rng(1)
    N, R, trials = 60, 6, 20000
    rel = np.zeros((trials, N), bool)
    rel[:, :R] = True
    S = rng.random((trials, N))
    mc = np.mean(M.average_precisions(S, rel))
    se = np.std(M.average_precisions(S[:2000], rel[:2000])) / np.sqrt(trials)
    assert M.expected_random_ap(N, R) == pytest.approx(mc, abs=4 * se)


def test_harmonic_numbers():
    assert M.harmonic(np.array([1, 2, 4]))[2] == pytest.approx(25 / 12)
    big = 2_000_000
    assert M.harmonic(np.array([big]))[0] == pytest.approx(np.sum(1 / np.arange(1, big + 1)), rel=1e-12)
