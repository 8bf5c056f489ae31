import io

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import image_video, sample_face, two_faces_image
from PIL import Image

from facevoice.data.batch import BatchReader
from facevoice.preprocess import faces, frames

PARAMS = dict(image_size=112, margin=10, min_face_size=40, thresholds=[0.6, 0.7, 0.7], factor=0.709,
              min_prob=0.95, multiple="reject", align="landmarks", batch_size=4, gpu_batch_size=64, device="cpu")


def test_select_indices_spreads_over_clip():
    assert frames.select_indices(3, 8) == [0, 1, 2]
    assert frames.select_indices(10, 3) == [0, 4, 9]


def test_params_are_complete_sections_checked_by_the_schema():
    """A key left out is an error naming it (no module default); values are the schema's to check."""
    assert faces.check(PARAMS) == PARAMS and frames.check({"fps": 1.0, "max_per_clip": 8})
    with pytest.raises(ValueError, match=r"'faces.min_face_size' is missing"):
        faces.check({k: v for k, v in PARAMS.items() if k != "min_face_size"})
    with pytest.raises(ValueError, match=r"'frames.max_per_clip' is missing"):
        frames.check({"fps": 1.0})
    with pytest.raises(ValueError, match=r"faces.multiple.*'biggest'.*reject, largest, central, probable"):
        faces.check({**PARAMS, "multiple": "biggest"})


def test_similarity_transform_recovers_a_known_one():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    angle, scale, t = 0.3, 1.7, np.array([5.0, -2.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = src @ rot.T + t
    m = faces.similarity_transform(src, dst)
    np.testing.assert_allclose(m[:, :2], rot, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], t, atol=1e-9)


@pytest.fixture(scope="module")
def one_face_frames(tmp_path_factory):
    d = tmp_path_factory.mktemp("one")
    video = image_video(d / "v.mp4", sample_face(), seconds=3.0, extra_vf="eq=brightness=0.05")
    out = d / "frames.parquet"
    meta = frames.run(str(video), str(out), {"fps": 1.0, "max_per_clip": 8})
    assert meta["status"] == "ok"
    return out


def test_frames_decodes_at_fps_and_caps(tmp_path, one_face_frames):
    t = pq.read_table(one_face_frames)
    assert t.column("frame_index").to_pylist() == [0, 1, 2]
    assert t.column("time_s").to_pylist() == [0.0, 1.0, 2.0]
    capped = tmp_path / "capped.parquet"
    video = image_video(tmp_path / "long.mp4", sample_face(), seconds=6.0)
    frames.run(str(video), str(capped), {"fps": 2.0, "max_per_clip": 3})
    assert pq.read_table(capped).column("frame_index").to_pylist() == [0, 6, 11]


def test_faces_aligns_one_face_with_landmarks(tmp_path, one_face_frames):
    out = tmp_path / "faces.parquet"
    meta = faces.run(str(one_face_frames), str(out), PARAMS)[0]
    table = pq.read_table(out)
    assert meta["status"] == BatchReader(out).records[0]["status"] == "ok"
    assert table.num_rows == 3
    rows = table.to_pylist()
    assert all(r["n_faces"] == 1 and r["prob"] > 0.95 for r in rows)
    img = Image.open(io.BytesIO(rows[0]["image"]))
    assert img.size == (112, 112)
    # The eyes land on the template's eye positions: re-detect on the aligned crop.
    det = faces.make_detector({**PARAMS, "min_face_size": 20})
    _, _, pts = det.detect(img.convert("RGB"), landmarks=True)
    found = np.asarray(pts[0], dtype=float)
    assert abs(found[0, 1] - found[1, 1]) < 3  # eyes level: rotation removed
    # 5-point least squares: the landmarks sit near the template (mean error under 8 of 112 px)
    assert np.linalg.norm(found - faces.template(112, 10), axis=1).mean() < 8


def test_box_alignment_uses_facenet_extract_face(tmp_path, one_face_frames):
    out = tmp_path / "faces.parquet"
    faces.run(str(one_face_frames), str(out), {**PARAMS, "align": "box", "image_size": 96})
    img = Image.open(io.BytesIO(pq.read_table(out).column("image")[0].as_py()))
    assert img.size == (96, 96)


@pytest.mark.parametrize("policy,status", [("reject", "rejected"), ("largest", "ok"), ("central", "ok")])
def test_several_faces_follow_the_policy(tmp_path, policy, status):
    video = image_video(tmp_path / "two.mp4", str(two_faces_image(tmp_path / "two.png")), seconds=2.0,
                        size="640:272")
    frames.run(str(video), str(tmp_path / "f.parquet"), {"fps": 1.0, "max_per_clip": 2})
    meta = faces.run(str(tmp_path / "f.parquet"), str(tmp_path / "faces.parquet"), {**PARAMS, "multiple": policy})[0]
    assert meta["status"] == status
    if status == "rejected":
        assert "several faces" in meta["reason"]
    else:
        assert pq.read_table(tmp_path / "faces.parquet").column("n_faces").to_pylist() == [2, 2]


def test_no_face_is_rejected(tmp_path):
    video = image_video(tmp_path / "gray.mp4", None, seconds=2.0)
    frames.run(str(video), str(tmp_path / "f.parquet"), {"fps": 1.0, "max_per_clip": 4})
    meta = faces.run(str(tmp_path / "f.parquet"), str(tmp_path / "faces.parquet"), PARAMS)[0]
    assert meta["status"] == "rejected" and meta["reason"] == "no face in any frame"
    assert pq.read_table(tmp_path / "faces.parquet").num_rows == 0


def test_corrupt_and_truncated_videos_are_rejected_and_passed_down(tmp_path):
    good = image_video(tmp_path / "good.mp4", sample_face(), seconds=3.0)
    data = good.read_bytes()
    (tmp_path / "trunc.mp4").write_bytes(data[: len(data) // 3])
    (tmp_path / "junk.mp4").write_bytes(np.random.default_rng(1).bytes(5000))
    for name in ("trunc", "junk"):
        out = tmp_path / f"{name}.parquet"
        meta = frames.run(str(tmp_path / f"{name}.mp4"), str(out), {"fps": 1.0, "max_per_clip": 4})
        assert meta["status"] == "rejected", name
        assert meta["reason"].startswith(("corrupt or truncated video", "no decodable frame")), meta["reason"]
        down = faces.run(str(out), str(tmp_path / f"{name}-faces.parquet"), PARAMS)[0]
        assert down["status"] == "rejected" and down["reason"].startswith("frames: ")


def test_missing_face_track_folder_is_a_reject(tmp_path):
    meta = frames.run(str(tmp_path / "absent"), str(tmp_path / "f.parquet"), {"fps": 1.0, "max_per_clip": 4})
    assert meta["status"] == "rejected" and "no face frames" in meta["reason"]


def test_jpeg_folder_input(tmp_path):
    d = tmp_path / "track"
    d.mkdir()
    for i in range(1, 6):
        Image.open(sample_face()).save(d / f"{i:04d}.jpg")
    meta = frames.run(str(d), str(tmp_path / "f.parquet"), {"fps": 1.0, "max_per_clip": 3})
    assert meta["status"] == "ok"
    assert pq.read_table(tmp_path / "f.parquet").column("frame_index").to_pylist() == [0, 2, 4]


def test_a_clip_shorter_than_one_frame_interval_says_so(tmp_path):
    video = image_video(tmp_path / "short.mp4", sample_face(), seconds=0.2)
    meta = frames.run(str(video), str(tmp_path / "f.parquet"), {"fps": 1.0, "max_per_clip": 4})
    assert meta["status"] == "rejected"
    assert meta["reason"].startswith("the video is 0.2"), meta["reason"]
    assert "shorter than one frame interval at frames.fps 1 (1.00 s)" in meta["reason"]
