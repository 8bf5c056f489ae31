rule frames:
    """Decode the frames of one batch of clips (one identity, or a part of it) at frames.fps."""
    output:
        f"{OUT}/frames/{{identity}}/{{part}}.parquet",
    params:
        batch=batch_args,
        media=batch_media(1),  # the re-run trigger of its clips' media (common.smk)
        cfg=params_json("frames"),
        cache=f"{OUT}/cache/frames",
    log:
        f"{OUT}/logs/frames/{{identity}}/{{part}}.log",
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    shell:
        "OMP_NUM_THREADS={threads} \"$FACEVOICE_PYTHON\" -m facevoice.preprocess.frames {params.batch}"
        " --identity {wildcards.identity:q} --part {wildcards.part} --output {output:q}"
        " --params {params.cfg:q} --cache {params.cache:q} --no-progress 2> {log:q}"
