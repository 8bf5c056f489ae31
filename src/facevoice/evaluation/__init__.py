"""Evaluation: trial lists, metrics, scoring, the voice-to-face generation check, and the
comparison tables. May import :mod:`facevoice.training` (to embed and generate), the data
layer and common ground."""
