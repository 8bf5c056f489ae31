rule features:
    """Spectrogram, log-mel and MFCC of one batch of clips' speech."""
    input:
        rules.speech.output,
    output:
        f"{OUT}/features/{{identity}}/{{part}}.parquet",
    params:
        cfg=params_json("features"),
        cache=f"{OUT}/cache/features",
    log:
        f"{OUT}/logs/features/{{identity}}/{{part}}.log",
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    shell:
        "OMP_NUM_THREADS={threads} \"$FACEVOICE_PYTHON\" -m facevoice.preprocess.features --input {input:q} --output {output:q}"
        " --params {params.cfg:q} --cache {params.cache:q} --no-progress 2> {log:q}"
