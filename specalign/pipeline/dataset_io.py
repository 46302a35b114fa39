"""Datasets at stage boundaries: Hugging Face `datasets` on disk plus a JSONL preview that a
person can open, and JSONL input files that fail with the file and line at fault."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specalign.errors import SpecAlignError
from specalign.pipeline.step import Artifact

if TYPE_CHECKING:
    from datasets import Dataset

DATA_DIR = "data"
PREVIEW = "preview.jsonl"


def save_dataset(
    dataset: Dataset,
    out: Path,
    preview_rows: int = 20,
    preview_indices: list[int] | None = None,
) -> None:
    """Arrow data under `data/` plus `preview.jsonl`: the first rows, or the given sample."""
    dataset.save_to_disk(str(out / DATA_DIR))
    if preview_indices is None:
        preview_indices = list(range(min(preview_rows, len(dataset))))
    with open(out / PREVIEW, "w") as handle:
        for row in dataset.select(preview_indices):
            handle.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")


def load_dataset(artifact: Artifact) -> Dataset:
    from datasets import load_from_disk  # ~1 s to import: only where data is read

    return load_from_disk(str(artifact.path / DATA_DIR))


def read_jsonl(path: Path, required: Iterable[str], key: str) -> list[dict[str, Any]]:
    """Rows of a JSONL file; a bad line stops with `<file>:<line>` and the missing field."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise SpecAlignError(
                    f"{path}:{number}: not valid JSON ({err.msg}); set by {key}."
                ) from err
            missing = [field for field in required if field not in row]
            if missing:
                raise SpecAlignError(
                    f"{path}:{number}: missing field(s) {missing}; every row needs "
                    f"{list(required)} ({key})."
                )
            rows.append(row)
    if not rows:
        raise SpecAlignError(f"{path}: no rows ({key}).")
    return rows
