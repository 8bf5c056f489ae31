"""Arrow schemas of the records one stage writes and another reads."""

from __future__ import annotations

import pyarrow as pa

# One row per detected face of a clip: written by the faces stage, read into the face shards.
FACES = pa.schema([
    ("frame_index", pa.int32()),
    ("time_s", pa.float64()),
    ("prob", pa.float32()),
    ("box", pa.list_(pa.float32(), 4)),
    ("landmarks", pa.list_(pa.float32(), 10)),
    ("n_faces", pa.int32()),
    ("image", pa.binary()),
])
