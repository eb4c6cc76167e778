"""Version folders written whole: an export is made in a hidden staging folder ``.tmp-N-XXXX``
beside the versions and renamed to ``N`` when complete, so that TF Serving never loads half a
model. An export killed part-way (``kill -9``, a lost machine) leaves its staging folder behind;
the next export removes it. A staging folder belongs to a live export while its owner holds
an exclusive lock on ``.tmp-N-XXXX.lock`` beside it (released by the kernel when the process
dies), so concurrent exports never remove each other's.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import sys
from pathlib import Path

PREFIX = ".tmp-"


def _lock_path(folder: Path) -> Path:
    return folder.with_name(folder.name + ".lock")


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


@contextlib.contextmanager
def _unheld(lock: Path):
    """Yields whether no live export holds ``lock`` (then holding it until the block ends); a
    missing lock file counts as unheld (a staging folder left by an earlier tf_translate)."""
    if not lock.exists():
        yield True
        return
    with open(lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


def remove_stale(root: Path) -> list[str]:
    """Remove the staging folders in ``root`` that no live export holds (and their lock files),
    never anything else; returns a line for each, also printed."""
    removed = []
    for folder in sorted(root.glob(PREFIX + "*")):
        if folder.suffix == ".lock" or not folder.is_dir() or folder.is_symlink():
            continue
        lock = _lock_path(folder)
        with _unheld(lock) as stale:
            if stale:
                size = _size(folder)
                shutil.rmtree(folder, ignore_errors=True)
                lock.unlink(missing_ok=True)
                removed.append(f"{folder.name} ({size / 1e6:.1f} MB)")
    for lock in root.glob(PREFIX + "*.lock"):  # a lock whose folder is gone, and no owner
        with _unheld(lock) as stale:
            if stale and not lock.with_suffix("").exists():
                lock.unlink(missing_ok=True)
    if removed:
        print(f"{root}: removed the staging folder(s) of {len(removed)} interrupted export(s): {', '.join(removed)}",
              file=sys.stderr)
    return removed


@contextlib.contextmanager
def staging(root: Path, version: int):
    """A new staging folder for ``version`` in ``root``, held (locked) until the block ends; it is
    removed if the block fails. The block renames it into place."""
    while True:
        name = f"{PREFIX}{version}-{secrets.token_hex(4)}"
        lock = root / f"{name}.lock"
        handle = open(lock, "x")
        fcntl.flock(handle, fcntl.LOCK_EX)  # before the folder exists: a folder is never seen unheld
        if lock.exists() and os.stat(lock).st_ino == os.fstat(handle.fileno()).st_ino:
            break
        handle.close()  # another export's clean-up took the lock file before we held it
    with handle:
        folder = root / name
        try:
            folder.mkdir()
            yield folder
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        finally:
            lock.unlink(missing_ok=True)
