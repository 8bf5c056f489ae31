import hashlib


rule clip_table:
    """The clip table (identities, attributes, batches) that the manifest and the data report read.

    Re-written only when the clips or their metadata change."""
    output:
        f"{OUT}/clips.parquet",
    params:
        # computed for this job only (not at every parse of the workflow)
        digest=lambda w: hashlib.sha256(CLIPS.to_csv(index=False).encode()).hexdigest(),
    log:
        f"{OUT}/logs/clip_table.log",
    conda:
        "../../envs/preprocess.yaml"
    run:
        from facevoice.common.io import write_parquet

        write_parquet(CLIPS, output[0], {"stage": "clip_table", "digest": params.digest})


rule shard:
    """One Parquet shard of one split and modality: the identities of one bucket, a clip at a time."""
    input:
        shard_inputs,
    output:
        f"{OUT}/shards/{{split}}/{{modality}}-{{index}}.parquet",
    params:
        # voice shards only: a features kind changed rewrites the voice shards, not the face ones
        kinds=lambda w: ",".join(config["features"]["kinds"]) if w.modality == "voice" else "",
        compression=config["shards"]["compression"],
        heldout=shard_heldout,
    log:
        f"{OUT}/logs/shards/{{split}}/{{modality}}-{{index}}.log",
    conda:
        "../../envs/preprocess.yaml"
    resources:
        mem_mb=1000,
    shell:
        "\"$FACEVOICE_PYTHON\" -m facevoice.preprocess.shards write --modality {wildcards.modality} --split {wildcards.split}"
        " --kinds={params.kinds} --compression {params.compression} --heldout {params.heldout:q}"
        " --output {output:q} {input:q} 2> {log:q}"


rule manifest:
    """Index every item of every shard (item, clip, identity, split, modality, attributes, shard, row).

    Then removes the shard files of buckets no longer planned (README: Re-runs), each named in its log."""
    input:
        clips=rules.clip_table.output,
        shards=ALL_SHARDS,
    output:
        f"{OUT}/shards/manifest.parquet",
    params:
        root=parent_of("output"),
        buckets=BUCKETS,
    log:
        f"{OUT}/logs/shards/manifest.log",
    conda:
        "../../envs/preprocess.yaml"
    shell:
        "\"$FACEVOICE_PYTHON\" -m facevoice.preprocess.shards manifest --clips {input.clips:q} --root {params.root:q}"
        " --buckets {params.buckets} --output {output:q} 2> {log:q}"
