"""The frames stage on the sources a layout gives it besides videos: one image (the FAME
challenge's official test faces) and a folder of images."""

import io

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from facevoice.common.config import defaults
from facevoice.preprocess import frames


def _image(path, seed):
    rgb = np.random.default_rng(seed).integers(0, 255, size=(24, 32, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    return rgb


def test_one_image_is_one_frame(tmp_path):
    rgb = _image(tmp_path / "00000.jpg", 0)
    res = frames.decode_clip(str(tmp_path / "00000.jpg"), defaults("frames"))
    assert res.status == "ok" and res.table.num_rows == 1
    row = res.table.to_pylist()[0]
    assert (row["frame_index"], row["time_s"], row["height"], row["width"]) == (0, 0.0, 24, 32)
    decoded = np.asarray(Image.open(io.BytesIO(row["image"])))
    assert decoded.shape == rgb.shape
    # an unreadable image is a rejected clip with the reason, as a corrupt video is
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    bad = frames.decode_clip(str(tmp_path / "broken.jpg"), defaults("frames"))
    assert bad.status != "ok" and bad.table is None


def test_the_command_takes_one_image(tmp_path):
    import json

    _image(tmp_path / "face.png", 1)
    out = tmp_path / "frames.parquet"
    assert frames.main(["--input", str(tmp_path / "face.png"), "--output", str(out),
                        "--params", json.dumps(defaults("frames")), "--no-progress"]) == 0
    assert pq.read_table(out).column("frame_index").to_pylist() == [0]
