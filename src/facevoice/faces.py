"""Faces stage: MTCNN detection and 5-landmark alignment of one clip's frames.

Detection is facenet-pytorch's ``MTCNN`` (P-Net, R-Net, O-Net with NMS), run on batches of
``faces.batch_size`` frames, with ``min_face_size``, ``thresholds`` and the pyramid scale
``factor`` from config. Detections under ``faces.min_prob`` are ignored.

When a frame holds several faces, ``faces.multiple`` decides: ``reject`` drops the frame
(its identity cannot be told), ``largest`` keeps the largest box, ``central`` the box whose
centre is nearest the frame's centre, ``probable`` the most probable detection.

Alignment (``faces.align``):

``landmarks``
    A similarity transform (rotation, uniform scale, translation; least squares over the
    five points) maps MTCNN's eyes, nose and mouth corners onto the common 112-pixel
    template of ArcFace-style alignment, scaled so that the template's 112-pixel box fills
    ``image_size - margin`` pixels centred in the ``image_size`` crop.
``box``
    facenet-pytorch's own ``extract_face``: the box plus ``margin`` pixels, resized.

Output Parquet: one row per kept frame with ``frame_index``, ``time_s``, ``prob``, ``box``
(x1, y1, x2, y2 in the frame), ``landmarks`` (5 x (x, y), flattened), ``n_faces`` (faces
detected in the frame) and ``image`` (the aligned RGB crop, PNG). The metadata counts the
frames dropped per reason. A clip with no usable frame is rejected with the reasons.
"""

from __future__ import annotations

import io
import sys
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from facevoice.io import write_parquet
from facevoice.stage import stage_main, upstream_rejection, write_rejected

STAGE = "faces"
SCHEMA = pa.schema([
    ("frame_index", pa.int32()),
    ("time_s", pa.float64()),
    ("prob", pa.float32()),
    ("box", pa.list_(pa.float32(), 4)),
    ("landmarks", pa.list_(pa.float32(), 10)),
    ("n_faces", pa.int32()),
    ("image", pa.binary()),
])

# Five-point template (left eye, right eye, nose, left and right mouth corners) in a
# 112 x 112 crop, as used by ArcFace-style alignment.
TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)


def template(image_size: int, margin: int) -> np.ndarray:
    inner = image_size - margin
    return TEMPLATE_112 / 112.0 * inner + margin / 2.0


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 matrix of the least-squares similarity transform taking ``src`` points to ``dst``."""
    n = len(src)
    a = np.zeros((2 * n, 4))
    a[0::2] = np.c_[src[:, 0], -src[:, 1], np.ones(n), np.zeros(n)]
    a[1::2] = np.c_[src[:, 1], src[:, 0], np.zeros(n), np.ones(n)]
    (p, q, tx, ty), *_ = np.linalg.lstsq(a, dst.reshape(-1), rcond=None)
    return np.array([[p, -q, tx], [q, p, ty]])


def align_landmarks(img: Image.Image, landmarks: np.ndarray, image_size: int, margin: int) -> Image.Image:
    m = np.vstack([similarity_transform(landmarks, template(image_size, margin)), [0, 0, 1]])
    inv = np.linalg.inv(m)  # PIL maps output pixels back to input pixels
    return img.transform(
        (image_size, image_size), Image.Transform.AFFINE, data=tuple(inv[:2].ravel()), resample=Image.BILINEAR
    )


def align_box(img: Image.Image, box: np.ndarray, image_size: int, margin: int) -> Image.Image:
    from facenet_pytorch.models.utils.detect_face import extract_face

    face = extract_face(img, box, image_size=image_size, margin=margin)
    return Image.fromarray(face.permute(1, 2, 0).clamp(0, 255).byte().numpy())


def choose(boxes: np.ndarray, probs: np.ndarray, size: tuple[int, int], policy: str) -> int | None:
    """Index of the face to keep among several, or None when the policy rejects the frame."""
    if len(boxes) == 1:
        return 0
    if policy == "reject":
        return None
    if policy == "largest":
        return int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))
    if policy == "probable":
        return int(np.argmax(probs))
    if policy == "central":
        centre = np.array(size, dtype=np.float64) / 2.0
        mid = np.c_[(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2]
        return int(np.argmin(((mid - centre) ** 2).sum(1)))
    raise ValueError(f"faces.multiple must be reject, largest, central or probable, not {policy!r}")


def make_detector(params: dict[str, Any]):
    import torch
    from facenet_pytorch import MTCNN

    device = params.get("device", "cpu")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return MTCNN(
        image_size=int(params.get("image_size", 160)),
        margin=int(params.get("margin", 0)),
        min_face_size=int(params.get("min_face_size", 20)),
        thresholds=list(params.get("thresholds", [0.6, 0.7, 0.7])),
        factor=float(params.get("factor", 0.709)),
        keep_all=True,
        post_process=False,
        device=device,
    )


def detect(detector, images: list[Image.Image], batch_size: int):
    """Batched MTCNN detection: lists of (boxes, probs, landmarks) per image."""
    out = []
    # MTCNN batches need images of one size; frames of one clip share theirs.
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        if len({im.size for im in chunk}) == 1:
            boxes, probs, points = detector.detect(chunk, landmarks=True)
            out.extend(zip(boxes, probs, points))
        else:
            for im in chunk:
                b, p, pts = detector.detect(im, landmarks=True)
                out.append((b, p, pts))
    return out


def run(input_path: str, output_path: str, params: dict[str, Any]) -> dict[str, Any]:
    reason = upstream_rejection(input_path)
    if reason:
        return write_rejected(SCHEMA, output_path, STAGE, reason, params)
    frames = pq.read_table(input_path).to_pylist()
    images = [Image.open(io.BytesIO(f["image"])).convert("RGB") for f in frames]
    size = int(params.get("image_size", 160))
    margin = int(params.get("margin", 0))
    min_prob = float(params.get("min_prob", 0.0))
    policy = params.get("multiple", "reject")
    align = params.get("align", "landmarks")

    detector = make_detector(params)
    detections = detect(detector, images, int(params.get("batch_size", 8)))
    dropped: Counter[str] = Counter()
    rows: dict[str, list] = {k: [] for k in SCHEMA.names}
    for frame, img, (boxes, probs, points) in zip(frames, images, detections):
        if boxes is None:
            dropped["no face"] += 1
            continue
        keep = np.asarray(probs) >= min_prob
        boxes, probs, points = np.asarray(boxes)[keep], np.asarray(probs)[keep], np.asarray(points)[keep]
        if len(boxes) == 0:
            dropped["no face"] += 1
            continue
        pick = choose(boxes, probs, img.size, policy)
        if pick is None:
            dropped["several faces"] += 1
            continue
        face = (align_landmarks(img, points[pick], size, margin) if align == "landmarks"
                else align_box(img, boxes[pick], size, margin))
        buf = io.BytesIO()
        face.save(buf, format="PNG")
        rows["frame_index"].append(frame["frame_index"])
        rows["time_s"].append(frame["time_s"])
        rows["prob"].append(float(probs[pick]))
        rows["box"].append([float(x) for x in boxes[pick]])
        rows["landmarks"].append([float(x) for x in points[pick].ravel()])
        rows["n_faces"].append(len(boxes))
        rows["image"].append(buf.getvalue())

    extra = {"frames_in": len(frames), "frames_dropped": dict(dropped)}
    if not rows["image"]:
        if set(dropped) == {"no face"}:
            why = "no face in any frame"
        elif set(dropped) == {"several faces"}:
            why = f"several faces in every frame (faces.multiple is {policy!r})"
        else:
            why = "no usable face: " + ", ".join(f"{n} frame(s) {r}" for r, n in sorted(dropped.items()))
        return write_rejected(SCHEMA, output_path, STAGE, why, params, **extra)
    meta = {"stage": STAGE, "status": "ok", "reason": None, "params": params, **extra}
    write_parquet(pa.table(rows, schema=SCHEMA), output_path, meta)
    return meta


def main(argv: list[str] | None = None) -> int:
    return stage_main(STAGE, run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
