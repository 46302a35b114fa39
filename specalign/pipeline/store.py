"""The artifact store: `<root>/<step>/<key>/` directories that appear atomically.

A step runs in `<root>/<step>/.work/<key>/` (its `out/` is the artifact being written,
the rest is resumable state such as checkpoints) and is committed by one rename, so a
killed run leaves no half-artifact and a re-run resumes from the work directory. A file
lock per key makes concurrent processes (sweep members, parallel jobs) wait for each other
instead of computing the same key twice.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from specalign.pipeline.step import Artifact

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"


class ArtifactStore:
    """Content-addressed storage of step outputs under one root directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, step: str, key: str) -> Path:
        return self.root / step / key

    def work_dir(self, step: str, key: str) -> Path:
        return self.root / step / ".work" / key

    def get(self, step: str, kind: str, key: str) -> Artifact | None:
        """The committed artifact for (step, key), or None if it is not complete."""
        path = self.path(step, key)
        return Artifact(step, kind, key, path) if (path / MANIFEST).is_file() else None

    @contextmanager
    def lock(self, step: str, key: str, wait_log_s: float = 30.0) -> Iterator[None]:
        """Hold the key's lock; log while waiting for another process that holds it."""
        lock_path = self.root / step / ".locks" / f"{key}.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(lock_path))
        while True:
            try:
                lock.acquire(timeout=wait_log_s)
                break
            except Timeout:
                log.info("waiting for another process computing %s/%s", step, key)
        try:
            yield
        finally:
            lock.release()

    def prepare(self, step: str, key: str) -> tuple[Path, Path]:
        """A fresh `out/` inside the (possibly resumed) work directory; returns (out, work)."""
        work = self.work_dir(step, key)
        out = work / "out"
        if out.exists():
            shutil.rmtree(out)  # a killed run's partial output; resumable state stays in work
        out.mkdir(parents=True)
        return out, work

    def commit(self, step: str, kind: str, key: str, manifest: dict[str, Any]) -> Artifact:
        """Write the manifest last, then move `out/` into place with one atomic rename."""
        work = self.work_dir(step, key)
        out = work / "out"
        tmp = out / f".{MANIFEST}.tmp"
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
        os.replace(tmp, out / MANIFEST)
        final = self.path(step, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(out, final)
        shutil.rmtree(work, ignore_errors=True)
        return Artifact(step, kind, key, final)
