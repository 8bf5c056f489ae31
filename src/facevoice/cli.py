"""The ``facevoice`` command: a thin dispatcher to each module's ``main(argv)``.

Modules are imported only when their command runs, so ``facevoice --help`` stays fast and
a command never pays for another's imports (torch, librosa); ``facevoice COMMAND --help``
imports no torch, sklearn, librosa or matplotlib either (see ``PARSERS``).
"""

from __future__ import annotations

import importlib
import sys

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("facevoice.demo.build", "build the embedded demo corpus from registry packages"),
    "check-config": ("facevoice.check", "check a config and its input as a run does, before any job"),
    "clean": ("facevoice.data.clean", "list (or --delete) batch files, cache entries and shards no batch uses"),
    "unlock": ("facevoice.common.lock", "remove the lock a killed run left on its results folder"),
    "frames": ("facevoice.preprocess.frames", "decode a batch of clips' frames (a pipeline stage)"),
    "faces": ("facevoice.preprocess.faces", "detect and align a batch of clips' faces (a pipeline stage)"),
    "speech": ("facevoice.preprocess.speech", "decode and speech-filter a batch of clips' audio (a pipeline stage)"),
    "features": ("facevoice.preprocess.features", "compute a batch of clips' voice features (a pipeline stage)"),
    "shards": ("facevoice.preprocess.shards", "write Parquet shards and the manifest (a pipeline stage)"),
    "report": ("facevoice.preprocess.report", "write the data report (a pipeline stage)"),
    "train": ("facevoice.training.train", "train one method on the shards"),
    "embed": ("facevoice.training.embed", "embed a split's faces and voices with a trained model"),
    "generate": ("facevoice.evaluation.generate", "draw and judge faces generated from voices (voice2face)"),
    "trials": ("facevoice.evaluation.trials", "generate or import evaluation trial lists"),
    "evaluate": ("facevoice.evaluation.evaluate", "score embeddings on trial lists"),
    "compare": ("facevoice.evaluation.compare", "write comparison tables and plots"),
    "fame": ("facevoice.evaluation.fame", "FAME: heard/unheard tables, test lists, score files (MAV-Celeb)"),
}

# commands whose module imports torch at import time: their parser lives in a light module
# ("module:function"), which answers --help and usage errors at once; the command's main
# parses its arguments again with the same parser once the module is imported
PARSERS: dict[str, str] = {
    "train": "facevoice.training.options:train_parser",
    "embed": "facevoice.training.options:embed_parser",
    "generate": "facevoice.evaluation.options:generate_parser",
}


def _usage() -> str:
    lines = ["usage: facevoice COMMAND [ARGS...]", "", "commands:"]
    for name, (_, text) in COMMANDS.items():
        lines.append(f"  {name:<13} {text}")
    lines.append("")
    lines.append("Run 'facevoice COMMAND --help' for a command's options.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:  # argparse's convention for a usage error: the usage on stderr, status 2
        print(_usage(), file=sys.stderr)
        return 2
    if argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from facevoice import __version__

        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"facevoice: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    if name in PARSERS:  # answer --help and usage errors before the module's heavy imports
        light, func = PARSERS[name].split(":")
        getattr(importlib.import_module(light), func)().parse_args(rest)
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
