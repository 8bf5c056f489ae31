"""Each loss against values worked by hand on tiny tensors (see the comments for the sums)."""

import math

import pytest
import torch

from facevoice.training import losses
from facevoice.training.methods.biq_mwrn import TopNet

S3 = math.sqrt(3.0)


def t(x):
    return torch.tensor(x, dtype=torch.float32)


def line(xs):
    """1-D points embedded in 2-D: Euclidean distances are |x - y|."""
    return torch.tensor([[x, 0.0] for x in xs])


def unit(degrees, scale=1.0):
    return torch.tensor([[scale * math.cos(math.radians(d)), scale * math.sin(math.radians(d))] for d in degrees])


def test_batch_center_loss_mixes_modalities_in_one_center():
    # class 0: (0,0), (2,0) -> center (1,0): |.|^2 = 1, 1
    # class 1: (0,0), (0,3), (3,0) -> center (1,1): |.|^2 = 2, 5, 5
    f = t([[0, 0], [2, 0], [0, 0], [0, 3], [3, 0]])
    y = torch.tensor([0, 0, 1, 1, 1])
    assert losses.batch_center_loss(f, y).item() == pytest.approx((1 + 1 + 2 + 5 + 5) / 5)
    # the gradient pulls each feature towards its center: d/df_i = 2 (f_i - c) / n
    f.requires_grad_(True)
    losses.batch_center_loss(f, y).backward()
    assert torch.allclose(f.grad[0], t([-2 / 5, 0]))


def test_orthogonal_projection_loss_by_hand():
    # a = (1,0) y0; b = (1,1)/sqrt2 y0; c = (0,1) y1; d = (-2,0) y1 (normalised to (-1,0))
    e = t([[1, 0], [1, 1], [0, 1], [-2, 0]])
    y = torch.tensor([0, 0, 1, 1])
    # positives (diagonal excluded): cos(a,b) = 1/sqrt2 twice, cos(c,d) = 0 twice -> sqrt2/4
    pos = math.sqrt(2) / 4
    # negatives: a-c 0, a-d -1, b-c 1/sqrt2, b-d -1/sqrt2, each twice -> -2/8 = -0.25
    neg = -0.25
    loss, terms = losses.orthogonal_projection_loss(e, y)
    assert loss.item() == pytest.approx(1 - pos + abs(neg), abs=1e-6)
    assert terms["opl_pos"].item() == pytest.approx(pos, abs=1e-6)
    assert terms["opl_neg"].item() == pytest.approx(neg, abs=1e-6)
    loss07, _ = losses.orthogonal_projection_loss(e, y, neg_weight=0.7)
    assert loss07.item() == pytest.approx(1 - pos + 0.7 * 0.25, abs=1e-6)
    signed, _ = losses.orthogonal_projection_loss(e, y, absolute=False)
    assert signed.item() == pytest.approx(1 - pos - 0.25, abs=1e-6)


def test_bidirectional_ranking_loss_hardest_negatives_by_hand():
    # pairs (face a_i, voice o_i), labels 0, 0, 1; 1-D coordinates
    a = line([0.0, 1.0, 0.3])
    o = line([0.5, 0.8, 0.0])
    y = torch.tensor([0, 0, 1])
    # face -> voice: hardest negative voice of another identity
    #   i0: o' = o2 (d 0.0): [0.6 + 0.5 - 0.0]+ = 1.1;   sep [0.6 - d(o0,o2)=0.5]+ = 0.1
    #   i1: o' = o2 (d 1.0): [0.6 + 0.2 - 1.0]+ = 0;     sep [0.6 - 0.8]+ = 0
    #   i2: o' = o0 (d 0.2, not o1 at 0.5): [0.6 + 0.3 - 0.2]+ = 0.7; sep [0.6 - 0.5]+ = 0.1
    # voice -> face (alpha2 = 0.4): hardest negative face of another identity
    #   i0: a' = a2 (d 0.2): [0.4 + 0.5 - 0.2]+ = 0.7;   sep [0.6 - d(a0,a2)=0.3]+ = 0.3
    #   i1: a' = a2 (d 0.5): [0.4 + 0.2 - 0.5]+ = 0.1;   sep [0.6 - 0.7]+ = 0
    #   i2: a' = a0 (d 0.0, not a1 at 1.0): [0.4 + 0.3 - 0.0]+ = 0.7; sep [0.6 - 0.3]+ = 0.3
    lam = 0.5
    fv = (1.1 + lam * 0.1) + 0 + (0.7 + lam * 0.1)
    vf = (0.7 + lam * 0.3) + 0.1 + (0.7 + lam * 0.3)
    loss, terms = losses.bidirectional_ranking_loss(a, o, y, alpha1=0.6, alpha2=0.4, beta1=0.6, beta2=0.6,
                                                    lambda3=lam, lambda4=lam)
    assert loss.item() == pytest.approx((fv + vf) / 3, abs=1e-5)
    assert terms["rank_fv"].item() == pytest.approx(fv / 3, abs=1e-5)
    assert terms["rank_vf"].item() == pytest.approx(vf / 3, abs=1e-5)
    # the paper's values (alpha 0.6, beta 0.2, lambda 0.1): every separation term is 0 here
    # f->v 1.1 + 0 + 0.7, v->f (alpha2 0.6) 0.9 + 0.3 + 0.9 -> 3.9 / 3
    paper, _ = losses.bidirectional_ranking_loss(a, o, y)
    assert paper.item() == pytest.approx(1.3, abs=1e-5)


def test_ranking_loss_needs_two_identities():
    with pytest.raises(ValueError, match="two identities"):
        losses.bidirectional_ranking_loss(line([0, 1]), line([0, 1]), torch.tensor([3, 3]))


def test_center_loss_and_wen_update_by_hand():
    x = t([[1, 0], [0, 1]])
    y = torch.tensor([0, 1])
    c = t([[0, 0], [0, 3], [5, 5]])
    # 1/2 mean(|(1,0)-(0,0)|^2, |(0,1)-(0,3)|^2) = 1/2 * (1 + 4) / 2
    assert losses.center_loss(x, y, c).item() == pytest.approx(1.25)
    losses.update_centers(c, x, y, alpha=0.5)
    # c0 -= 0.5 * ((0,0)-(1,0)) / (1+1) = (0.25, 0); c1 -= 0.5 * ((0,3)-(0,1)) / 2 -> (0, 2.5); c2 unseen
    assert torch.allclose(c, t([[0.25, 0], [0, 2.5], [5, 5]]))
    # a batch with a NaN moves no center (the trainer skips its step; later batches stay finite)
    losses.update_centers(c, t([[float("nan"), 0], [0, 1]]), y, alpha=0.5)
    assert torch.allclose(c, t([[0.25, 0], [0, 2.5], [5, 5]]))


def test_trihard_hardest_positive_and_negative_by_hand():
    a = line([0.0, 1.0])
    ya = torch.tensor([0, 1])
    c = line([0.2, 0.9, 0.5, 1.6])
    yc = torch.tensor([0, 0, 1, 1])
    # a0: hardest positive 0.9 (c1), hardest negative 0.5 (c2): 0.9 - 0.5 + 0.3 = 0.7
    # a1: hardest positive 0.6 (c3), hardest negative 0.1 (c1): 0.6 - 0.1 + 0.3 = 0.8
    got = losses.trihard(a, ya, c, yc, margin=0.3)
    assert torch.allclose(got, t([0.7, 0.8]), atol=1e-5)


def test_trihard_never_uses_the_anchor_as_its_own_positive():
    a = line([0.0])
    c = line([0.0, 2.0])  # c0 is the anchor itself
    ya, yc = torch.tensor([0]), torch.tensor([0, 1])
    # with the anchor excluded there is no positive: the anchor contributes 0
    assert losses.trihard(a, ya, c, yc, margin=3.0, self_index=torch.tensor([0])).item() == 0.0
    # counted as its own positive it would give [0 - 2 + 3]+ = 1
    assert losses.trihard(a, ya, c, yc, margin=3.0).item() == pytest.approx(1.0, abs=1e-5)


def test_bi_quintuple_loss_cross_and_mixed_modal_both_directions_by_hand():
    # unit vectors (L2 normalisation inside: scaled inputs give the same loss)
    # faces f0 = 0 deg (id 0), f1 = 60 deg (id 1); voices v0 = 120 deg (id 0), v1 = 180 deg (id 1)
    # chords: 60 deg -> 1, 120 deg -> sqrt3, 180 deg -> 2
    f = unit([0, 60], scale=3.0)
    v = unit([120, 180], scale=0.5)
    yf = torch.tensor([0, 1])
    yv = torch.tensor([0, 1])
    m = 0.6
    # face anchors
    #  CTH f0: pos v0 sqrt3, neg v1 2            -> sqrt3 - 2 + m
    #  MTH f0: pos v0 sqrt3, neg min(f1 1, v1 2) -> sqrt3 - 1 + m   (an intra-modal negative)
    #  CTH f1: pos v1 sqrt3, neg v0 1            -> sqrt3 - 1 + m
    #  MTH f1: pos v1 sqrt3, neg min(f0 1, v0 1) -> sqrt3 - 1 + m
    # voice anchors
    #  CTH v0: pos f0 sqrt3, neg f1 1            -> sqrt3 - 1 + m
    #  MTH v0: pos f0 sqrt3, neg min(f1 1, v1 1) -> sqrt3 - 1 + m
    #  CTH v1: pos f1 sqrt3, neg f0 2            -> sqrt3 - 2 + m
    #  MTH v1: pos f1 sqrt3, neg min(f0 2, v0 1) -> sqrt3 - 1 + m   (an intra-modal negative)
    hi, lo = S3 - 1 + m, S3 - 2 + m
    loss, terms = losses.bi_quintuple_loss(f, yf, v, yv, margin=m)
    assert terms["cth_fv"].item() == pytest.approx((lo + hi) / 2, abs=1e-5)
    assert terms["mth_f"].item() == pytest.approx(hi, abs=1e-5)
    assert terms["cth_vf"].item() == pytest.approx((hi + lo) / 2, abs=1e-5)
    assert terms["mth_v"].item() == pytest.approx(hi, abs=1e-5)
    assert loss.item() == pytest.approx((lo + 3 * hi) / 2 * 2, abs=1e-5)


def test_bi_quintuple_mixed_positive_can_be_intra_modal():
    # face anchor f0 = 0 deg (id 0) with a second face f1 = 180 deg of the same identity and
    # its voice v0 = 60 deg; negative voice v1 = 120 deg (id 1)
    f = unit([0, 180])
    v = unit([60, 120])
    yf, yv = torch.tensor([0, 0]), torch.tensor([0, 1])
    per = losses.trihard(torch.nn.functional.normalize(f), yf, torch.cat([f, v]), torch.cat([yf, yv]), 0.6,
                         self_index=torch.tensor([0, 1]))
    # f0: hardest positive f1 (2, not v0 at 1); hardest negative v1 (sqrt3): 2 - sqrt3 + 0.6
    assert per[0].item() == pytest.approx(2 - S3 + 0.6, abs=1e-5)
    # f1 (180): positives f0 (2), v0 (sqrt3) -> 2; negative v1 at 60 deg -> 1: 2 - 1 + 0.6
    assert per[1].item() == pytest.approx(1.6, abs=1e-5)


def test_mwrn_starts_as_tanh_and_variants_compute_their_formulas():
    torch.manual_seed(0)
    x = torch.randn(5, 8)
    mwrn = TopNet("mwrn", 8, 4)
    assert mwrn.eta.item() == 0.0
    assert torch.allclose(mwrn(x), torch.tanh(x))
    with torch.no_grad():
        mwrn.eta.fill_(0.5)
    f = mwrn.w2(torch.tanh(mwrn.w1(x)))
    assert torch.allclose(mwrn(x), torch.tanh(x + 0.5 * f))
    dfc_r = TopNet("dfc_r", 8, 4)
    assert torch.allclose(dfc_r(x), torch.tanh(x + dfc_r.w2(torch.tanh(dfc_r.w1(x)))))
    dfc = TopNet("dfc", 8, 4)
    assert torch.allclose(dfc(x), dfc.w2(torch.tanh(dfc.w1(x))))
    sfc = TopNet("sfc", 8, 4)
    assert torch.allclose(sfc(x), x @ sfc.fc.weight.t())
