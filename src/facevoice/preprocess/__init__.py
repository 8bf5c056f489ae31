"""The preprocessing stages, one module per rule file: frames, faces, speech, features, shards,
report. A stage imports :mod:`facevoice.data` and :mod:`facevoice.common`, never another stage."""
