# The FAME challenge's protocol on a MAV-Celeb tree (facevoice.evaluation.fame): active only
# when config fame.train_language is set. The methods train on that language alone (train.smk's
# --language); per test language (fame.test_languages; []: every language of the test split)
# the test identities' trial lists, each trained method's evaluation on them, a heard / unheard
# table beside the FOP baseline's published EERs, and per method the challenge's score files
# (for our own test identities' lists written in the challenge's format), zipped.
#
# Include after compare.smk (it reuses the evaluate rule); add FAME_TARGETS to `rule all`.
#
#   results/<dataset>/fame/trials/<Language>/          facevoice trials --split test --language <Language>
#   results/<dataset>/fame/evaluation/<Language>/<method>.json, <method>_roc.parquet
#   results/<dataset>/fame/table.md, table.csv          heard / unheard, mean EER, baseline rows
#   results/<dataset>/fame/lists/<Language>_test.txt    key voice_path face_path (paths: manifest items)
#   results/<dataset>/fame/lists/<Language>_labels.csv  key, label (the lists' hidden labels)
#   results/<dataset>/fame/submission/<method>/sub_score_<version>_<TrainLanguage>_{heard,unheard}.txt
#   results/<dataset>/fame/submission/<method>.zip, <method>.json (keys per file; EER against the labels)

from facevoice.data.mavceleb import fame_languages
from facevoice.evaluation.fame import submission_name

try:
    _FAME = fame_languages(CLIPS, config)
except InputError as exc:
    raise WorkflowError(str(exc)) from None

FAME_TARGETS = []

if _FAME:
    FAME_TRAIN, FAME_LANGUAGES = _FAME
    FAME_DIR = f"{OUT}/fame"
    FAME_METHODS = list(TRAIN["methods"])  # the methods trained here (on FAME_TRAIN alone)
    FAME_LANGUAGE = "|".join(FAME_LANGUAGES)
    # the challenge's files: one heard and one unheard language (a third would share a name)
    FAME_VERSION = config["fame"]["version"]  # checked by fame_languages
    FAME_FILES = [submission_name(FAME_VERSION, FAME_TRAIN, lang) for lang in FAME_LANGUAGES]
    FAME_SUBMIT = len(set(FAME_FILES)) == len(FAME_FILES)
    if not FAME_SUBMIT:
        logger.warning(
            f"fame: test languages {FAME_LANGUAGES} give the score files {FAME_FILES}; the challenge's "
            f"files hold one heard and one unheard language, so no submission is written "
            f"(set fame.test_languages to {FAME_TRAIN} and one other)"
        )
    logger.info(f"fame: training on {FAME_TRAIN}; test languages {', '.join(FAME_LANGUAGES)}")

    rule fame_trials:
        """Trial lists of the test identities' items in one language."""
        input:
            manifest=rules.manifest.output[0],
        output:
            multiext(
                f"{FAME_DIR}/trials/{{language}}/",
                "verification.parquet",
                "matching.parquet",
                "retrieval.parquet",
                "summary.json",
            ),
        wildcard_constraints:
            language=FAME_LANGUAGE,
        params:
            out=parent_of("output"),
            seed=EVAL["seed"],
            cfg=eval_params("verification", "matching", "retrieval", "age_cuts"),
        log:
            f"{OUT}/logs/fame/trials/{{language}}.log",
        conda:
            "../../envs/evaluate.yaml"
        shell:
            "\"$FACEVOICE_PYTHON\" -m facevoice.evaluation.trials --manifest {input.manifest:q} --split test"
            " --language {wildcards.language} --out {params.out:q} --seed {params.seed} --params {params.cfg:q}"
            " 2> {log:q}"

    use rule evaluate as fame_evaluate with:
        input:
            embeddings=f"{OUT}/embeddings/{{method}}/test.parquet",
            trials=rules.fame_trials.output,
        output:
            json=f"{FAME_DIR}/evaluation/{{language}}/{{method}}.json",
            roc=f"{FAME_DIR}/evaluation/{{language}}/{{method}}_roc.parquet",
        wildcard_constraints:
            language=FAME_LANGUAGE,
            method=TRAIN_NAME,
        log:
            f"{OUT}/logs/fame/evaluate/{{language}}/{{method}}.log",

    rule fame_lists:
        """One language's verification trials as the challenge's test list, and its labels."""
        input:
            rules.fame_trials.output,
        output:
            test=f"{FAME_DIR}/lists/{{language}}_test.txt",
            labels=f"{FAME_DIR}/lists/{{language}}_labels.csv",
        wildcard_constraints:
            language=FAME_LANGUAGE,
        params:
            trials=parent_of("input"),
            out=parent_of("output", "test"),
        log:
            f"{OUT}/logs/fame/lists/{{language}}.log",
        conda:
            "../../envs/evaluate.yaml"
        shell:
            "\"$FACEVOICE_PYTHON\" -m facevoice.evaluation.fame lists --trials {params.trials:q}"
            " --language {wildcards.language} --out {params.out:q} 2> {log:q}"

    FAME_RESULTS = [(m, lang) for m in FAME_METHODS for lang in FAME_LANGUAGES]

    rule fame_table:
        """Heard / unheard EER, AUC and minDCF of every trained method, beside the baseline's."""
        input:
            [f"{FAME_DIR}/evaluation/{lang}/{m}.json" for m, lang in FAME_RESULTS],
        output:
            md=report(f"{FAME_DIR}/table.md", caption="../report/fame_table.rst", category="FAME",
                      labels={"file": "table.md"}),
            csv=report(f"{FAME_DIR}/table.csv", caption="../report/fame_table.rst", category="FAME",
                       labels={"file": "table.csv"}),
        params:
            train=FAME_TRAIN,
            dataset=config["dataset"],
            results=lambda w, input: " ".join(
                f"--result {m} {lang} {shlex.quote(path)}" for (m, lang), path in zip(FAME_RESULTS, input)
            ),
        log:
            f"{OUT}/logs/fame/table.log",
        conda:
            "../../envs/evaluate.yaml"
        shell:
            "\"$FACEVOICE_PYTHON\" -m facevoice.evaluation.fame table --train-language {params.train:q}"
            " --dataset {params.dataset:q} {params.results} --md {output.md:q} --csv {output.csv:q} 2> {log:q}"

    rule fame_submission:
        """One method's score files for the test lists (the challenge's format), zipped."""
        input:
            embeddings=f"{OUT}/embeddings/{{method}}/test.parquet",
            lists=expand(f"{FAME_DIR}/lists/{{language}}_test.txt", language=FAME_LANGUAGES),
            labels=expand(f"{FAME_DIR}/lists/{{language}}_labels.csv", language=FAME_LANGUAGES),
        output:
            scores=[f"{FAME_DIR}/submission/{{method}}/{name}" for name in sorted(set(FAME_FILES))],
            zip=f"{FAME_DIR}/submission/{{method}}.zip",
            summary=f"{FAME_DIR}/submission/{{method}}.json",
        wildcard_constraints:
            method=TRAIN_NAME,
        params:
            train=FAME_TRAIN,
            version=FAME_VERSION,
            out=parent_of("output", "scores"),
            lists=lambda w, input: " ".join(f"--list {shlex.quote(p)}" for p in input.lists),
            cfg=eval_params("dcf"),
        log:
            f"{OUT}/logs/fame/submission/{{method}}.log",
        conda:
            "../../envs/evaluate.yaml"
        shell:
            "\"$FACEVOICE_PYTHON\" -m facevoice.evaluation.fame submit --version {params.version}"
            " --train-language {params.train:q}"
            " --embeddings {input.embeddings:q} {params.lists} --out {params.out:q} --zip {output.zip:q}"
            " --summary {output.summary:q} --params {params.cfg:q} 2> {log:q}"

    FAME_TARGETS = expand(rules.fame_lists.output, language=FAME_LANGUAGES)
    if FAME_METHODS:
        FAME_TARGETS += rules.fame_table.output
        if FAME_SUBMIT:
            FAME_TARGETS += expand(rules.fame_submission.output, method=FAME_METHODS)
