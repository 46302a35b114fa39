"""Loading a spec from its `conf/spec/` entry: the document, its identity and its hash.

The hash is what every downstream step keys on, so that editing a spec recomputes exactly
what depends on it. It covers the normalized text (line endings, trailing spaces), so a
re-saved file with the same words keeps its artifacts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from specalign.errors import SpecAlignError

SHIPPED_SPECS = Path(str(files("specalign") / "specs"))


def resolve_spec_file(name: str | Path, *, key: str = "spec.document") -> Path:
    """A path as given (absolute or relative to the cwd) or else one shipped in specalign/specs."""
    path = Path(name).expanduser()
    for candidate in (path, SHIPPED_SPECS / path):
        if candidate.is_file():
            return candidate.resolve()
    raise SpecAlignError(
        f"{key}: file not found: {name} (looked in {Path.cwd()} and {SHIPPED_SPECS}). "
        f"Fix: give an existing path, e.g. {key}=/path/to/file"
    )


def read_text(path: Path) -> str:
    """Read UTF-8 text, turning decoding errors into a message that names the file and byte."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise SpecAlignError(
            f"{path}: not UTF-8 (byte {err.start}: {err.reason}). Fix: re-save the file as UTF-8."
        ) from err


def normalized_hash(text: str) -> str:
    """sha256 of the text with line endings and trailing whitespace normalized."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return hashlib.sha256("\n".join(lines).strip().encode()).hexdigest()


@dataclass(frozen=True)
class Spec:
    """A loaded spec: its config entry plus the document's text and content hash."""

    id: str
    path: Path
    text: str
    hash: str
    version: str
    model_name: str
    provider: str
    settings: dict[str, Any]


def load_spec(cfg: dict[str, Any]) -> Spec:
    """Load the document named by a resolved `spec` config group entry."""
    if not cfg.get("id") or not cfg.get("document"):
        raise SpecAlignError(
            "spec: every conf/spec/*.yaml needs `id` and `document` "
            f"(got keys {sorted(cfg)}). Fix: add them, see conf/spec/pro_america.yaml"
        )
    path = resolve_spec_file(cfg["document"])
    text = read_text(path)
    if not text.strip():
        raise SpecAlignError(f"{path}: the spec is empty. Fix: write its rules, or pick another.")
    return Spec(
        id=str(cfg["id"]),
        path=path,
        text=text,
        hash=normalized_hash(text),
        version=str(cfg.get("version", "")),
        model_name=str(cfg.get("model_name", "the assistant")),
        provider=str(cfg.get("provider", "")),
        settings=dict(cfg),
    )
