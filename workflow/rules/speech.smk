rule speech:
    """Decode one clip's audio to mono at speech.sample_rate and keep the speech."""
    input:
        clip_source("speech_source"),
    output:
        f"{OUT}/speech/{{identity}}/{{video}}/{{clip}}.parquet",
    params:
        source=clip_source_path("speech_source"),
        cfg=params_json("speech"),
    log:
        f"{OUT}/logs/speech/{{identity}}/{{video}}/{{clip}}.log",
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    shell:
        "OMP_NUM_THREADS={threads} \"$FACEVOICE_PYTHON\" -m facevoice.speech --input {params.source:q} --output {output:q} --params {params.cfg:q} 2> {log:q}"
