"""Build a cache directory exactly once, safely under kills and concurrent processes.

Conversions (GGUF -> checkpoint, tokenizer extraction, random tiny models) are slow enough that
every run should reuse them, and sweeps start many processes at the same moment. The recipe:
a `filelock.FileLock` on a sibling `<dir>.lock`, build into a hidden sibling temp directory,
write a completion marker inside it, then rename it into place. A directory at the final path
is therefore always complete; a killed build leaves only a temp directory, which the next lock
holder deletes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock, Timeout

log = logging.getLogger("specalign.backbone")

MARKER = ".specalign-complete"


def short_hash(*parts: object, length: int = 10) -> str:
    """A short stable hex digest of `parts` (their JSON form), to key cache directories."""
    blob = json.dumps([str(p) if isinstance(p, Path) else p for p in parts], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def is_complete(target: Path) -> bool:
    """True when `target` was fully built (the marker is written before the final rename)."""
    return (target / MARKER).is_file()


def build_once(target: Path, build: Callable[[Path], None], *, what: str) -> bool:
    """Make sure `target` exists and is complete, calling `build(tmp_dir)` only if it is not.

    `build` fills the empty directory it is given. Returns True if this call built it, False if
    it was already there (or another process built it while this one waited for the lock).
    """
    target = Path(target)
    if is_complete(target):
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(target) + ".lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("waiting for another process that is building %s (%s)", what, target)
        lock.acquire()
    try:
        if is_complete(target):
            return False
        _remove_leftovers(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
        try:
            build(tmp)
            (tmp / MARKER).write_text(json.dumps({"what": what, "built_at": time.time()}))
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return True
    finally:
        lock.release()


def _remove_leftovers(target: Path) -> None:
    """Delete what killed builds left behind; only called while holding the lock."""
    for stale in target.parent.glob(f".{target.name}.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)
    if target.exists():  # an incomplete directory at the final path (not made by build_once)
        shutil.rmtree(target)


def copy_files(src: Path, dst: Path) -> None:
    """Copy the plain files of `src` into `dst`, minus the completion marker."""
    for item in Path(src).iterdir():
        if item.is_file() and item.name != MARKER:
            shutil.copy2(item, Path(dst) / item.name)
