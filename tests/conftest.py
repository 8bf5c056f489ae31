"""Shared fixtures.

``demo_corpus`` builds the embedded demo corpus once per test session (and reuses it across
sessions while it is up to date): downloads are cached in ``<repo>/.cache/facevoice/demo``,
the corpus is written to ``<repo>/.cache/facevoice/test-demo``. A cold first build fetches
about 280 MB of packages and takes two to three minutes on two cores; later sessions find
it up to date in about a second.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from facevoice.demo.build import demo_settings

REPO = Path(__file__).resolve().parents[1]
DEMO_CACHE = REPO / ".cache" / "facevoice" / "demo"
DEMO_OUT = REPO / ".cache" / "facevoice" / "test-demo"
# the demo corpus exactly as config.yaml builds it (so `facevoice demo` finds it up to date)
DEMO = {**demo_settings(REPO / "config.yaml"), "out": DEMO_OUT, "cache": DEMO_CACHE}
DEMO_SEED = int(DEMO["seed"])
DEMO_CLIPS = int(DEMO["clips_per_identity"])
DEMO_VIDEOS = int(DEMO["videos_per_identity"])


@pytest.fixture(scope="session")
def demo_corpus() -> Path:
    """The demo corpus (VoxCeleb videos layout + meta, splits, provenance, corpus.json)."""
    from facevoice.demo.build import build_demo

    return build_demo(DEMO, progress=False)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """(manifest, shards folder) of a synthetic corpus whose faces and voices share an identity
    signal (train 32, val 8, test 8 identities), written once per session for the trainer's tests."""
    from facevoice.testing import synthetic_shards

    root = tmp_path_factory.mktemp("corpus")
    manifest = synthetic_shards(root, identities={"train": 32, "val": 8, "test": 8}, clips=2, faces_per_clip=4,
                                image_size=32, frames=(60, 120), seed=0)
    return manifest, root / "shards"


def pytest_collection_modifyitems(config, items):
    """The files holding slow tests (Snakemake end to end, minutes) first, every file's tests in
    their order: `make test`'s two workers (pytest-xdist, a file per worker, in this order) start
    the long files first and finish together instead of one waiting for the other's last file."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)  # a stable sort: the order within is kept
