"""Content keys: the same resolved config and inputs give the same key, on any machine."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace variation; paths become strings."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def content_key(material: dict[str, Any], length: int = 16) -> str:
    """A short hex digest of the canonical JSON of `material`."""
    return hashlib.sha256(canonical_json(material).encode()).hexdigest()[:length]


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, streamed so large datasets do not load into memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
