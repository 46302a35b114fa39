"""Documents a user already has (or a test fixture), as the `documents` dataset that midtraining
reads: `{text, spec_id, rule_ids, doc_type, source}`. No model is involved, so the same file
always gives the same dataset and midtraining can be tried without a synthesizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from specalign.errors import SpecAlignError
from specalign.pipeline.dataset_io import read_jsonl, save_dataset
from specalign.pipeline.keys import file_sha256
from specalign.pipeline.step import Artifact, Step
from specalign.spec import resolve_spec_file

KEY = "spec.documents"


class FixedDocuments(Step):
    produces = "dataset"
    uses = ()  # only the file's bytes matter, not the spec text: see fingerprint()

    def source(self) -> Path:
        name = self.ctx.spec.settings.get("documents")
        if not name:
            raise SpecAlignError(
                f"spec={self.ctx.spec.id}: this stage reads fixed documents, but "
                f"conf/spec/{self.ctx.spec.id}.yaml has no `documents` key. Fix: add "
                '`documents: <file.jsonl>` (one {"text": ...} per line) or pass '
                "`+spec.documents=/path/to/documents.jsonl`."
            )
        return resolve_spec_file(name, key=KEY, example=f"+{KEY}=/path/to/documents.jsonl")

    def fingerprint(self) -> dict[str, Any]:
        return {"documents_sha256": file_sha256(self.source())}

    def run(self, inputs: dict[str, Artifact], out: Path, work: Path) -> dict[str, Any]:
        from datasets import Dataset

        path = self.source()
        rows = read_jsonl(path, required=("text",), key=KEY)
        for number, row in enumerate(rows, start=1):
            if not isinstance(row["text"], str) or not row["text"].strip():
                raise SpecAlignError(f"{path} row {number}: `text` must be a non-empty string.")
        sha = file_sha256(path)
        dataset = Dataset.from_list(
            [document_row(row, self.ctx.spec.id, f"fixed:{path.name}@{sha[:12]}") for row in rows]
        )
        save_dataset(dataset, out)
        return {"rows": len(dataset), "words": sum(len(r["text"].split()) for r in rows)}


def document_row(row: dict[str, Any], spec_id: str, source: str) -> dict[str, Any]:
    """One row of the `documents` schema; fields the file leaves out get neutral defaults."""
    return {
        "text": row["text"],
        "spec_id": str(row.get("spec_id", spec_id)),
        "rule_ids": [str(r) for r in row.get("rule_ids", [])],
        "doc_type": str(row.get("doc_type", "document")),
        "source": str(row.get("source", source)),
    }
