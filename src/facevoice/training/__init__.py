"""Training: the trainer, the embedding stage, method plug-ins (``methods/``), encoders (``nets``)
and losses. Imports :mod:`facevoice.data` and :mod:`facevoice.common`."""
