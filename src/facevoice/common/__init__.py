"""Common ground every layer may use: atomic file io, hashing, the code version, the run lock."""
