"""What produced an output: the package version and git state, and files' sha256."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from facevoice import __version__


def code_version() -> dict[str, str]:
    """{"facevoice": __version__, "git": `git describe --always --dirty` or "unknown"}."""
    git = "unknown"
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            git = out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return {"facevoice": __version__, "git": git}


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, read a megabyte at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
