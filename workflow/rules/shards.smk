def _shard_inputs(wildcards):
    stage = "faces" if wildcards.modality == "face" else "features"
    return per_clip(stage, shard_clips(wildcards))


rule shard:
    """One Parquet shard of one split and modality, written a clip at a time."""
    input:
        _shard_inputs,
    output:
        f"{OUT}/shards/{{split}}/{{modality}}-{{index}}.parquet",
    params:
        clips=shard_records,
        kinds=",".join(config["features"]["kinds"]),
        compression=config["shards"].get("compression", "zstd"),
    log:
        f"{OUT}/logs/shards/{{split}}/{{modality}}-{{index}}.log",
    conda:
        "../../envs/preprocess.yaml"
    resources:
        mem_mb=1000,
    shell:
        "{STAGE} facevoice.shards write --modality {wildcards.modality} --split {wildcards.split}"
        " --clips {params.clips:q} --kinds {params.kinds:q} --compression {params.compression}"
        " --output {output:q} {input:q} 2> {log:q}"


rule manifest:
    """Index every item of every shard (item, clip, identity, split, modality, shard, row)."""
    input:
        ALL_SHARDS,
    output:
        f"{OUT}/shards/manifest.parquet",
    params:
        root=f"{OUT}/shards",
    log:
        f"{OUT}/logs/shards/manifest.log",
    conda:
        "../../envs/preprocess.yaml"
    shell:
        "{STAGE} facevoice.shards manifest --root {params.root:q} --output {output:q} {input:q} 2> {log:q}"
