"""Losses of the metric-learning methods (Zhong et al. 2025, Wang et al. 2020, Liu et al.), on plain tensors.

Every function takes a batch of embeddings and integer identity labels and returns a
scalar (plus, where a loss has several terms, a dict of the terms, detached). Reductions
are means over the batch throughout (the papers write some sums; a mean keeps the weights
independent of the batch size, and we use it for every method alike).

Distances are Euclidean, ``sqrt(max(|x - y|^2, EPS))``: the clamp keeps the gradient
finite at zero distance (a sample against itself).

Cross-modal center loss (Zhong et al. 2025, eq. 1-2)
    ``batch_center_loss``: the center of identity c is the mean of *all* face and voice
    features of c in the mini-batch; the loss is ``mean_i |f_i - c_{y_i}|^2``. The method
    multiplies it by lambda / 2.
Orthogonal projection loss (FOP, Zhong et al. 2025, eq. 10)
    ``orthogonal_projection_loss``: ``1 - mean cos(same identity, i != j) + w * |mean
    cos(different identities)|`` on L2-normalised embeddings; the diagonal (a sample with
    itself, cosine 1) is excluded.
Bi-directional ranking loss (Wang et al. 2020, eq. 1)
    ``bidirectional_ranking_loss``: pairs (face a_i, voice o_i) of the same identity; for
    each pair the hardest negative voice o' (closest to a_i among voices of *other*
    identities) and the hardest negative face a' (closest to o_i among faces of other
    identities).
Center loss with learned centers (Wang et al. 2020, eq. 4; Wen et al. 2016)
    ``center_loss`` and ``update_centers``.
TriHard and the bi-quintuple loss (Liu et al., eq. 5-17)
    ``trihard`` (hardest positive, hardest negative per anchor) and
    ``bi_quintuple_loss`` (cross-modal + mixed-modal TriHard, both directions).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-12


def pairwise_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distances (n, m) between the rows of ``a`` (n, d) and ``b`` (m, d)."""
    a = a.float()
    b = b.float()
    sq = (a * a).sum(1, keepdim=True) - 2.0 * a @ b.t() + (b * b).sum(1)[None, :]
    return sq.clamp_min(EPS).sqrt()


def batch_center_loss(features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Zhong et al. 2025, eq. 1: mean over the batch of |f_i - c_{y_i}|^2, c_y the batch mean of class y.

    ``features`` hold faces and voices together (the center mixes both modalities).
    """
    features = features.float()
    classes, inverse = torch.unique(labels, return_inverse=True)
    sums = torch.zeros(len(classes), features.shape[1], device=features.device, dtype=features.dtype)
    sums.index_add_(0, inverse, features)
    counts = torch.bincount(inverse, minlength=len(classes)).to(features.dtype)
    centers = sums / counts[:, None]
    return ((features - centers[inverse]) ** 2).sum(1).mean()


def orthogonal_projection_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, neg_weight: float = 1.0, absolute: bool = True
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Zhong et al. 2025, eq. 10 on L2-normalised ``embeddings``; returns (loss, {pos, neg})."""
    e = F.normalize(embeddings.float(), dim=1)
    cos = e @ e.t()
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos_mask = (same & ~eye).float()
    neg_mask = (~same).float()
    pos = (cos * pos_mask).sum() / pos_mask.sum().clamp_min(1.0)
    neg = (cos * neg_mask).sum() / neg_mask.sum().clamp_min(1.0)
    neg_term = neg.abs() if absolute else neg
    loss = 1.0 - pos + neg_weight * neg_term
    return loss, {"opl_pos": pos.detach(), "opl_neg": neg.detach()}


def _hardest_negative(dist: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
    """Column index of the smallest distance among different-identity entries of each row."""
    masked = dist.detach().masked_fill(same, float("inf"))
    return masked.argmin(1)


def bidirectional_ranking_loss(
    face: torch.Tensor, voice: torch.Tensor, labels: torch.Tensor,
    alpha1: float = 0.6, alpha2: float = 0.6, beta1: float = 0.2, beta2: float = 0.2,
    lambda3: float = 0.1, lambda4: float = 0.1,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Wang et al. 2020, eq. 1 with online hardest negatives, averaged over the pairs.

    ``face[i]`` and ``voice[i]`` are a positive pair of identity ``labels[i]``. Face to
    voice: o' = argmin over voices j of another identity of d(a_i, o_j); the term is
    ``[alpha1 + d(a, o) - d(a, o')]_+ + lambda3 [beta1 - d(o, o')]_+``. Voice to face
    mirrors it with a' = argmin over faces j of another identity of d(o_i, a_j). Each
    batch must hold at least two identities.
    """
    face = face.float()
    voice = voice.float()
    same = labels[:, None] == labels[None, :]
    if bool(same.all()):
        raise ValueError("the ranking loss needs at least two identities in the batch")
    d_fv = pairwise_distances(face, voice)  # [i, j] = d(a_i, o_j)
    d_pos = d_fv.diagonal()
    n = torch.arange(len(labels), device=labels.device)
    o_neg = _hardest_negative(d_fv, same)  # hardest voice for each face anchor
    a_neg = _hardest_negative(d_fv.t(), same)  # hardest face for each voice anchor
    d_vv = pairwise_distances(voice, voice)
    d_ff = pairwise_distances(face, face)
    f2v = F.relu(alpha1 + d_pos - d_fv[n, o_neg])
    f2v_sep = F.relu(beta1 - d_vv[n, o_neg])
    v2f = F.relu(alpha2 + d_pos - d_fv.t()[n, a_neg])
    v2f_sep = F.relu(beta2 - d_ff[n, a_neg])
    loss = (f2v + lambda3 * f2v_sep + v2f + lambda4 * v2f_sep).mean()
    terms = {"rank_fv": (f2v + lambda3 * f2v_sep).mean().detach(),
             "rank_vf": (v2f + lambda4 * v2f_sep).mean().detach()}
    return loss, terms


def center_loss(features: torch.Tensor, labels: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Wang et al. 2020, eq. 4 as a batch mean: mean_k 1/2 |x_k - c_{y_k}|^2 (centers are constants)."""
    diff = features.float() - centers[labels].detach().float()
    return 0.5 * (diff * diff).sum(1).mean()


@torch.no_grad()
def update_centers(centers: torch.Tensor, features: torch.Tensor, labels: torch.Tensor, alpha: float) -> None:
    """Wen et al. 2016 center update, in place: c_j -= alpha * sum_i(c_j - x_i) / (1 + n_j).

    A batch with a non-finite feature moves no center: the trainer skips that batch's step,
    and one NaN in the centers would poison the loss of every later batch."""
    if not torch.isfinite(features).all():
        return
    features = features.detach().to(centers.dtype)
    delta = torch.zeros_like(centers)
    delta.index_add_(0, labels, centers[labels] - features)
    counts = torch.bincount(labels, minlength=centers.shape[0]).to(centers.dtype)
    centers -= alpha * delta / (1.0 + counts)[:, None]


def trihard(
    anchors: torch.Tensor, anchor_labels: torch.Tensor, candidates: torch.Tensor, candidate_labels: torch.Tensor,
    margin: float, self_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-anchor TriHard (Liu et al., eq. 5): [max_p d(a, p) - min_n d(a, n) + m]_+, shape (n,).

    ``self_index[i]`` is the column of anchor i among the candidates when the anchors are
    themselves candidates (mixed-modal): that column is never a positive. An anchor with no
    positive or no negative among the candidates contributes 0.
    """
    d = pairwise_distances(anchors, candidates)
    same = anchor_labels[:, None] == candidate_labels[None, :]
    pos_mask = same.clone()
    if self_index is not None:
        pos_mask[torch.arange(len(anchors), device=d.device), self_index] = False
    neg_mask = ~same
    hardest_pos = d.masked_fill(~pos_mask, float("-inf")).max(1).values
    hardest_neg = d.masked_fill(~neg_mask, float("inf")).min(1).values
    valid = pos_mask.any(1) & neg_mask.any(1)
    loss = F.relu(hardest_pos - hardest_neg + margin)
    return torch.where(valid, loss, torch.zeros_like(loss))


def bi_quintuple_loss(
    face: torch.Tensor, face_labels: torch.Tensor, voice: torch.Tensor, voice_labels: torch.Tensor,
    margin: float = 0.6,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Liu et al., eq. 17 on L2-normalised features: for face anchors, cross-modal TriHard
    (candidates: the batch's voices) + mixed-modal TriHard (candidates: faces and voices,
    the anchor itself excluded); the same with voice anchors. Each direction is a mean
    over its anchors; the loss is their sum."""
    f = F.normalize(face.float(), dim=1)
    v = F.normalize(voice.float(), dim=1)
    both = torch.cat([f, v])
    both_labels = torch.cat([face_labels, voice_labels])
    nf, nv = len(f), len(v)
    dev = f.device
    cth_f = trihard(f, face_labels, v, voice_labels, margin)
    mth_f = trihard(f, face_labels, both, both_labels, margin, self_index=torch.arange(nf, device=dev))
    cth_v = trihard(v, voice_labels, f, face_labels, margin)
    mth_v = trihard(v, voice_labels, both, both_labels, margin, self_index=nf + torch.arange(nv, device=dev))
    loss = (cth_f + mth_f).mean() + (cth_v + mth_v).mean()
    terms = {"cth_fv": cth_f.mean().detach(), "mth_f": mth_f.mean().detach(),
             "cth_vf": cth_v.mean().detach(), "mth_v": mth_v.mean().detach()}
    return loss, terms
