"""The data layer: input layouts and the clip table, the batch-file format of the preprocessing
stages, the manifest and the shard reader. Imports only :mod:`facevoice.common`."""
