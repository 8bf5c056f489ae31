rule shard:
    """One Parquet shard of one split and modality, written a clip at a time."""
    input:
        shard_inputs,
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
        "\"$FACEVOICE_PYTHON\" -m facevoice.shards write --modality {wildcards.modality} --split {wildcards.split}"
        " --clips {params.clips:q} --kinds {params.kinds:q} --compression {params.compression}"
        " --output {output:q} {input:q} 2> {log:q}"


rule manifest:
    """Index every item of every shard (item, clip, identity, split, modality, shard, row)."""
    input:
        ALL_SHARDS,
    output:
        f"{OUT}/shards/manifest.parquet",
    params:
        root=parent_of("output"),
    log:
        f"{OUT}/logs/shards/manifest.log",
    conda:
        "../../envs/preprocess.yaml"
    shell:
        "\"$FACEVOICE_PYTHON\" -m facevoice.shards manifest --root {params.root:q} --output {output:q} {input:q} 2> {log:q}"
