"""facevoice: a reproducible pipeline for face-voice cross-modal association research."""

__version__ = "0.1.0"
