"""One run per results folder: a lock file in ``<results>/<dataset>`` that names its holder.

Snakemake locks its working folder (``.snakemake/locks``), not the files a run writes: two
runs started from two working folders with the same absolute ``results:`` would write, and
on a failing job delete, each other's files. The workflow takes this lock when its run
starts (Snakemake's ``onstart``, main process only, never for ``-n``) and releases it when
the run ends, in success or error.

The lock is a file created atomically (``O_CREAT | O_EXCL``) holding JSON: host, pid,
start time, working folder and command of the run, plus what tells a dead holder from a live
one on the same host (the boot id and the process's start time, so that a pid reused after a
crash or a reboot is not mistaken for the holder). A lock whose holder ran on this host and
is gone (``kill -9``, power loss) is stale and taken over; one from another host cannot be
judged from here, and ``facevoice unlock FOLDER`` removes it once the user knows that run
has ended.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import socket
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterator

LOCK_NAME = ".facevoice.lock"


class LockError(Exception):
    """The results folder is held by another run, or its lock file cannot be read."""


def lock_path(folder: str | os.PathLike) -> Path:
    """The lock file of a results folder (``<results>/<dataset>``)."""
    return Path(os.path.abspath(folder)) / LOCK_NAME


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _proc_start(pid: int) -> int | None:
    """The start time of process ``pid`` (clock ticks since boot; Linux), None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2:].split()[19])  # field 22; the name may hold spaces
    except (OSError, ValueError, IndexError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def this_run(command: str | None = None) -> dict:
    """The holder record of this process: what a refused run shows of it."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": datetime.now().astimezone().isoformat(timespec="seconds"),
        "cwd": os.getcwd(),
        "command": command if command is not None else shlex.join(sys.argv),
        "boot": _boot_id(),
        "proc_start": _proc_start(os.getpid()),
        "token": uuid.uuid4().hex,
    }


def holder_state(info: dict) -> str:
    """'alive', 'dead' (same host, the process is gone) or 'unknown' (another host)."""
    if info.get("host") != socket.gethostname():
        return "unknown"
    boot = _boot_id()
    if boot and info.get("boot") and boot != info["boot"]:
        return "dead"  # the machine restarted since
    pid = info.get("pid")
    if not isinstance(pid, int) or not _pid_alive(pid):
        return "dead"
    start = _proc_start(pid)
    if start is not None and info.get("proc_start") is not None and start != info["proc_start"]:
        return "dead"  # the pid now belongs to another process
    return "alive"


def describe(info: dict) -> str:
    """The holder in words: host, pid, start time, working folder, command."""
    return (f"host {info.get('host')}, pid {info.get('pid')}, started {info.get('started')}, "
            f"working folder {info.get('cwd')}, command: {info.get('command')}")


def _read(path: Path) -> dict:
    """The lock's record; FileNotFoundError if there is none; LockError if it cannot be read."""
    text = path.read_text(encoding="utf-8")
    try:
        info = json.loads(text)
        if not isinstance(info, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        raise LockError(
            f"the lock file {path} cannot be read ({exc}): a run may be creating it this very moment. "
            f"If no run is using {path.parent}, remove it (facevoice unlock {shlex.quote(str(path.parent))}, "
            f"or delete the file) and start again."
        ) from None
    return info


def _create(path: Path, info: dict) -> None:
    """Create the lock file holding ``info``; FileExistsError if there is one already."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, (json.dumps(info, indent=1) + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _guard(folder: Path) -> Iterator[None]:
    """Serialise taking over a stale lock among this host's processes (flock on the folder).

    Only a process on the holder's host can take a lock over, so a host-local lock is enough;
    where the file system refuses flock on a folder this is skipped.
    """
    try:
        import fcntl

        fd = os.open(folder, os.O_RDONLY)
    except (ImportError, OSError):
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


@contextlib.contextmanager
def exclusive(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold an exclusive advisory lock (flock) on the file ``path`` for the block: one process
    at a time on this host builds ``what``. A second waits, saying so once on stderr. The kernel
    drops the lock when its holder dies, so a killed build never leaves it stuck."""
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"[facevoice] waiting for another process building {what} (lock {path})",
                  file=sys.stderr, flush=True)
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def refusal(folder: Path, info: dict, state: str) -> str:
    """Why a run cannot start on ``folder`` held by ``info``, and what to do."""
    quoted = shlex.quote(str(folder))
    where = {"alive": f"pid {info.get('pid')} is alive on this host",
             "unknown": "it ran on another host, which this one cannot check"}[state]
    return (
        f"results folder {folder} is in use by another run ({describe(info)}; {where}). "
        f"Two runs on one results folder overwrite and delete each other's files: wait for that run "
        f"to end, or give this run its own results: or dataset:. If that run is not running any more "
        f"(killed, or its machine restarted), remove its lock with `facevoice unlock {quoted}` "
        f"(or delete {folder / LOCK_NAME}) and start again."
    )


@dataclass
class Lock:
    """A lock held by this process; ``replaced`` is the stale holder it took over, if any."""

    path: Path
    info: dict
    replaced: dict | None = None

    def release(self) -> bool:
        """Remove the lock file if it is still this lock's; True if it was removed."""
        try:
            if _read(self.path).get("token") != self.info["token"]:
                return False
        except (FileNotFoundError, LockError):
            return False
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        return True

    def takeover_message(self) -> str:
        old = self.replaced or {}
        return (f"took over the lock of {self.path.parent} left by a run that is not running any more "
                f"({describe(old)}; it was killed, or its machine restarted)")


def acquire(folder: str | os.PathLike, command: str | None = None) -> Lock:
    """Take the lock of ``folder`` (created if missing) for this process, or raise LockError.

    A lock left by a dead run of this host is taken over (``Lock.replaced`` names it).
    """
    folder = Path(os.path.abspath(folder))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    info = this_run(command)
    with _guard(folder):
        for _ in range(3):  # a holder may release between our create and our read
            try:
                _create(path, info)
                return Lock(path, info)
            except FileExistsError:
                pass
            try:
                old = _read(path)
            except FileNotFoundError:
                continue
            state = holder_state(old)
            if state != "dead":
                raise LockError(refusal(folder, old, state))
            path.unlink(missing_ok=True)
            try:
                _create(path, info)
            except FileExistsError:  # another host's run took it meanwhile
                continue
            return Lock(path, info, replaced=old)
    raise LockError(f"could not take the lock {path}: it changed hands while being read; start again")


def unlock(folder: str | os.PathLike) -> str:
    """Remove the lock of ``folder`` unless its holder is alive on this host; says what it did."""
    folder = Path(os.path.abspath(folder))
    path = folder / LOCK_NAME
    try:
        info = _read(path)
    except FileNotFoundError:
        return f"{folder} has no lock ({LOCK_NAME}): nothing to remove"
    except LockError:
        path.unlink(missing_ok=True)
        return f"removed the unreadable lock {path}"
    state = holder_state(info)
    if state == "alive":
        raise LockError(
            f"{folder} is held by a run that is still going ({describe(info)}): stop it first "
            f"(Ctrl-C, or kill {info.get('pid')}: Snakemake finishes its running jobs and releases the lock)"
        )
    path.unlink(missing_ok=True)
    note = (" If it is in fact still running on that host, both runs will write the same files."
            if state == "unknown" else "")
    return f"removed the lock of {folder} ({describe(info)}).{note}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="facevoice unlock",
        description="Remove the lock a run left on its results folder (<results>/<dataset>), "
                    "once that run is known to have ended (killed, or its machine restarted).",
    )
    parser.add_argument("folder", help="the results folder: <results>/<dataset> of the run's config")
    args = parser.parse_args(argv)
    if not Path(args.folder).is_dir():
        print(f"facevoice unlock: {args.folder} is not a folder: name <results>/<dataset> "
              f"of the run's config", file=sys.stderr)
        return 2
    try:
        print(unlock(args.folder))
    except LockError as exc:
        print(f"facevoice unlock: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
