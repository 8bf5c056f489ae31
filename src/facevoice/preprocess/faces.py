"""Faces stage: MTCNN detection and 5-landmark alignment of a batch of clips' frames.

A job reads one frames batch file and writes one faces batch file (:mod:`facevoice.data.batch`):
``facevoice faces --input FRAMES.parquet --output OUT.parquet [--cache DIR]``.

Detection is facenet-pytorch's ``MTCNN`` (P-Net, R-Net, O-Net with NMS), loaded once per
job, with ``min_face_size``, ``thresholds`` and the pyramid scale ``factor`` from config.
``faces.device`` ``auto`` or ``cuda`` runs it on the GPU when one is present (on the CPU
otherwise, with a warning for ``cuda``). Frames of several clips go through it together,
grouped by frame size, ``batch_size`` frames per call on the CPU and ``gpu_batch_size`` on
a GPU. Detections under ``faces.min_prob`` are ignored.

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

Output: a batch file with one row per kept frame: ``clip``, ``frame_index``, ``time_s``, ``prob``, ``box``
(x1, y1, x2, y2 in the frame), ``landmarks`` (5 x (x, y), flattened), ``n_faces`` (faces
detected in the frame) and ``image`` (the aligned RGB crop, PNG). Each clip's record counts
its frames dropped per reason and names the device. A clip with no usable frame is rejected
with the reasons.
"""

from __future__ import annotations

import io
import logging
import sys
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image

from facevoice.common.config import check_section
from facevoice.data import batch
from facevoice.data.batch import Result
from facevoice.data.records import FACES as SCHEMA

log = logging.getLogger("facevoice")
STAGE = "faces"

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


def resolve_device(requested: str) -> str:
    """``cpu``, or ``cuda`` when asked for (``auto``, ``cuda``) and a GPU is present."""
    import torch

    if requested == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if requested == "cuda":
        log.warning("faces.device is cuda but no GPU is visible here: running MTCNN on the CPU")
    return "cpu"


def make_detector(params: dict[str, Any], device: str | None = None):
    from facenet_pytorch import MTCNN

    return MTCNN(
        image_size=int(params["image_size"]),
        margin=int(params["margin"]),
        min_face_size=int(params["min_face_size"]),
        thresholds=list(params["thresholds"]),
        factor=float(params["factor"]),
        keep_all=True,
        post_process=False,
        device=device or resolve_device(params["device"]),
    )


def detect(detector, images: list[Image.Image], batch_size: int):
    """Batched MTCNN detection: (boxes, probs, landmarks) per image, in order.

    MTCNN batches need images of one size: images are grouped by size, each group run
    ``batch_size`` at a time.
    """
    out: list[Any] = [None] * len(images)
    by_size: dict[tuple[int, int], list[int]] = {}
    for i, im in enumerate(images):
        by_size.setdefault(im.size, []).append(i)
    for idx in by_size.values():
        for start in range(0, len(idx), batch_size):
            chunk = idx[start:start + batch_size]
            boxes, probs, points = detector.detect([images[i] for i in chunk], landmarks=True)
            for i, b, p, pts in zip(chunk, boxes, probs, points):
                out[i] = (b, p, pts)
    return out


def _keep(img: Image.Image, det, params: dict[str, Any], dropped: Counter) -> tuple | None:
    """The face to keep in one frame: (box, prob, landmarks, faces found), or None (and why)."""
    boxes, probs, points = det
    if boxes is None:
        dropped["no face"] += 1
        return None
    keep = np.asarray(probs) >= float(params["min_prob"])
    boxes, probs, points = np.asarray(boxes)[keep], np.asarray(probs)[keep], np.asarray(points)[keep]
    if len(boxes) == 0:
        dropped["no face"] += 1
        return None
    pick = choose(boxes, probs, img.size, params["multiple"])
    if pick is None:
        dropped["several faces"] += 1
        return None
    return boxes[pick], float(probs[pick]), points[pick], len(boxes)


def _why(dropped: Counter, policy: str) -> str:
    if set(dropped) == {"no face"}:
        return "no face in any frame"
    if set(dropped) == {"several faces"}:
        return f"several faces in every frame (faces.multiple is {policy!r})"
    return "no usable face: " + ", ".join(f"{n} frame(s) {r}" for r, n in sorted(dropped.items()))


def align_clip(frames: list[dict], images: list[Image.Image], detections: list, params: dict[str, Any],
               device: str) -> Result:
    """One clip's kept faces, aligned, from its frames and their detections."""
    size, margin = int(params["image_size"]), int(params["margin"])
    dropped: Counter[str] = Counter()
    rows: dict[str, list] = {k: [] for k in SCHEMA.names}
    for frame, img, det in zip(frames, images, detections):
        kept = _keep(img, det, params, dropped)
        if kept is None:
            continue
        box, prob, points, n_faces = kept
        face = (align_landmarks(img, points, size, margin) if params["align"] == "landmarks"
                else align_box(img, box, size, margin))
        buf = io.BytesIO()
        face.save(buf, format="PNG")
        rows["frame_index"].append(frame["frame_index"])
        rows["time_s"].append(frame["time_s"])
        rows["prob"].append(prob)
        rows["box"].append([float(x) for x in box])
        rows["landmarks"].append([float(x) for x in points.ravel()])
        rows["n_faces"].append(n_faces)
        rows["image"].append(buf.getvalue())
    extra = {"frames_in": len(frames), "frames_dropped": dict(dropped), "device": device}
    if not rows["image"]:
        return Result.rejected(_why(dropped, params["multiple"]), **extra)
    return Result("ok", None, pa.table(rows, schema=SCHEMA), extra)


class Processor:
    """MTCNN loaded once (on first use); the frames of ``window`` clips detected together."""

    def __init__(self, params: dict[str, Any]):
        self.params = params
        self.detector = None
        self.device = None

    def _load(self) -> None:
        if self.detector is None:
            self.device = resolve_device(self.params["device"])
            self.detector = make_detector(self.params, self.device)
            log.info("MTCNN on %s", self.device)

    @property
    def batch_size(self) -> int:
        self._load()
        return int(self.params["gpu_batch_size" if self.device == "cuda" else "batch_size"])

    @property
    def window(self) -> int:
        return max(1, self.batch_size // 8)  # clips per call: ~8 frames a clip fill a batch

    def process(self, clips: list[pa.Table]) -> list[Result]:
        self._load()
        frames = [t.to_pylist() for t in clips]
        images = [[Image.open(io.BytesIO(f["image"])).convert("RGB") for f in fr] for fr in frames]
        flat = [im for ims in images for im in ims]
        found = detect(self.detector, flat, self.batch_size)
        out, at = [], 0
        for fr, ims in zip(frames, images):
            out.append(align_clip(fr, ims, found[at:at + len(ims)], self.params, self.device))
            at += len(ims)
        return out


def check(params: dict[str, Any]) -> dict[str, Any]:
    """Config's complete ``faces:`` section, checked against the schema (a key left out is an
    error naming it, never a default); returns a copy."""
    return check_section(STAGE, params)


CODE = batch.code_key(__file__, ["torch", "facenet-pytorch", "pillow", "numpy"])


def run(input_path: str, output_path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every clip of a frames batch file into a faces batch file (no cache); returns the records."""
    params = check(params)
    reader, items = batch.upstream_items(input_path, STAGE, batch.digest(params), CODE)
    try:
        return batch.run_job(STAGE, items, Processor(params), SCHEMA, output_path,
                             {"params": params, "code": CODE}, progress=False)
    finally:
        reader.close()


def main(argv: list[str] | None = None) -> int:
    return batch.main(STAGE, __doc__, argv, SCHEMA, CODE, check, Processor)


if __name__ == "__main__":
    sys.exit(main())
