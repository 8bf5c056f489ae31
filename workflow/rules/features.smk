rule features:
    """Spectrogram, log-mel and MFCC of one clip's speech."""
    input:
        rules.speech.output,
    output:
        f"{OUT}/features/{{identity}}/{{video}}/{{clip}}.parquet",
    params:
        cfg=params_json("features"),
    log:
        f"{OUT}/logs/features/{{identity}}/{{video}}/{{clip}}.log",
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    shell:
        "OMP_NUM_THREADS={threads} \"$FACEVOICE_PYTHON\" -m facevoice.features --input {input:q} --output {output:q} --params {params.cfg:q} 2> {log:q}"
