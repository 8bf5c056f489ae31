# The FAME challenge's protocol on a MAV-Celeb tree (facevoice.evaluation.fame): active only
# when config fame.train_language is set (one language, or a list: both of fame.version's for the
# challenge's four cells and overall score). Each method trains once per training language
# (`use rule train`, --language L: the train/val items in L alone) under fame/train/; the
# regular train/<method>/ models and their paths are those of a run without FAME. Per test
# language (fame.test_languages; []: every language of the test split) the test identities'
# trial lists, each FAME model's evaluation on them, a heard / unheard table with the mean EER
# per method beside the FOP baseline's published EERs, and per method the challenge's score
# files (for our own test identities' lists written in the challenge's format), zipped.
#
# Include after train.smk and compare.smk (it reuses the train, embed and evaluate rules); add
# FAME_TARGETS to `rule all`.
#
#   results/<dataset>/fame/train/<Train>/<method>/      model.pt, log.csv, curve.png, run.json
#   results/<dataset>/fame/embeddings/<Train>/<method>/test.parquet
#   results/<dataset>/fame/trials/<Language>/          facevoice trials --split test --language <Language>
#   results/<dataset>/fame/evaluation/<Train>/<Language>/<method>.json, <method>_roc.parquet
#   results/<dataset>/fame/table.md, table.csv, table.html   heard / unheard, mean EER, baseline rows
#   results/<dataset>/fame/lists/<Language>_test.txt    key voice_path face_path (paths: manifest items)
#   results/<dataset>/fame/lists/<Language>_labels.csv  key, label (the lists' hidden labels)
#   results/<dataset>/fame/submission/<method>/sub_score_<version>_<Train>_{heard,unheard}.txt
#   results/<dataset>/fame/submission/<method>.zip, <method>.json (keys per file; EER against the labels)
#
# With fame.official (the challenge's official test set: flat voices/ and faces/ per language and
# its <Language>_test.txt lists), each list line is a clip <Language>/test/<key> (its "identity"
# the language) run through the same frames (the given image as one frame), faces (MTCNN and
# alignment), speech and features rules as the run's clips, into shards and a manifest of their
# own; each FAME model embeds them and scores every line of the lists:
#
#   results/<dataset>/fame/official/clips.parquet, frames/, faces/, speech/, features/, shards/
#   results/<dataset>/fame/official/embeddings/<Train>/<method>/test.parquet
#   results/<dataset>/fame/official/submission/<method>/sub_score_<version>_<Train>_{heard,unheard}.txt
#   results/<dataset>/fame/official/submission/<method>.zip   the upload: the four files, flat
#   results/<dataset>/fame/official/submission/<method>.json  keys per file, lines imputed

from facevoice.data.layouts import FAME_OFFICIAL, official_table
from facevoice.data.mavceleb import fame_languages, official_lists
from facevoice.evaluation.fame import submission_name

try:
    _FAME = fame_languages(CLIPS, config)
    OFFICIAL = official_table(config)  # the challenge's official test set (fame.official), or None
except InputError as exc:
    raise WorkflowError(str(exc)) from None

FAME_TARGETS = []

if _FAME:
    FAME_TRAINS, FAME_LANGUAGES = _FAME
    FAME_METHODS = list(TRAIN["methods"])  # each trained here once per training language
    FAME_LANGUAGE = "|".join(FAME_LANGUAGES)
    FAME_TRAIN = "|".join(FAME_TRAINS)
    FAME_VERSION = config["fame"]["version"]  # checked by fame_languages
    # the challenge's files: per training language one heard and one unheard language (a third
    # would share a name)
    FAME_FILES = [submission_name(FAME_VERSION, t, lang) for t in FAME_TRAINS for lang in FAME_LANGUAGES]
    FAME_SUBMIT = len(set(FAME_FILES)) == len(FAME_FILES)
    if not FAME_SUBMIT:
        logger.warning(
            f"fame: test languages {FAME_LANGUAGES} give the score files {FAME_FILES}; the challenge's "
            f"files hold one heard and one unheard language, so no submission is written "
            f"(set fame.test_languages to the version's two languages)"
        )
    logger.info(f"fame: training on {', '.join(FAME_TRAINS)}; test languages {', '.join(FAME_LANGUAGES)}")
    FAME_TRAIN_FILES = paths.fame_train(OUT, "{train}", "{method}")  # facevoice.data.paths

    rule fame_train:
        """Train one method on one training language's train/val items (rule train's command
        with --language; rule train itself keeps the command of a run without FAME)."""
        input:
            manifest=rules.manifest.output,
            shards=rules.train.input.shards,
        output:
            **{
                **FAME_TRAIN_FILES,
                "curve": report(FAME_TRAIN_FILES["curve"], caption="../report/training_curve.rst", category="FAME",
                                labels={"method": "{method}", "training language": "{train}"}),
            },
        wildcard_constraints:
            method=TRAIN_NAME,
            train=FAME_TRAIN,
        params:
            cfg=train_params,
            root=parent_of("input", "manifest"),
            out=parent_of("output", "model"),
        log:
            f"{OUT}/logs/fame/train/{{train}}/{{method}}.log",
        conda:
            "../../envs/train.yaml"
        threads: TRAIN_THREADS
        resources:
            gpu=method_gpu,
            slurm_partition=method_partition,
            runtime=train_runtime,
            mem_mb=TRAIN["mem_mb"],
        shell:
            # (a language is a folder name of the tree, [A-Za-z0-9_-]: nothing to escape)
            TRAIN_SHELL.format(language=" --language {wildcards.train}")

    use rule embed as fame_embed with:
        input:
            model=rules.fame_train.output.model,
            manifest=rules.manifest.output,
            shards=lambda w: [shard_path(*k) for k in sorted(SHARDS) if k[0] == w.split],
        output:
            paths.fame_embeddings(OUT, "{train}", "{method}", "{split}"),
        wildcard_constraints:
            method=TRAIN_NAME,
            train=FAME_TRAIN,
            split="test",
        log:
            f"{OUT}/logs/fame/embed/{{train}}/{{method}}/{{split}}.log",

    rule fame_trials:
        """Trial lists of the test identities' items in one language."""
        input:
            manifest=rules.manifest.output[0],
        output:
            **paths.fame_trials(OUT, "{language}"),
        wildcard_constraints:
            language=FAME_LANGUAGE,
        params:
            out=parent_of("output", "summary"),
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
            embeddings=paths.fame_embeddings(OUT, "{train}", "{method}", "test"),
            trials=rules.fame_trials.output,
        output:
            **paths.fame_evaluation(OUT, "{train}", "{language}", "{method}"),
        wildcard_constraints:
            language=FAME_LANGUAGE,
            train=FAME_TRAIN,
            method=TRAIN_NAME,
        log:
            f"{OUT}/logs/fame/evaluate/{{train}}/{{language}}/{{method}}.log",

    rule fame_lists:
        """One language's verification trials as the challenge's test list, and its labels."""
        input:
            rules.fame_trials.output,
        output:
            **paths.fame_lists(OUT, "{language}"),
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

    FAME_RESULTS = [(m, t, lang) for m in FAME_METHODS for t in FAME_TRAINS for lang in FAME_LANGUAGES]

    rule fame_table:
        """Heard / unheard EER, AUC, minDCF and min Cllr of every trained method, beside the baseline's."""
        input:
            [paths.fame_evaluation(OUT, t, lang, m)["json"] for m, t, lang in FAME_RESULTS],
        output:
            **{
                **paths.fame_table(OUT),
                "html": report(paths.fame_table(OUT)["html"], caption="../report/fame_table.rst", category="FAME",
                               labels={"table": "heard / unheard"}),
            },
        params:
            dataset=config["dataset"],
            results=lambda w, input: " ".join(
                f"--result {m} {t} {lang} {shlex.quote(path)}" for (m, t, lang), path in zip(FAME_RESULTS, input)
            ),
        log:
            f"{OUT}/logs/fame/table.log",
        conda:
            "../../envs/evaluate.yaml"
        shell:
            "\"$FACEVOICE_PYTHON\" -m facevoice.evaluation.fame table"
            " --dataset {params.dataset:q} {params.results} --md {output.md:q} --csv {output.csv:q}"
            " --html {output.html:q} 2> {log:q}"

    rule fame_submission:
        """One method's score files for the test lists (the challenge's format), zipped."""
        input:
            embeddings=[paths.fame_embeddings(OUT, t, "{method}", "test") for t in FAME_TRAINS],
            lists=[paths.fame_lists(OUT, lang)["test"] for lang in FAME_LANGUAGES],
            labels=[paths.fame_lists(OUT, lang)["labels"] for lang in FAME_LANGUAGES],
        output:
            **paths.fame_submission(OUT, "{method}", sorted(set(FAME_FILES))),
        wildcard_constraints:
            method=TRAIN_NAME,
        params:
            models=lambda w, input: " ".join(
                f"--model {t} {shlex.quote(p)}" for t, p in zip(FAME_TRAINS, input.embeddings)
            ),
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
            " {params.models} {params.lists} --out {params.out:q} --zip {output.zip:q}"
            " --summary {output.summary:q} --params {params.cfg:q} 2> {log:q}"

    if OFFICIAL is not None:
        OFFICIAL_DIR = paths.fame(OUT, official=True)
        OFFICIAL_SOURCE = json.dumps(
            {"layout": FAME_OFFICIAL.name, **{k.name: config["fame"]["official"][k.name] for k in FAME_OFFICIAL.keys}},
            sort_keys=True,
        )
        OFFICIAL_BATCHES = batches_of(OFFICIAL)  # (language, part) -> (clip keys, face images, voices)
        OFFICIAL_SHARDS = shards_of(OFFICIAL)  # (split, modality, index) -> languages
        OFFICIAL_LANGUAGE = "|".join(sorted(set(OFFICIAL["identity"])))
        OFFICIAL_LISTS = [str(p) for p in official_lists(config["fame"]["official"]).values()]

        OFFICIAL_ARGS = batch_arguments(OFFICIAL_BATCHES, OFFICIAL_SOURCE, {i: i for i, _ in OFFICIAL_BATCHES})
        OFFICIAL_SHARD_FILES = [
            f"{OFFICIAL_DIR}/shards/{shard_relpath(s, m, int(i))}" for s, m, i in sorted(OFFICIAL_SHARDS)
        ]

        use rule frames as fame_official_frames with:
            input:
                batch_sources(1, OFFICIAL_BATCHES),
            output:
                f"{OFFICIAL_DIR}/frames/{{identity}}/{{part}}.parquet",
            wildcard_constraints:
                identity=OFFICIAL_LANGUAGE,
            params:
                batch=OFFICIAL_ARGS,
            log:
                f"{OUT}/logs/fame/official/frames/{{identity}}/{{part}}.log",

        use rule faces as fame_official_faces with:
            input:
                rules.fame_official_frames.output,
            output:
                f"{OFFICIAL_DIR}/faces/{{identity}}/{{part}}.parquet",
            wildcard_constraints:
                identity=OFFICIAL_LANGUAGE,
            log:
                f"{OUT}/logs/fame/official/faces/{{identity}}/{{part}}.log",

        use rule speech as fame_official_speech with:
            input:
                batch_sources(2, OFFICIAL_BATCHES),
            output:
                f"{OFFICIAL_DIR}/speech/{{identity}}/{{part}}.parquet",
            wildcard_constraints:
                identity=OFFICIAL_LANGUAGE,
            params:
                batch=OFFICIAL_ARGS,
            log:
                f"{OUT}/logs/fame/official/speech/{{identity}}/{{part}}.log",

        use rule features as fame_official_features with:
            input:
                rules.fame_official_speech.output,
            output:
                f"{OFFICIAL_DIR}/features/{{identity}}/{{part}}.parquet",
            wildcard_constraints:
                identity=OFFICIAL_LANGUAGE,
            log:
                f"{OUT}/logs/fame/official/features/{{identity}}/{{part}}.log",

        rule fame_official_clip_table:
            """The official test set's clip table (a clip per list line), which its manifest reads."""
            output:
                f"{OFFICIAL_DIR}/clips.parquet",
            params:
                digest=lambda w: hashlib.sha256(OFFICIAL.to_csv(index=False).encode()).hexdigest(),
            log:
                f"{OUT}/logs/fame/official/clip_table.log",
            conda:
                "../../envs/preprocess.yaml"
            run:
                from facevoice.common.io import write_parquet

                write_parquet(OFFICIAL, output[0], {"stage": "clip_table", "digest": params.digest})

        use rule shard as fame_official_shard with:
            input:
                lambda w: [
                    f"{OFFICIAL_DIR}/{'faces' if w.modality == 'face' else 'features'}/{i}/{p}.parquet"
                    for i, p in sorted(OFFICIAL_BATCHES)
                    if i in OFFICIAL_SHARDS[(w.split, w.modality, w.index)]
                ],
            output:
                f"{OFFICIAL_DIR}/shards/{{split}}/{{modality}}-{{index}}.parquet",
            params:
                heldout="[]",
            log:
                f"{OUT}/logs/fame/official/shards/{{split}}/{{modality}}-{{index}}.log",

        use rule manifest as fame_official_manifest with:
            input:
                clips=rules.fame_official_clip_table.output,
                shards=OFFICIAL_SHARD_FILES,
            output:
                f"{OFFICIAL_DIR}/shards/manifest.parquet",
            log:
                f"{OUT}/logs/fame/official/manifest.log",

        use rule embed as fame_official_embed with:
            input:
                model=rules.fame_train.output.model,
                manifest=rules.fame_official_manifest.output,
                shards=OFFICIAL_SHARD_FILES,
            output:
                paths.fame_embeddings(OUT, "{train}", "{method}", "{split}", official=True),
            wildcard_constraints:
                method=TRAIN_NAME,
                train=FAME_TRAIN,
                split="test",
            log:
                f"{OUT}/logs/fame/official/embed/{{train}}/{{method}}/{{split}}.log",

        OFFICIAL_FILES = sorted(
            {submission_name(FAME_VERSION, t, lang) for t in FAME_TRAINS for lang in set(OFFICIAL["language"])}
        )

        use rule fame_submission as fame_official_submission with:
            input:
                embeddings=[paths.fame_embeddings(OUT, t, "{method}", "test", official=True) for t in FAME_TRAINS],
                lists=OFFICIAL_LISTS,
            output:
                **paths.fame_submission(OUT, "{method}", OFFICIAL_FILES, official=True),
            params:
                lists=lambda w, input: " ".join(f"--list {shlex.quote(p)}" for p in input.lists) + " --official",
            log:
                f"{OUT}/logs/fame/official/submission/{{method}}.log",

    FAME_TARGETS = expand(rules.fame_lists.output, language=FAME_LANGUAGES)
    if FAME_METHODS:
        FAME_TARGETS += rules.fame_table.output
        if FAME_SUBMIT:
            FAME_TARGETS += expand(rules.fame_submission.output, method=FAME_METHODS)
        if OFFICIAL is not None:
            FAME_TARGETS += expand(rules.fame_official_submission.output, method=FAME_METHODS)
