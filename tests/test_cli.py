"""The ``facevoice`` dispatcher's conventions: usage errors, one name per switch, a light --help."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import HANG_S, REPO

from facevoice import cli

HEAVY = ("torch", "sklearn", "librosa", "matplotlib")
# run in a fresh interpreter: ``facevoice COMMAND --help``, then what it printed and which heavy
# libraries it imported
PROBE = """
import contextlib, io, json, sys
from facevoice.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        code = main([sys.argv[1], "--help"])
    except SystemExit as e:
        code = e.code
heavy = sorted(m for m in %r if m in sys.modules)
print(json.dumps({"code": code, "help": out.getvalue(), "heavy": heavy}))
""" % (HEAVY,)


def test_bare_facevoice_is_a_usage_error(capsys):
    assert cli.main([]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "usage: facevoice COMMAND" in err and "train" in err


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_prints_the_usage_and_succeeds(capsys, flag):
    assert cli.main([flag]) == 0
    out, err = capsys.readouterr()
    assert "usage: facevoice COMMAND" in out and err == ""


def test_an_unknown_command_is_a_usage_error(capsys):
    assert cli.main(["trian"]) == 2
    assert "unknown command 'trian'" in capsys.readouterr().err


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_command_help_imports_no_heavy_library(command):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"),
                                                                       os.environ.get("PYTHONPATH")]))}
    res = subprocess.run([sys.executable, "-c", PROBE, command], capture_output=True, text=True,
                         env=env, timeout=HANG_S)
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.splitlines()[-1])
    assert got["code"] == 0, got
    assert f"facevoice {command}" in got["help"], got["help"]
    assert got["heavy"] == [], f"facevoice {command} --help imported {got['heavy']}"
    # one name for one switch: every command that can hush its progress calls it --no-progress
    assert "--quiet" not in got["help"] and "--progress" not in got["help"].replace("--no-progress", "")


def test_a_light_parser_is_the_commands_own(capsys):
    """train / embed / generate: --help shows the parser the module's main parses with, and a
    usage error is caught before the heavy import."""
    import importlib

    def printed(call, argv):
        with pytest.raises(SystemExit) as e:
            call(argv)
        out, err = capsys.readouterr()
        return e.value.code, out, err

    for command in cli.PARSERS:
        code, light, _ = printed(cli.main, [command, "--help"])
        assert code == 0 and light
        module = importlib.import_module(cli.COMMANDS[command][0])
        assert printed(module.main, ["--help"]) == (0, light, "")
        code, _, err = printed(cli.main, [command, "--no-such-option"])
        assert code == 2 and f"facevoice {command}: error:" in err


def test_train_help_lists_the_trainers_options(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for option in ("--method", "--profile", "--set", "--no-progress", "--language", "--list"):
        assert option in out
