"""What every part of the demo builder shares: its errors, its log, seeded random numbers and
the ffmpeg it runs."""

from __future__ import annotations

import hashlib
import sys
from typing import Any

import numpy as np

#: recorded in corpus.json and in the cached licence texts; a new version rebuilds both
BUILDER_VERSION = "1.0"


class DemoError(RuntimeError):
    """The demo corpus cannot be built; the message says why and what to do."""


class VerificationError(DemoError):
    """A downloaded or extracted file does not match the sha256 recorded in the catalog."""


def log(message: str) -> None:
    print(f"[demo] {message}", file=sys.stderr, flush=True)


def seed_int(*parts: Any) -> int:
    """A 64-bit seed from any parts, the same on every platform."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def seeded_rng(*parts: Any) -> np.random.Generator:
    return np.random.default_rng(seed_int(*parts))


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()
