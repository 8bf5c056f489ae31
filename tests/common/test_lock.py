"""The results folder's lock: taken atomically, refused to a second run naming the holder,
taken over from a dead run of this host, released only by its holder, removed by `facevoice unlock`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import HANG_S

from facevoice import cli
from facevoice.common.lock import LOCK_NAME, LockError, acquire, holder_state, lock_path

SRC = str(Path(__file__).resolve().parents[2] / "src")


def other_process(folder: Path, then: str) -> subprocess.Popen:
    """A separate process that takes the lock of ``folder``, prints 'held', then runs ``then``."""
    code = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {SRC!r})
        from facevoice.common.lock import acquire
        lock = acquire({str(folder)!r}, command="snakemake --cores 2 (the other run)")
        print("held", flush=True)
        {then}
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, cwd=folder.parent)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_acquire_writes_the_holder_and_release_removes_it(tmp_path):
    folder = tmp_path / "results" / "demo"  # created by acquire
    lock = acquire(folder, command="snakemake --cores 1")
    info = json.loads((folder / LOCK_NAME).read_text())
    assert info["host"] == socket.gethostname() and info["pid"] == os.getpid()
    assert info["cwd"] == os.getcwd() and info["command"] == "snakemake --cores 1" and info["started"]
    assert lock.replaced is None and lock_path(folder) == folder / LOCK_NAME
    assert lock.release() and not (folder / LOCK_NAME).exists()
    assert not lock.release()  # a second release is a no-op
    acquire(folder).release()  # free again


def test_second_acquire_is_refused_naming_the_holder(tmp_path):
    folder = tmp_path / "demo"
    other = other_process(folder, "sys.stdin.read(); lock.release()")  # holds it until its stdin closes
    try:
        held = json.loads((folder / LOCK_NAME).read_text())
        with pytest.raises(LockError) as err:
            acquire(folder)
        msg = str(err.value)
        for part in (str(folder), f"host {socket.gethostname()}", f"pid {other.pid}", f"started {held['started']}",
                     f"working folder {tmp_path}", "(the other run)", "is alive", "facevoice unlock"):
            assert part in msg, (part, msg)
        assert holder_state(held) == "alive"
    finally:
        other.communicate("", timeout=HANG_S)
    assert not (folder / LOCK_NAME).exists()  # released by its holder
    again = acquire(folder)
    assert again.replaced is None and again.release()


def test_same_process_cannot_take_it_twice(tmp_path):
    lock = acquire(tmp_path)
    with pytest.raises(LockError, match=f"pid {os.getpid()} is alive"):
        acquire(tmp_path)
    lock.release()


def test_a_dead_runs_lock_is_taken_over_naming_it(tmp_path):
    folder = tmp_path / "demo"
    dead = other_process(folder, "os._exit(0)")  # gone without releasing, as after kill -9
    dead.wait(timeout=HANG_S)
    assert holder_state(json.loads((folder / LOCK_NAME).read_text())) == "dead"
    lock = acquire(folder)
    assert lock.replaced["pid"] == dead.pid
    assert f"pid {dead.pid}" in lock.takeover_message() and "not running any more" in lock.takeover_message()
    assert json.loads((folder / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process start times come from /proc")
def test_a_reused_pid_is_not_taken_for_the_holder(tmp_path):
    lock = acquire(tmp_path)
    info = json.loads(lock.path.read_text())
    info["proc_start"] -= 1  # this pid, but a process started at another time
    lock.path.write_text(json.dumps(info))
    assert holder_state(info) == "dead"
    assert acquire(tmp_path).replaced["token"] == info["token"]


def test_another_hosts_lock_is_refused_until_unlocked(tmp_path, capsys):
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / LOCK_NAME).write_text(json.dumps({
        "host": "node-elsewhere", "pid": 4242, "started": "2025-01-01T00:00:00+00:00",
        "cwd": "/runs/a", "command": "snakemake --profile profiles/slurm"}))
    with pytest.raises(LockError) as err:
        acquire(folder)
    msg = str(err.value)
    for part in ("host node-elsewhere", "pid 4242", "working folder /runs/a", "another host",
                 f"facevoice unlock {folder}", str(folder / LOCK_NAME)):
        assert part in msg, (part, msg)
    assert cli.main(["unlock", str(folder)]) == 0
    assert "node-elsewhere" in capsys.readouterr().out and not (folder / LOCK_NAME).exists()
    acquire(folder).release()


def test_unlock_refuses_a_live_holder_of_this_host(tmp_path, capsys):
    lock = acquire(tmp_path)
    assert cli.main(["unlock", str(tmp_path)]) == 1
    assert f"kill {os.getpid()}" in capsys.readouterr().err and lock.path.exists()
    lock.release()
    assert cli.main(["unlock", str(tmp_path)]) == 0 and "nothing to remove" in capsys.readouterr().out
    assert cli.main(["unlock", str(tmp_path / "missing")]) == 2


def test_release_leaves_a_lock_that_is_not_its_own(tmp_path):
    mine = acquire(tmp_path)
    mine.path.unlink()  # removed by hand (facevoice unlock) ...
    theirs = acquire(tmp_path)  # ... and taken by another run
    assert not mine.release() and theirs.path.exists()
    assert theirs.release()


def test_an_unreadable_lock_is_refused_saying_what_to_do(tmp_path):
    (tmp_path / LOCK_NAME).write_text("")
    with pytest.raises(LockError, match="cannot be read.*facevoice unlock"):
        acquire(tmp_path)
    assert cli.main(["unlock", str(tmp_path)]) == 0
    acquire(tmp_path).release()


def test_exclusive_holds_other_processes_off_until_released(tmp_path):
    """A second process cannot take the lock while it is held, and can once it is released."""
    from facevoice.common.lock import exclusive

    path = tmp_path / "sub" / ".corpus.lock"
    probe = textwrap.dedent(f"""
        import fcntl
        with open({str(path)!r}, "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                print("free")
            except BlockingIOError:
                print("busy")
    """)

    def state() -> str:
        return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                              timeout=HANG_S, check=True).stdout.strip()

    with exclusive(path, "the corpus"):
        assert path.exists() and state() == "busy"
    assert state() == "free"
