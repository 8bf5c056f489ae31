rule speech:
    """Decode one batch of clips' audio to mono at speech.sample_rate and keep the speech."""
    output:
        f"{OUT}/speech/{{identity}}/{{part}}.parquet",
    params:
        batch=batch_args,
        media=batch_media(2),  # the re-run trigger of its clips' media (common.smk)
        cfg=params_json("speech"),
        cache=f"{OUT}/cache/speech",
    log:
        f"{OUT}/logs/speech/{{identity}}/{{part}}.log",
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    shell:
        "OMP_NUM_THREADS={threads} \"$FACEVOICE_PYTHON\" -m facevoice.preprocess.speech {params.batch}"
        " --identity {wildcards.identity:q} --part {wildcards.part} --output {output:q}"
        " --params {params.cfg:q} --cache {params.cache:q} --no-progress 2> {log:q}"
